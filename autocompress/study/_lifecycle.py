"""A study's life before and between trials: creation, resumption, budget slots.

Budget slots make "N completed trials" exact even with several drivers on one study: creating a
study enqueues N waiting trials (the baselines first, then the warm starts, then empty ones the
sampler fills); ``ask`` pops one atomically; a trial that fails or stops early is replaced by a
new slot by the one driver that told it. Refinement trials are extra: they do not count.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import optuna
from optuna.trial import TrialState

from autocompress import _faults as faults
from autocompress.errors import StorageError
from autocompress.front import DIRECTIONS
from autocompress.record import StudyStamp, read_study, read_trial
from autocompress.record import attrs as A
from autocompress.study._samplers import make_sampler
from autocompress.study._setup import SearchSetup
from autocompress.study._storage import open_storage
from autocompress.study._warm_start import warm_start_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_study(setup: SearchSetup) -> optuna.Study:
    """Create the study (with its budget slots) or load it and check it is the same search."""
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

    Refinement trials are extra: they do not count against the search budget.
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
    """Trials per state; ``search_only`` leaves refinements out."""
    counts = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        if not (search_only and A.is_refinement(t)):
            counts[t.state] += 1
    return counts


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
    for kind in setup.search.baselines:
        if kind not in have:
            faults.point("driver.initialising")
            study.enqueue_trial(
                setup.space.baseline_params(kind), user_attrs=A.slot_attrs(baseline=kind)
            )
    if setup.sensitivity:
        A.set_sensitivity(study, setup.sensitivity)
    baselines = [setup.space.baseline_params(kind) for kind in setup.search.baselines]
    enqueued = sum(bool(t.warm_start) for t in existing)
    for warm, params in warm_start_params(setup, baselines)[enqueued:]:  # the list is fixed
        study.enqueue_trial(params, user_attrs=A.slot_attrs(warm_start=warm))
    add_budget_slots(study, setup.search.n_trials)
    A.mark_initialised(study)  # other drivers wait for this before joining


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
        run_dir=str(setup.run_dir),
        experiment=setup.experiment,
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
    if read_study(study).signature != setup.signature():
        raise StorageError(
            f"study {setup.name!r} was created with a different search space, objectives or "
            f"model; resuming would mix two searches. Restore the original space, or fork with "
            f"a new name (name={setup.name}-2)"
        )
