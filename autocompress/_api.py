"""The Python API: ``autocompress.search(...)`` and ``autocompress.load(...)``.

Example (an experiment file)::

    result = autocompress.search("experiments/fashion_mnist.yaml", n_trials=12)
    result.front.knee

Example (your own model and loaders, no YAML)::

    result = autocompress.search(model, train_loader, val_loader,
        space={"layers": [{"match": ".*", "bits": [4, 8, "none"], "prune": [0, 0.25, 0.5]}]},
        target={"runtime": "onnxruntime", "batch_size": 1}, storage="runs/mine.journal",
        n_trials=20)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna

from autocompress.config import (
    ExperimentConfig,
    FinetuneConfig,
    SearchConfig,
    SearchSpace,
    TargetConfig,
    load_experiment,
)
from autocompress.config._schema import build
from autocompress.errors import ConfigError, StorageError
from autocompress.front import Front, build_front
from autocompress.study._driver import open_study, optimize
from autocompress.study._progress import Progress
from autocompress.study._setup import SearchSetup, setup_from_experiment, setup_from_objects
from autocompress.study._storage import open_storage
from autocompress.worker._context import UserObjects
from autocompress.worker._task import Task


@dataclasses.dataclass
class SearchResult:
    """A study and its run directory, with the front one call away."""

    study: optuna.Study
    run_dir: Path

    @property
    def front(self) -> Front:
        return build_front(self.study)

    def trials_dataframe(self) -> Any:
        from autocompress.front._table import to_pandas

        return to_pandas(self.study)

    def export(self, out_dir: str | Path, *, overwrite: bool = False, **request: Any) -> Path:
        """Pick a member (``front.pick`` arguments; the knee by default) and export it."""
        from autocompress.deploy._export import export

        member = self.front.pick(**(request or {"prefer": "knee"}))
        return export(self.study, member, out_dir, overwrite=overwrite)

    def verify(self, numbers: Sequence[int] | None = None, test_loader: Any = None) -> Any:
        """Test accuracy and re-measured latency of the front (or of the named trials)."""
        from autocompress.deploy._verify import candidates_of_front, verify

        task = self.study.user_attrs["task"]
        return verify(task, candidates_of_front(self.front, numbers), test_loader=test_loader)

    def report(
        self, path: str | Path | None = None, *, png: bool = False, trial: int | None = None
    ) -> list[Path]:
        """Write the standalone HTML report (default: <run_dir>/report.html).

        ``trial`` names the member whose plan is charted (default: the knee).
        """
        from autocompress.deploy._report import write_report

        front = self.front
        picked = front.pick(number=trial) if trial is not None else None
        target = Path(path) if path is not None else self.run_dir / "report.html"
        return write_report(
            front,
            target,
            title=f"autocompress: {self.study.study_name}",
            picked=picked,
            png=png,
        )


def search(
    experiment_or_model: Any,
    train_loader: Iterable[Any] | None = None,
    val_loader: Iterable[Any] | None = None,
    *,
    space: str | Path | Mapping[str, Any] | SearchSpace | None = None,
    target: Mapping[str, Any] | TargetConfig | None = None,
    finetune: Mapping[str, Any] | FinetuneConfig | None = None,
    options: Mapping[str, Any] | SearchConfig | None = None,
    storage: str | None = None,
    name: str | None = None,
    run_dir: str | Path | None = None,
    n_trials: int | None = None,
    n_workers: int | None = None,
    overrides: Sequence[str] = (),
    test_loader: Iterable[Any] | None = None,
    progress: bool = True,
) -> SearchResult:
    """Run (or resume) a search and return its study and front.

    Args:
        experiment_or_model: an experiment YAML path / :class:`ExperimentConfig`, or a
            ``torch.nn.Module`` (then ``train_loader``, ``val_loader`` and ``space`` are needed).
        space: search space (YAML path, mapping or :class:`SearchSpace`) for a user model.
        target, finetune, options: sections as in an experiment file (mappings or dataclasses).
        storage: None (journal in the run directory), a path, ``sqlite:///`` or ``postgresql://``.
        n_trials, n_workers: shortcuts for ``options.n_trials`` / ``options.n_workers``
            (``n_workers > 1`` selects the Ray executor).
        overrides: ``key.sub=value`` strings applied to an experiment file.
    """
    shortcuts = []
    if n_trials is not None:
        shortcuts.append(f"search.n_trials={n_trials}")
    if n_workers is not None:
        shortcuts.append(f"search.n_workers={n_workers}")
        if n_workers > 1:
            shortcuts.append("search.executor=ray")
    if isinstance(experiment_or_model, (str, Path, ExperimentConfig)):
        setup = _setup_from_experiment(
            experiment_or_model, [*overrides, *shortcuts], storage, name, run_dir
        )
    else:
        setup = _setup_from_model(
            experiment_or_model,
            train_loader,
            val_loader,
            test_loader,
            space,
            target,
            finetune,
            options,
            storage,
            name,
            run_dir,
            n_trials,
            n_workers,
        )
    return run(setup, progress=progress)


def refine(
    experiment: str | Path | ExperimentConfig,
    trials: Sequence[int] | None = None,
    *,
    members: int | None = None,
    steps: int | None = None,
    lr: float | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> SearchResult:
    """Fine-tune chosen members of a stored search again with a longer budget, and measure them.

    The search ranks plans with its short ``finetune.steps`` budget; refinement re-runs the
    plans of ``trials`` (or of the ``members`` chosen by ``front.refine_candidates``) with
    ``steps`` (default ``search.refine_steps``) as new trials of the same study, measured like
    every trial, so they join the front and can be picked, verified and exported.

    Example::

        autocompress.refine("experiments/fashion_mnist.yaml", [12, 30], steps=1000)
    """
    from autocompress.front import refine_candidates
    from autocompress.study._driver import enqueue_refinements

    setup = _setup_from_experiment(experiment, list(overrides), None, None, None)
    if not _exists_study(setup):
        raise StorageError(
            f"no study {setup.name!r} in {setup.storage or setup.run_dir / 'study.journal'}; "
            "run the search first (refine works on a stored search)"
        )
    study = open_study(setup)
    budget = steps or setup.search.refine_steps
    if trials is None:
        floor, slack = setup.accuracy_floor, setup.search.refine_slack
        trials = refine_candidates(build_front(study), members or 3, floor, slack)
    queued = enqueue_refinements(study, list(trials), budget, lr or setup.search.refine_lr)
    reporter = Progress(setup, enabled=progress)
    reporter("refining", {"trials": queued, "steps": budget})
    optimize(study, setup, make_executor(setup), on_event=reporter)
    return SearchResult(study, setup.run_dir)


def _exists_study(setup: SearchSetup) -> bool:
    storage = setup.storage or str(setup.run_dir / "study.journal")
    if "://" not in storage and not Path(storage).expanduser().is_file():
        return False
    backend = open_storage(setup.storage, setup.run_dir)
    return setup.name in {s.study_name for s in optuna.get_all_study_summaries(backend)}


def run(setup: SearchSetup, *, progress: bool = True) -> SearchResult:
    """Open or resume the study of ``setup`` and drive it to its budget."""
    from autocompress.worker._remote import check_target_node

    check_target_node(setup.task.target, setup.task.ray_address)  # before anything is written
    study = open_study(setup)
    executor = make_executor(setup)
    reporter = Progress(setup, enabled=progress)
    optimize(study, setup, executor, on_event=reporter)
    return SearchResult(study, setup.run_dir)


def load(storage: str, name: str | None = None, run_dir: str | Path | None = None) -> SearchResult:
    """Reopen a stored study (read-only use: front, tables, export)."""
    if "://" not in storage and not Path(storage).expanduser().is_file():
        raise StorageError(
            f"no study storage at {storage}; give the journal file a search wrote "
            "(runs/<name>/study.journal) or a database URL"
        )
    backend = open_storage(storage, Path(run_dir or "."))
    names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
    if not names:
        raise StorageError(f"storage {storage!r} holds no study; check the path")
    if name is None:
        if len(names) > 1:
            raise ConfigError(f"storage holds several studies {names}; name one")
        name = names[0]
    if name not in names:
        raise StorageError(f"study {name!r} not found; the storage holds {names}")
    study = optuna.load_study(study_name=name, storage=backend)
    return SearchResult(study, Path(study.user_attrs.get("run_dir") or run_dir or "."))


def make_executor(setup: SearchSetup) -> Any:
    if setup.search.executor == "ray":
        from autocompress.study._ray_executor import RayExecutor

        return RayExecutor(
            n_workers=setup.search.n_workers,
            address=setup.search.ray_address,
            objects=setup.objects,
            trial_timeout_s=setup.search.trial_timeout_s,
        )
    from autocompress.study._executors import LocalExecutor

    return LocalExecutor(setup.objects)


def _setup_from_experiment(
    source: str | Path | ExperimentConfig,
    overrides: list[str],
    storage: str | None,
    name: str | None,
    run_dir: str | Path | None,
) -> SearchSetup:
    if isinstance(source, ExperimentConfig):
        from autocompress.config import apply_override

        data = source.to_dict()
        for text in overrides:
            apply_override(data, text)
        config = ExperimentConfig.from_dict(data)
    else:
        config = load_experiment(source, overrides)
    changes: dict[str, Any] = {}
    if storage is not None:
        changes["storage"] = storage
    if name is not None:
        changes["name"] = name
    if run_dir is not None:
        changes["run_dir"] = str(run_dir)
    return setup_from_experiment(config.replace(**changes) if changes else config)


def _setup_from_model(
    model: Any,
    train_loader: Iterable[Any] | None,
    val_loader: Iterable[Any] | None,
    test_loader: Iterable[Any] | None,
    space: Any,
    target: Any,
    finetune: Any,
    options: Any,
    storage: str | None,
    name: str | None,
    run_dir: str | Path | None,
    n_trials: int | None,
    n_workers: int | None,
) -> SearchSetup:
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"search() takes an experiment path or a torch.nn.Module, got {type(model).__name__}"
        )
    if train_loader is None or val_loader is None or space is None:
        raise ConfigError("search(model, ...) needs train_loader, val_loader and space=")
    search_cfg = _section(SearchConfig, options, "options")
    changes: dict[str, Any] = {}
    if n_trials is not None:
        changes["n_trials"] = n_trials
    if n_workers is not None:
        changes["n_workers"] = n_workers
        changes["executor"] = "ray" if n_workers > 1 else search_cfg.executor
    search_cfg = dataclasses.replace(search_cfg, **changes)
    task = Task(
        target=_section(TargetConfig, target, "target"),
        finetune=_section(FinetuneConfig, finetune, "finetune"),
        trial_timeout_s=search_cfg.trial_timeout_s,
    )
    study_name = name or "search"
    objects = UserObjects(model, train_loader, val_loader, test_loader)
    return setup_from_objects(
        objects,
        _space(space),
        task,
        search_cfg,
        name=study_name,
        run_dir=Path(run_dir) if run_dir else Path("runs") / study_name,
        storage=storage,
    )


def _section(cls: type[Any], value: Any, where: str) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    return build(cls, dict(value), where)


def _space(value: Any) -> SearchSpace:
    if isinstance(value, SearchSpace):
        return value
    if isinstance(value, Mapping):
        return SearchSpace.from_dict(value, source="space")
    return SearchSpace.from_yaml(Path(value))
