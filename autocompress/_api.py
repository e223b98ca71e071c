"""The Python API: ``autocompress.search(...)`` and ``autocompress.load(...)``.

Example (an experiment file)::

    result = autocompress.search("experiments/fashion_mnist.yaml", study={"n_trials": 12})
    result.front.knee

Example (your own model and loaders, no YAML)::

    result = autocompress.search(model, train_loader, val_loader,
        space={"layers": [{"match": ".*", "bits": [4, 8, "none"], "prune": [0, 0.25, 0.5]}]},
        sections={"target": {"runtime": "onnxruntime", "batch_size": 1}},
        study={"storage": "runs/mine.journal", "n_trials": 20})
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
    SearchSections,
    SearchSpace,
    TargetConfig,
    apply_override,
    build,
    load_experiment,
)
from autocompress.errors import ConfigError, StorageError
from autocompress.front import Front, build_front
from autocompress.record import read_study
from autocompress.study import (
    Progress,
    SearchSetup,
    budget_clocks,
    load_stored_study,
    open_storage,
    open_study,
    optimize,
    redact,
    resolve_run_dir,
    setup_from_experiment,
    setup_from_objects,
)
from autocompress.worker import Task, UserObjects

# The floor of the shipped experiments (experiments/*.yaml): a search of a user's model gets it
# unless its sections say otherwise, so a member far below fp32 accuracy is not on the front.
DEFAULT_MAX_ACCURACY_DROP = 2.0  # points below the fp32 validation accuracy


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """Where a search's study lives and how many trials it runs, beside what it searches.

    ``name``: the study (default: the experiment's; ``search`` for a model); ``storage``: None
    (a journal in the run directory), a path, ``sqlite:///`` or ``postgresql://``; ``run_dir``:
    default ``runs/<name>``; ``n_trials``, ``n_workers``: shortcuts for ``search.n_trials`` /
    ``search.n_workers`` (``n_workers > 1`` selects the Ray executor); ``test_loader``: a user
    model's held-out split; ``teacher``: a module its plans distil from instead of the model
    itself (same inputs and classes; an experiment's is ``finetune.teacher``).
    """

    name: str | None = None
    storage: str | None = None
    run_dir: str | Path | None = None
    n_trials: int | None = None
    n_workers: int | None = None
    test_loader: Iterable[Any] | None = None
    teacher: Any = None


@dataclasses.dataclass(frozen=True)
class _ModelSearch:
    """A search of the user's own model: the model, its loaders, its space and sections."""

    model: Any
    train_loader: Iterable[Any] | None
    val_loader: Iterable[Any] | None
    space: Any
    sections: SearchSections | Mapping[str, Any] | None


@dataclasses.dataclass
class SearchResult:
    """A study and its run directory, with the front one call away."""

    study: optuna.Study
    run_dir: Path
    storage: str | None = None  # as the report's export commands name it (password redacted)

    @property
    def front(self) -> Front:
        return build_front(self.study)

    def trials_dataframe(self) -> Any:
        from autocompress.front import to_pandas

        return to_pandas(self.study)

    def export(self, out_dir: str | Path, *, overwrite: bool = False, **request: Any) -> Path:
        """Pick a member (``front.pick`` arguments; the knee by default) and export it."""
        from autocompress.deploy import export

        member = self.front.pick(**(request or {"prefer": "knee"}))  # any_rung=True: any rung
        return export(self.study, member, out_dir, overwrite=overwrite, run_dir=self.run_dir)

    def verify(self, numbers: Sequence[int] | None = None, test_loader: Any = None) -> Any:
        """Test accuracy and re-measured latency of the front (or of the named trials).

        Also written to ``<run_dir>/verified.json``: the report shows the test accuracy.
        """
        from autocompress.deploy import candidates_of_front, verify, write_verified

        task = dict(read_study(self.study).task)
        candidates = candidates_of_front(self.front, numbers, self.run_dir)
        rows, reference_test = verify(task, candidates, test_loader=test_loader)
        if self.run_dir.is_dir():  # the report's test-accuracy column
            write_verified(self.run_dir / "verified.json", rows, reference_test)
        return rows, reference_test

    def report(
        self, path: str | Path | None = None, *, png: bool = False, trial: int | None = None
    ) -> list[Path]:
        """Write the standalone HTML report (default: <run_dir>/report.html); ``trial`` names
        the member whose plan is charted (default: the knee)."""
        from autocompress.deploy import read_test_accuracy, write_report

        front = self.front
        picked = front.pick(number=trial) if trial is not None else None
        target = Path(path) if path is not None else self.run_dir / "report.html"
        return write_report(
            front,
            target,
            title=f"autocompress: {self.study.study_name}",
            picked=picked,
            png=png,
            test_accuracy=read_test_accuracy(self.run_dir),
            storage=self.storage,
            clocks=budget_clocks(self.study.get_trials(deepcopy=False)),
        )


def search(
    experiment_or_model: Any,
    train_loader: Iterable[Any] | None = None,
    val_loader: Iterable[Any] | None = None,
    *,
    space: str | Path | Mapping[str, Any] | SearchSpace | None = None,
    sections: SearchSections | Mapping[str, Any] | None = None,
    study: StudyOptions | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> SearchResult:
    """Run (or resume) a search and return its study and front.

    Args:
        experiment_or_model: an experiment YAML path / :class:`ExperimentConfig`, or a
            ``torch.nn.Module`` (then ``train_loader``, ``val_loader`` and ``space`` are needed).
        space: search space (YAML path, mapping or :class:`SearchSpace`) for a user model.
        sections: a user model's ``target``, ``finetune`` and ``search`` sections as in an
            experiment file (:class:`SearchSections`, or a mapping of mappings or dataclasses).
        study: :class:`StudyOptions` or a mapping of its fields (name, storage, run_dir,
            n_trials, n_workers, test_loader, teacher).
        overrides: ``key.sub=value`` strings applied to an experiment file.
    """
    options = _study_options(study)
    if isinstance(experiment_or_model, (str, Path, ExperimentConfig)):
        setup = _setup_from_experiment(experiment_or_model, overrides, options)
    else:
        request = _ModelSearch(experiment_or_model, train_loader, val_loader, space, sections)
        setup = _setup_from_model(request, options)
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
    """Promote chosen plans of a stored search to a longer budget, and measure them.

    The same promotion as a multi-fidelity search's (``search.rungs``): the plans of
    ``trials`` (or the ``members`` best front members by the promotion rank) are re-run with
    ``steps`` (default: the top rung) as new trials of the same study, measured like every
    trial, so they join the front and can be picked, verified and exported.

    Example::

        autocompress.refine("experiments/fashion_mnist.yaml", [12, 30], steps=1000)
    """
    from autocompress.study import promote_chosen

    setup = _setup_from_experiment(experiment, overrides, StudyOptions())
    if not _exists_study(setup):
        raise StorageError(
            f"no study {setup.name!r} in {setup.storage or setup.run_dir / 'study.journal'}; "
            "run the search first (refine works on a stored search)"
        )
    study = open_study(setup)
    chosen = None if trials is None else list(trials)
    budget, queued = promote_chosen(study, setup, chosen, members, steps, lr)
    reporter = Progress(setup, enabled=progress)
    reporter("promoting", {"trials": queued, "steps": budget})
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
    from autocompress.worker import check_target_node

    check_target_node(setup.task.target, setup.task.ray_address)  # before anything is written
    study = open_study(setup)
    executor = make_executor(setup)
    reporter = Progress(setup, enabled=progress)
    optimize(study, setup, executor, on_event=reporter)
    return SearchResult(
        study, setup.run_dir, _label(setup.storage or str(setup.run_dir / "study.journal"))
    )


def load(
    storage: str | Path, name: str | None = None, run_dir: str | Path | None = None
) -> SearchResult:
    """Reopen a stored study (read-only use: front, tables, export), from any directory.

    ``run_dir``: where the study's run directory is now, if it moved (else the stored one,
    resolved beside the journal file for studies that stored it relative).
    """
    study = load_stored_study(str(storage), name)
    where = resolve_run_dir(read_study(study).run_dir, str(storage), run_dir)
    return SearchResult(study, where, _label(str(storage)))


def _label(storage: str) -> str:
    """A storage as a command names it from anywhere: absolute path, or URL without password."""
    return redact(storage) if "://" in storage else str(Path(storage).expanduser().absolute())


def make_executor(setup: SearchSetup) -> Any:
    if setup.search.executor == "ray":
        from autocompress.study import RayExecutor

        return RayExecutor(
            n_workers=setup.search.n_workers,
            address=setup.search.ray_address,
            objects=setup.objects,
            trial_timeout_s=setup.search.trial_timeout_s,
        )
    from autocompress.study import LocalExecutor

    return LocalExecutor(setup.objects)


def _setup_from_experiment(
    source: str | Path | ExperimentConfig, overrides: Sequence[str], study: StudyOptions
) -> SearchSetup:
    if study.teacher is not None:
        msg = "study teacher is for your own model; an experiment's is finetune.teacher"
        raise ConfigError(f"{msg} (e.g. overrides=['finetune.teacher.kwargs.width=64'])")
    overrides = [*overrides, *_shortcuts(study)]
    if isinstance(source, ExperimentConfig):
        data = source.to_dict()
        for text in overrides:
            apply_override(data, text)
        config = ExperimentConfig.from_dict(data)
    else:
        config = load_experiment(source, overrides)
    changes: dict[str, Any] = {}
    if study.storage is not None:
        changes["storage"] = study.storage
    if study.name is not None:
        changes["name"] = study.name
    if study.run_dir is not None:
        changes["run_dir"] = str(study.run_dir)
    return setup_from_experiment(config.replace(**changes) if changes else config)


def _shortcuts(study: StudyOptions) -> list[str]:
    """The overrides that ``n_trials`` / ``n_workers`` stand for on an experiment."""
    out = []
    if study.n_trials is not None:
        out.append(f"search.n_trials={study.n_trials}")
    if study.n_workers is not None:
        out.append(f"search.n_workers={study.n_workers}")
        if study.n_workers > 1:
            out.append("search.executor=ray")
    return out


def _setup_from_model(request: _ModelSearch, study: StudyOptions) -> SearchSetup:
    import torch

    if not isinstance(request.model, torch.nn.Module):
        raise ConfigError(
            "search() takes an experiment path or a torch.nn.Module, got "
            f"{type(request.model).__name__}"
        )
    if request.train_loader is None or request.val_loader is None or request.space is None:
        raise ConfigError("search(model, ...) needs train_loader, val_loader and space=")
    sections = _sections(request.sections)
    search_cfg = sections.search
    changes: dict[str, Any] = {}
    if _floor_unset(request.sections, search_cfg):
        changes["max_accuracy_drop"] = DEFAULT_MAX_ACCURACY_DROP
    if study.n_trials is not None:
        changes["n_trials"] = study.n_trials
    if study.n_workers is not None:
        changes["n_workers"] = study.n_workers
        changes["executor"] = "ray" if study.n_workers > 1 else search_cfg.executor
    search_cfg = dataclasses.replace(search_cfg, **changes)
    task = Task(
        target=sections.target,
        finetune=sections.finetune,
        trial_timeout_s=search_cfg.trial_timeout_s,
    )
    study_name = study.name or "search"
    objects = UserObjects(
        request.model, request.train_loader, request.val_loader, study.test_loader, study.teacher
    )
    return setup_from_objects(
        objects,
        _space(request.space),
        task,
        search_cfg,
        name=study_name,
        run_dir=Path(study.run_dir) if study.run_dir else Path("runs") / study_name,
        storage=study.storage,
    )


def _floor_unset(value: SearchSections | Mapping[str, Any] | None, search: SearchConfig) -> bool:
    """No accuracy floor asked for: the default applies (``max_accuracy_drop: None`` in a
    mapping says "no floor")."""
    given = value.get("search") if isinstance(value, Mapping) else None
    explicit = isinstance(given, Mapping) and "max_accuracy_drop" in given
    return search.max_accuracy_drop is None and not explicit


def _sections(value: SearchSections | Mapping[str, Any] | None) -> SearchSections:
    """The sections of a user model's search; each a mapping (as in YAML) or its dataclass."""
    if value is None:
        return SearchSections()
    if isinstance(value, SearchSections):
        return value
    kinds = {"target": TargetConfig, "finetune": FinetuneConfig, "search": SearchConfig}
    unknown = sorted(set(value) - set(kinds))
    if unknown:
        raise ConfigError(f"sections: unknown key(s) {unknown} (allowed: {', '.join(kinds)})")
    return SearchSections(**{k: _section(c, value.get(k), k) for k, c in kinds.items()})


def _study_options(value: StudyOptions | Mapping[str, Any] | None) -> StudyOptions:
    if value is None:
        return StudyOptions()
    if isinstance(value, StudyOptions):
        return value
    allowed = [f.name for f in dataclasses.fields(StudyOptions)]
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ConfigError(f"study: unknown key(s) {unknown} (allowed: {', '.join(allowed)})")
    return StudyOptions(**value)


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
