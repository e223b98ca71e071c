"""Everything a search needs, resolved once in the driver: space bound to layers, task, reference.

Two ways in: an experiment YAML (registry model, our data) or a user's own model and loaders
(the Python API). Both end in the same :class:`SearchSetup`, and from there one path runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from autocompress.backend import fold_batchnorm, head_name, layer_inventory, packed_size
from autocompress.config import BoundSpace, ExperimentConfig, SearchConfig, SearchSpace
from autocompress.config._schema import to_plain
from autocompress.errors import ConfigError
from autocompress.worker._context import UserObjects, loader_data, splits_data
from autocompress.worker._task import Task


@dataclass
class SearchSetup:
    """A search, resolved: what the driver needs and nothing it has to look up again."""

    name: str
    space: BoundSpace
    task: Task
    search: SearchConfig
    run_dir: Path
    storage: str | None
    reference: dict[str, float]  # val_accuracy, size_bytes, params
    objects: UserObjects | None = None
    experiment: dict[str, Any] = field(default_factory=dict)
    sensitivity: dict[str, float] = field(default_factory=dict)  # bits parameter -> acc drop

    @property
    def objectives(self) -> list[str]:
        return list(self.search.objectives)

    @property
    def accuracy_floor(self) -> float | None:
        drop = self.search.max_accuracy_drop
        return None if drop is None else self.reference["val_accuracy"] - drop / 100.0

    def signature(self) -> str:
        """What must not change between a study and its resumption."""
        data = {
            "space": self.space.space.to_dict(),
            "layers": [vars(s) for s in self.space.slots],
            "objectives": self.objectives,
            "latency_unit": self.search.latency_unit,
            "params": "ordinal-index",  # how choices are stored (config._space._suggest)
            "model": to_plain(self.task.model) if self.objects is None else "user",
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def setup_from_experiment(config: ExperimentConfig) -> SearchSetup:
    """Train or reuse the reference, bind the space to its layers, build the task."""
    from autocompress.models import load_reference

    space = SearchSpace.from_yaml(config.space_path)
    reference = load_reference(config.model, config.data, base_dir=config.base_dir)
    task = Task(
        data=config.data,
        model=config.model,
        finetune=config.finetune,
        target=config.target,
        checkpoint=str(reference.checkpoint),
        trial_timeout_s=config.search.trial_timeout_s,
        ray_address=config.search.ray_address,
    )
    data = splits_data(task)
    return _finish(
        config.name,
        space,
        task,
        reference.model,
        data,
        config.search,
        config.run_path,
        config.storage,
        objects=None,
        experiment=_redacted(config.to_dict()),
    )


def setup_from_objects(
    objects: UserObjects,
    space: SearchSpace,
    task: Task,
    search: SearchConfig,
    *,
    name: str,
    run_dir: Path,
    storage: str | None,
) -> SearchSetup:
    """The Python API's path: a user's model and loaders instead of registry names."""
    data = loader_data(objects)
    return _finish(
        name,
        space,
        task,
        objects.model,
        data,
        search,
        run_dir,
        storage,
        objects=objects,
        experiment={},
    )


def _finish(
    name: str,
    space: SearchSpace,
    task: Task,
    model: torch.nn.Module,
    data: Any,
    search: SearchConfig,
    run_dir: Path,
    storage: str | None,
    *,
    objects: UserObjects | None,
    experiment: dict[str, Any],
) -> SearchSetup:
    model = model.cpu().eval()
    example = next(iter(data.val()))[0][:2].float()
    _check_input_shape(model, task.target.input_shape)
    layers = layer_inventory(model, example)
    head = head_name(layers)
    bound = space.bind(
        [layer.name for layer in layers], head=head, coupled=_coupled(space, model, example, head)
    )
    reference = _reference_figures(model, data)
    setup = SearchSetup(
        name, bound, task, search, run_dir, storage, reference, objects, experiment
    )
    if "sensitivity" in search.warm_start:
        from autocompress.study._sensitivity import layer_sensitivity

        setup.sensitivity = layer_sensitivity(model, bound, data.val)
    floor = setup.accuracy_floor
    if floor is not None and search.hopeless_margin is not None:
        setup.task = _replace_task(
            task,
            hopeless_floor=floor - search.hopeless_margin / 100.0,
            checkpoint_every=max(1, task.finetune.steps // 4),
        )
    return setup


def _coupled(
    space: SearchSpace, model: torch.nn.Module, example: torch.Tensor, head: str | None
) -> list[list[str]]:
    """Coupled layer groups (one pruning parameter each), traced only if the space prunes."""
    if not space.prunes:
        return []
    from autocompress.backend import coupled_layers

    return coupled_layers(copy.deepcopy(model), example, head=head)


def _check_input_shape(model: torch.nn.Module, shape: list[int] | None) -> None:
    """A declared target input shape must be one the model accepts."""
    if shape is None:
        return
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except Exception as exc:  # shape errors come from deep inside torch in many types
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"target.input_shape {shape} does not fit the model ({first}); use the per-sample "
            "shape the model takes, e.g. [1, 28, 28]"
        ) from None


def _reference_figures(model: torch.nn.Module, data: Any) -> dict[str, float]:
    correct = total = 0
    with torch.no_grad():
        for x, y in data.val():
            correct += int((model(x.float()).argmax(1) == y).sum())
            total += len(y)
    folded = copy.deepcopy(model)
    fold_batchnorm(folded)
    return {
        "val_accuracy": correct / max(1, total),
        "size_bytes": float(packed_size(folded, {})),
        "params": float(sum(p.numel() for p in model.parameters())),
    }


def _replace_task(task: Task, **changes: Any) -> Task:
    import dataclasses

    return dataclasses.replace(task, **changes)


def _redacted(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment as stored in the study: a database password never goes into it."""
    from autocompress.study._storage import redact

    if experiment.get("storage"):
        experiment = {**experiment, "storage": redact(str(experiment["storage"]))}
    return experiment
