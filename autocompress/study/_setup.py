"""Everything a search needs, resolved once in the driver: space bound to layers, task, reference.

Two ways in: an experiment YAML (registry model, our data) or a user's own model and loaders
(the Python API). Both end in the same :class:`SearchSetup`, and from there one path runs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autocompress.backend import (
    decompose_attention,
    fold_batchnorm,
    head_name,
    layer_inventory,
    packed_size,
    uncovered_parameters,
)
from autocompress.config import ExperimentConfig, SearchConfig, SearchSpace, to_plain
from autocompress.data import model_input
from autocompress.errors import ConfigError
from autocompress.measure import top1_accuracy
from autocompress.runtimes import check_target_device, widest_exact_bits
from autocompress.study._space import BoundSpace, bind_space
from autocompress.worker import Task, UserObjects, loader_data, splits_data

if TYPE_CHECKING:
    from autocompress.models import Reference


@dataclass(frozen=True)
class SearchSetup:
    """A search, resolved: what the driver needs and nothing it has to look up again.

    Frozen, and built in one place (``_finish``); a changed copy is ``dataclasses.replace``.
    """

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
    uncovered: tuple[tuple[str, int, str], ...] = ()  # parameters no plan covers (stay fp32)

    @property
    def objectives(self) -> list[str]:
        return list(self.search.objectives)

    @property
    def accuracy_floor(self) -> float | None:
        return _accuracy_floor(self.search, self.reference)

    def signature(self) -> str:
        """What must not change between a study and its resumption."""
        data = {
            "space": self.space.space.to_dict(),
            "layers": [s.signed() for s in self.space.slots],
            "objectives": self.objectives,
            "latency_unit": self.search.latency_unit,
            "params": "ordinal-index",  # how choices are stored (study._space._suggest)
            "model": _model_key(self.task.model) if self.objects is None else "user",
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _model_key(model: Any) -> dict[str, Any]:
    """The model config as signed; fields added later are left out while unset, so studies
    made before them still resume."""
    data = to_plain(model)
    if data.get("builder") is None:
        data.pop("builder", None)
    return dict(data)


@dataclass(frozen=True)
class _Inputs:
    """What either way in has resolved before the model is looked at."""

    name: str
    space: SearchSpace
    task: Task
    search: SearchConfig
    run_dir: Path
    storage: str | None
    objects: UserObjects | None = None
    experiment: dict[str, Any] = field(default_factory=dict)


def setup_from_experiment(config: ExperimentConfig) -> SearchSetup:
    """Train or reuse the reference, bind the space to its layers, build the task."""
    check_target_device(config.target)  # before the reference trains: bad input costs nothing
    space = SearchSpace.from_yaml(config.space_path)
    reference, teacher, task = experiment_task(config)
    inputs = _Inputs(
        name=config.name,
        space=space,
        task=task,
        search=config.search,
        run_dir=config.run_path,
        storage=config.storage,
        experiment=_redacted(config.to_dict()),
    )
    teacher_model = None if teacher is None else teacher.model
    return _finish(inputs, reference.model, splits_data(task), teacher_model)


def experiment_task(config: ExperimentConfig) -> tuple[Reference, Reference | None, Task]:
    """The reference and the distillation teacher of an experiment (each trained or reused
    from the checkpoint cache; no teacher: the reference teaches) and the task its trials get:
    the search, the recipe study and the backend check start here."""
    from autocompress.models import load_reference

    reference = load_reference(config.model, config.data, base_dir=config.base_dir)
    spec = config.finetune.teacher
    if spec is None:
        return reference, None, Task.of_experiment(config, str(reference.checkpoint))
    teacher = load_reference(spec, config.data, base_dir=config.base_dir, where="finetune.teacher")
    task = Task.of_experiment(config, str(reference.checkpoint), str(teacher.checkpoint))
    return reference, teacher, task


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
    """The Python API's path: a user's model and loaders instead of registry names.

    The user's model is changed in place once: each ``nn.MultiheadAttention`` becomes the
    equivalent explicit-Linear attention (same outputs), so plans can name its projections.
    """
    check_target_device(task.target)
    if task.finetune.teacher is not None:
        raise ConfigError(
            "finetune.teacher names a registry model, which needs an experiment's data; with "
            "your own model pass the teacher itself: search(model, ..., study={'teacher': module})"
        )
    decompose_attention(objects.model)
    inputs = _Inputs(
        name=name,
        space=space,
        task=task,
        search=search,
        run_dir=run_dir,
        storage=storage,
        objects=objects,
    )
    return _finish(inputs, objects.model, loader_data(objects), objects.teacher)


def _finish(
    inputs: _Inputs, model: torch.nn.Module, data: Any, teacher: torch.nn.Module | None = None
) -> SearchSetup:
    """Bind the space to the model's layers, take the reference (and teacher) figures, build
    the setup."""
    space, task, search = inputs.space, inputs.task, inputs.search
    model = model.cpu().eval()
    example = model_input(next(iter(data.val()))[0][:2])
    _check_input_shape(model, task.target.input_shape)
    if teacher is not None:
        teacher = _checked_teacher(teacher, model, example)
    layers = layer_inventory(model, example)
    head = head_name(layers)
    coupled, unprunable = _coupling(space, model, example, head)
    bound = bind_space(
        space,
        [layer.name for layer in layers],
        head=head,
        coupled=coupled,
        unprunable=unprunable,
        widest_bits=widest_exact_bits(task.target),
    )
    reference = _reference_figures(model, data)
    if teacher is not None:
        reference.update(_teacher_figures(teacher, data))
    sensitivity: dict[str, float] = {}
    if "sensitivity" in search.warm_start:
        from autocompress.study._sensitivity import layer_sensitivity

        sensitivity = layer_sensitivity(model, bound, data.val)
    floor = _accuracy_floor(search, reference)
    if floor is not None and search.hopeless_margin is not None:
        task = dataclasses.replace(
            task,
            hopeless_floor=floor - search.hopeless_margin / 100.0,
            checkpoint_every=max(1, task.finetune.steps // 4),
        )
    if search.rungs and len(search.rungs) > 1 and not search.rung0_gptq:
        task = dataclasses.replace(task, screen_nearest=True)  # rung 0 only ranks plans
    return SearchSetup(
        name=inputs.name,
        space=bound,
        task=task,
        search=search,
        run_dir=inputs.run_dir.expanduser().absolute(),  # artifacts found from any directory
        storage=inputs.storage,
        reference=reference,
        objects=inputs.objects,
        experiment=inputs.experiment,
        sensitivity=sensitivity,
        uncovered=tuple(uncovered_parameters(model, example)),
    )


def _accuracy_floor(search: SearchConfig, reference: dict[str, float]) -> float | None:
    """The lowest validation accuracy a plan may keep (``search.max_accuracy_drop`` points)."""
    drop = search.max_accuracy_drop
    return None if drop is None else reference["val_accuracy"] - drop / 100.0


def _coupling(
    space: SearchSpace, model: torch.nn.Module, example: torch.Tensor, head: str | None
) -> tuple[list[list[str]], list[str]]:
    """Coupled layer groups (one pruning parameter each) and layers never pruned (no pruning
    parameter: a transformer's residual stream), traced only if the space prunes."""
    if not space.prunes:
        return [], []
    from autocompress.backend import coupled_layers, unprunable_layers

    traced = copy.deepcopy(model)
    return (
        coupled_layers(traced, example, head=head),
        unprunable_layers(traced, example, head=head),
    )


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


def _checked_teacher(
    teacher: torch.nn.Module, model: torch.nn.Module, example: Any
) -> torch.nn.Module:
    """The teacher on the CPU in eval mode (so the check's forward leaves its BatchNorm
    statistics alone), once it is shown to take the model's inputs and score the same classes:
    its logits are the student's targets, class by class. Checked on one batch, before anything
    is written."""
    if not isinstance(teacher, torch.nn.Module):
        raise ConfigError(f"the teacher must be a torch.nn.Module, got {type(teacher).__name__}")
    teacher = teacher.cpu().eval()
    with torch.no_grad():
        want = model(example).shape
        try:
            got = teacher(example).shape
        except Exception as exc:  # shape errors come from deep inside torch in many types
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise ConfigError(
                f"the teacher does not take the model's inputs ({first or type(exc).__name__}); "
                "distil from a model of the same input shape"
            ) from None
    if got != want:
        raise ConfigError(
            f"the teacher outputs shape {list(got)}, the model {list(want)}; a teacher must "
            "score the same classes as the model it teaches"
        )
    return teacher


def _teacher_figures(teacher: torch.nn.Module, data: Any) -> dict[str, float]:
    with torch.no_grad():
        accuracy = top1_accuracy(lambda x: teacher(model_input(x)), data.val())
    return {
        "teacher_val_accuracy": accuracy,
        "teacher_params": float(sum(p.numel() for p in teacher.parameters())),
    }


def _reference_figures(model: torch.nn.Module, data: Any) -> dict[str, float]:
    with torch.no_grad():
        accuracy = top1_accuracy(lambda x: model(model_input(x)), data.val())
    folded = copy.deepcopy(model)
    fold_batchnorm(folded)
    return {
        "val_accuracy": accuracy,
        "size_bytes": float(packed_size(folded, {})),
        "params": float(sum(p.numel() for p in model.parameters())),
    }


def _redacted(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment as stored in the study: a database password never goes into it."""
    from autocompress.study._storage import redact

    if experiment.get("storage"):
        experiment = {**experiment, "storage": redact(str(experiment["storage"]))}
    return experiment
