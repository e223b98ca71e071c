"""A study's life before and between trials: creation, resumption, budget slots.

Budget slots make "N completed trials" exact even with several drivers on one study: creating a
study enqueues N waiting trials (the baselines first, then the warm starts, then empty ones the
sampler fills); ``ask`` pops one atomically; a trial that fails or stops early is replaced by a
new slot by the one driver that told it. Promoted trials (the rungs above the first) are
extra: they do not count.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress import _faults as faults
from autocompress.config import to_plain
from autocompress.errors import ConfigError, StorageError
from autocompress.front import DIRECTIONS
from autocompress.record import StudyStamp, read_study, read_trial
from autocompress.record import attrs as A
from autocompress.study._preflight import check_space
from autocompress.study._samplers import make_sampler
from autocompress.study._setup import SearchSetup
from autocompress.study._storage import open_storage
from autocompress.study._warm_start import warm_start_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_study(setup: SearchSetup) -> optuna.Study:
    """Create the study (with its budget slots) or load it and check it is the same search.

    The baselines and warm starts are checked first: a space that cannot make one (no 8 bits
    for the int8 baseline) fails here, before the storage or the run directory exists.
    """
    try:
        _enqueued_plans(setup)
    except ConfigError:
        _check_stored_search(setup)  # resuming with a changed space: that is the error to name
        raise
    check_space(setup)  # a failure every plan would hit: found in seconds, before any write
    storage = open_storage(setup.storage, setup.run_dir)  # a bad storage fails before any mkdir
    setup.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # user-only: the study's work
    directions = [DIRECTIONS[o] for o in setup.objectives]
    sampler = make_sampler(setup.search)
    if _exists(storage, setup.name):  # resume (checked first: a journal logs failed creates)
        return _join(_load(storage, setup), setup)
    try:
        study = optuna.create_study(
            study_name=setup.name, storage=storage, sampler=sampler, directions=directions
        )
    except optuna.exceptions.DuplicatedStudyError:  # another driver created it just now
        return _join(_load(storage, setup), setup)
    _initialise(study, setup)
    return study


def add_budget_slots(study: optuna.Study, n_trials: int) -> int:
    """Enqueue empty waiting trials until COMPLETE + RUNNING + WAITING reaches ``n_trials``.

    Promoted trials are extra: they do not count against the search budget, which counts
    plans sampled (entries at the lowest rung, baselines and warm starts included).
    """
    counts = state_counts(study, search_only=True)
    missing = (
        n_trials
        - counts[TrialState.COMPLETE]
        - counts[TrialState.RUNNING]
        - counts[TrialState.WAITING]
    )
    for _ in range(max(0, missing)):
        faults.point("driver.slots")
        study.enqueue_trial({}, user_attrs=A.slot_attrs())
    return max(0, missing)


def state_counts(study: optuna.Study, search_only: bool = False) -> dict[TrialState, int]:
    """Trials per state; ``search_only`` leaves promotions out."""
    counts = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        if not (search_only and A.is_promotion(t)):
            counts[t.state] += 1
    return counts


def resolve_run_dir(stored: str | None, storage: str, override: str | Path | None = None) -> Path:
    """Where a stored study's run directory is now, as an absolute path, from any directory.

    ``override`` (``--run-dir``) wins. A stored absolute path is taken as it is (studies store
    it absolute). An older study's relative one is looked for beside its journal file (the
    default journal lives in the run directory: ``runs/x`` is ``/abs/runs/x`` for
    ``/abs/runs/x/study.journal``), then under the journal's folders, then in the current one.
    """
    if override is not None:
        return Path(override).expanduser().absolute()
    journal = None if "://" in storage else Path(storage).expanduser().absolute()
    if stored is None:
        return journal.parent if journal is not None else Path.cwd()
    path = Path(stored).expanduser()
    if path.is_absolute():
        return path
    for candidate in _beside(journal, path) if journal is not None else ():
        if candidate.is_dir():
            return candidate
    return path.absolute()


def _beside(journal: Path, relative: Path) -> Iterator[Path]:
    folder = journal.parent
    if folder.parts[-len(relative.parts) :] == relative.parts:
        yield folder
    for base in (folder, *folder.parents):
        yield base / relative


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _load(storage: Any, setup: SearchSetup) -> optuna.Study:
    """Load the study with a sampler seeded for where it stands (see ``make_sampler``)."""
    study = optuna.load_study(study_name=setup.name, storage=storage)
    study.sampler = make_sampler(setup.search, len(study.get_trials(deepcopy=False)))
    return study


def _exists(storage: Any, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def _join(study: optuna.Study, setup: SearchSetup) -> optuna.Study:
    """Resume a study: check it is the same search, then top its budget up."""
    if not _wait_until_initialised(study):  # its creator died half-way: finish for it
        _initialise(study, setup)
    _check_same_search(study, setup)
    add_budget_slots(study, setup.search.n_trials)
    return study


def _initialise(study: optuna.Study, setup: SearchSetup) -> None:
    """Stamp the study and enqueue its baselines, warm starts and budget slots.

    Idempotent, so a driver that finds a study whose creator was killed half-way through this can
    run it again: what was already enqueued is not enqueued twice.
    """
    signature = read_study(study).signature
    if signature is not None and signature != setup.signature():
        _check_same_search(study, setup)  # raises: someone else's half-made study
    A.stamp_study(study, _stamp(setup))
    existing = [read_trial(t) for t in study.get_trials(deepcopy=False)]
    have = {t.baseline for t in existing}
    baselines, warm_starts = _enqueued_plans(setup)
    for kind, params in zip(setup.search.baselines, baselines, strict=True):
        if kind not in have:
            faults.point("driver.initialising")
            study.enqueue_trial(params, user_attrs=A.slot_attrs(baseline=kind))
    if setup.sensitivity:
        A.set_sensitivity(study, setup.sensitivity)
    enqueued = sum(bool(t.warm_start) for t in existing)
    for warm, params in warm_starts[enqueued:]:  # the list is fixed
        study.enqueue_trial(params, user_attrs=A.slot_attrs(warm_start=warm))
    add_budget_slots(study, setup.search.n_trials)
    A.mark_initialised(study)  # other drivers wait for this before joining


def _check_stored_search(setup: SearchSetup) -> None:
    """If a study of this name is already stored, raise if it was made by another search."""
    spec = setup.storage
    if spec is None or "://" not in spec:  # a journal file: opening it would create it
        journal = setup.run_dir / "study.journal" if spec is None else Path(spec).expanduser()
        if not journal.is_file():
            return  # nothing stored yet
    storage = open_storage(setup.storage, setup.run_dir)
    if _exists(storage, setup.name):
        _check_same_search(optuna.load_study(study_name=setup.name, storage=storage), setup)


def _enqueued_plans(
    setup: SearchSetup,
) -> tuple[list[dict[str, Any]], list[tuple[str, dict[str, Any]]]]:
    """The baselines' parameters (in ``search.baselines`` order) and the warm starts'.

    Raises ``ConfigError`` when the space cannot make a baseline: called before anything is
    written, so bad input leaves no half-made study behind.
    """
    baselines = [setup.space.baseline_params(kind) for kind in setup.search.baselines]
    return baselines, warm_start_params(setup, baselines)


def _stamp(setup: SearchSetup) -> StudyStamp:
    from autocompress import __version__

    return StudyStamp(
        creator={"host": socket.gethostname(), "pid": os.getpid()},
        version=__version__,
        signature=setup.signature(),
        objectives=tuple(setup.objectives),
        latency_unit=setup.search.latency_unit,
        reference=setup.reference,
        task=setup.task.to_dict(),
        space=setup.space.space.to_dict(),
        run_dir=str(setup.run_dir.expanduser().absolute()),  # verbs work from any directory
        accuracy_floor=setup.accuracy_floor,
        experiment=setup.experiment,
        rungs=None if setup.search.rungs is None else tuple(setup.search.rungs),
    )


def _wait_until_initialised(study: optuna.Study, timeout_s: float = 60.0) -> bool:
    """A driver joining a study that another driver is still creating waits for its slots.

    Returns False when the creator is known dead (same host, process gone) or never stamped
    anything on an empty study: the caller then finishes the initialisation itself.
    """
    start = time.monotonic()
    while not (info := read_study(study)).initialised:
        waited = time.monotonic() - start
        creator = info.creator
        if creator.get("host") == socket.gethostname() and not pid_alive(
            int(creator.get("pid", -1))
        ):
            return False
        if info.signature is None and waited > 5.0:
            if not study.get_trials(deepcopy=False) and not info.has_any:
                return False  # created, then its creator died before stamping it
            raise StorageError(
                f"study {study.study_name!r} exists in this storage but was not made by "
                "autocompress; choose another name"
            )
        if waited > timeout_s:
            raise StorageError(
                f"study {study.study_name!r} was never fully initialised (its creator stopped "
                "early?); choose another name"
            )
        time.sleep(0.25)
    return True


def _check_same_search(study: optuna.Study, setup: SearchSetup) -> None:
    info = read_study(study)
    if info.signature != setup.signature():
        raise StorageError(
            f"study {setup.name!r} was created with a different search space, objectives or "
            f"model; resuming would mix two searches. Restore the original space, or fork with "
            f"a new name (name={setup.name}-2)"
        )
    rungs = None if setup.search.rungs is None else tuple(setup.search.rungs)
    if info.rungs != rungs:
        raise StorageError(
            f"study {setup.name!r} was made with search.rungs {info.rungs}, not {rungs}; its "
            "rungs would not match. Restore them, or fork with a new name "
            f"(name={setup.name}-2)"
        )
    changed = _changed_finetuning(info.task.get("finetune") or {}, setup.task.finetune)
    if changed:
        raise StorageError(
            f"study {setup.name!r} was made with other fine-tuning settings ({changed}); its "
            "trials would not be comparable with new ones. Restore them, or fork with a new "
            f"name (name={setup.name}-2); to train chosen plans longer, use autocompress refine"
        )


# fine-tuning settings whose default, when they were added, changed what a trial does: a study
# stored before them ran the value here, so a missing key reads as it (a missing key of any other
# setting reads as the default, which is what the code did before the setting existed)
BEFORE_THEY_EXISTED: dict[str, Any] = {
    "prune_stages": 1,  # one-shot pruning until gradual pruning became the default (ee99a06)
    "gptq_batches": 0,  # round to nearest until GPTQ rounding became the default (95fd5e3)
}


def _changed_finetuning(stored: dict[str, Any], now: Any) -> str:
    """``key: stored -> now`` for fine-tuning settings that differ (the seed may change).

    A key the study stored before it existed is compared only where its arrival changed what
    trials do (``BEFORE_THEY_EXISTED``): otherwise an old one-shot study resumed today would
    quietly gain gradually pruned trials beside its own.

    Compared as the plain data the study stored (a section such as the teacher is a dataclass
    now, a mapping in the stamp), and a changed section is named by its changed keys
    (``teacher.kwargs.width: 4 -> 6``), not printed whole.
    """
    wanted = {k: v for k, v in to_plain(now).items() if k != "seed"}
    stored = {**BEFORE_THEY_EXISTED, **stored} if stored else {}  # none stored: none compared
    diffs = []
    for key, value in wanted.items():
        if key in stored and stored[key] != value:
            diffs += _differences(key, stored[key], value)
    return ", ".join(diffs)


def _differences(key: str, before: Any, after: Any) -> list[str]:
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return [f"{key}: {before} -> {after}"]
    return [
        line
        for sub in sorted(set(before) | set(after))
        if before.get(sub) != after.get(sub)
        for line in _differences(f"{key}.{sub}", before.get(sub), after.get(sub))
    ]
