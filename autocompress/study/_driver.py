"""The search driver: the only code that talks to Optuna.

    experiments/x.yaml --load_experiment--> ExperimentConfig --setup--> SearchSetup
    study = open_study(setup)          create (with budget slots) or resume
    recover_stale_trials(study)        RUNNING trials of dead drivers -> FAIL, plans re-queued
    loop, up to executor.capacity trials in flight:
        trial = study.ask()            pops a budget slot (baselines are the first slots)
        plan  = space.sample(trial)    a CompressionPlan keyed by module name
        executor.submit(trial.number, plan.to_dict(), task.to_dict())   plain data only
        -- worker: run_trial(plan, task) -> result --
        write artifacts; trial.set_user_attr(...); trial.set_constraint(...)
        study.tell(trial, [accuracy, latency, size])  or FAIL / PRUNED with the reason
    refine: search.refine_members front members re-queued with search.refine_steps (extra trials)
    front = build_front(study) -> front.json

Budget slots make "N completed trials" exact even with several drivers on one study: creating a
study enqueues N waiting trials (the baselines first, then empty ones the sampler fills);
``ask`` pops one atomically; a trial that fails or stops early is replaced by a new slot by the
one driver that told it. A trial asked when no slot was left (another driver took the last one)
is closed at once as FAIL with that reason, never run.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from autocompress import _faults as faults
from autocompress.errors import AutocompressError, ConfigError, StorageError
from autocompress.front import DIRECTIONS, build_front, refine_candidates
from autocompress.study._executors import Executor, Outcome
from autocompress.study._samplers import make_sampler
from autocompress.study._setup import SearchSetup
from autocompress.study._storage import open_storage
from autocompress.study._warm_start import warm_start_params

HEARTBEAT_S = 15.0  # how often a driver stamps its running trials
STALE_S = 90.0  # a RUNNING trial whose stamp is older than this belongs to a dead driver
MAX_FAILURE_STREAK = 8  # failed trials in a row: something is broken, stop and say why
MAX_HOPELESS_STREAK = 20  # early-stopped trials in a row: the accuracy floor looks unreachable
WAIT_OTHERS_S = 1.0  # poll period while only other drivers' trials are running
SLOT = "slot"
REFINE = "refine"  # user attribute of a refinement trial: {"of": number, "steps": S, "lr": lr}
POST_TRAINING_BASELINES = ("fp32", "int8")  # int8-prune50 is fine-tuned like any trial
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


def optimize(
    study: optuna.Study,
    setup: SearchSetup,
    executor: Executor,
    *,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> optuna.Study:
    """Run trials until the study has ``n_trials`` COMPLETE trials (see the module docstring)."""
    emit = on_event or (lambda kind, info: None)
    driver = {"host": socket.gethostname(), "pid": os.getpid(), "id": uuid.uuid4().hex[:8]}
    recovered = recover_stale_trials(study, driver["id"])
    if recovered:
        emit("recovered", {"trials": recovered})
    in_flight: dict[int, Trial] = {}
    streaks = {"failed": 0, "hopeless": 0}
    stop: str | None = None
    last_beat = time.monotonic()
    try:
        while True:
            while stop is None and len(in_flight) < executor.capacity and _waiting(study) > 0:
                trial = _start(study, setup, executor, driver, emit)
                if trial is not None:
                    in_flight[trial.number] = trial
            if not in_flight:
                if stop is None and _running_elsewhere(study):
                    # trials of other drivers: wait for them, or recover them if their driver died
                    time.sleep(WAIT_OTHERS_S)
                    recovered = recover_stale_trials(study, driver["id"])
                    if recovered:
                        emit("recovered", {"trials": recovered})
                    continue
                if stop is None and (queued := refine_front(study, setup)):
                    emit("refining", {"trials": queued, "steps": setup.search.refine_steps})
                    continue
                break
            for outcome in executor.wait(timeout=HEARTBEAT_S):
                trial = in_flight.pop(outcome.number)
                _count_streaks(streaks, record(study, setup, trial, outcome))
                emit("finished", {"trial": trial.number, "outcome": outcome, "study": study})
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                _heartbeat(in_flight.values())
                last_beat = time.monotonic()
            stop = stop or _stop_reason(study, streaks)
    finally:
        executor.close()
    front = build_front(study)
    front.write_json(setup.run_dir / "front.json")
    if stop is not None:  # the trials in flight were finished and the front written first
        raise AutocompressError(stop)
    return study


def _count_streaks(streaks: dict[str, int], kind: str) -> None:
    """Consecutive failures and consecutive early stops; a completed trial resets both."""
    if kind == "ok":
        streaks.update(failed=0, hopeless=0)
    elif kind == "hopeless":
        streaks.update(failed=0, hopeless=streaks["hopeless"] + 1)
    else:
        streaks.update(failed=streaks["failed"] + 1)


def _stop_reason(study: optuna.Study, streaks: dict[str, int]) -> str | None:
    """Why this driver stops submitting trials, or None to go on."""
    if streaks["failed"] >= MAX_FAILURE_STREAK:
        last = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))[-1]
        return (
            f"{streaks['failed']} trials in a row failed; last reason: "
            f"{last.user_attrs.get('failure', '?')}. The study is kept; fix the cause and run "
            "the same command again to resume"
        )
    if streaks["hopeless"] >= MAX_HOPELESS_STREAK:
        return (
            f"{streaks['hopeless']} trials in a row fell below the early-stop floor: the "
            "accuracy floor looks unreachable in this space. The study and its front so far are "
            "kept; raise search.max_accuracy_drop or search.hopeless_margin, or widen the space, "
            "then run the same command again"
        )
    return None


def add_budget_slots(study: optuna.Study, n_trials: int) -> int:
    """Enqueue empty waiting trials until COMPLETE + RUNNING + WAITING reaches ``n_trials``.

    Refinement trials are extra: they do not count against the search budget.
    """
    counts = _counts(study, search_only=True)
    missing = (
        n_trials
        - counts[TrialState.COMPLETE]
        - counts[TrialState.RUNNING]
        - counts[TrialState.WAITING]
    )
    for _ in range(max(0, missing)):
        faults.point("driver.slots")
        study.enqueue_trial({}, user_attrs={SLOT: True})
    return max(0, missing)


def recover_stale_trials(study: optuna.Study, me: str = "") -> list[int]:
    """Close RUNNING trials whose driver is gone as FAIL, and re-queue each one's plan once.

    ``me`` is the calling driver's id: its own trials are never stale. The retry is enqueued
    *before* the stale trial is closed, so a driver killed in between leaves the stale trial
    RUNNING with its retry already queued; the next driver sees the retry and only closes it.
    """
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(t, me):
            continue
        if not _has_retry(study, t.number):
            params = t.system_attrs.get("fixed_params") or t.params
            attrs = {SLOT: True, "retry_of": t.number}
            for key in ("baseline", REFINE):
                if t.user_attrs.get(key):
                    attrs[key] = t.user_attrs[key]
            study.enqueue_trial(dict(params), user_attrs=attrs)
        faults.point("driver.recovering")
        driver = t.user_attrs.get("driver") or {}
        try:
            Trial(study, t._trial_id).set_user_attr(
                "failure",
                f"driver {driver.get('host', '?')}:{driver.get('pid', '?')} stopped while this "
                "trial was running; its plan was re-queued",
            )
            study.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another driver recovered it first
            continue
        recovered.append(t.number)
    return recovered


def _has_retry(study: optuna.Study, number: int) -> bool:
    return any(r.user_attrs.get("retry_of") == number for r in study.get_trials(deepcopy=False))


def record(study: optuna.Study, setup: SearchSetup, trial: Trial, outcome: Outcome) -> str:
    """Persist a finished trial: artifacts first, then attributes, then ``tell``.

    Returns the outcome kind as recorded (an "ok" run that measured NaN is recorded "failed").
    """
    if outcome.kind != "ok" or outcome.result is None:
        trial.set_user_attr("failure", outcome.reason or outcome.kind)
        trial.set_user_attr("outcome", outcome.kind)
        state = TrialState.PRUNED if outcome.kind == "hopeless" else TrialState.FAIL
        if outcome.early_accuracy is not None:
            trial.set_user_attr("early_accuracy", outcome.early_accuracy)
        study.tell(trial, state=state)
        add_budget_slots(study, setup.search.n_trials)
        return outcome.kind if outcome.kind != "ok" else "failed"
    result = outcome.result
    values = objective_values(result, setup.objectives, setup.search.latency_unit)
    if any(v != v for v in values):  # NaN: the trial measured nothing usable
        return record(
            study,
            setup,
            trial,
            Outcome(outcome.number, "failed", reason=f"non-finite objectives {values}"),
        )
    artifact_dir = write_artifacts(setup.run_dir, trial.number, result, trial.user_attrs)
    faults.point("driver.artifacts")
    trial.set_user_attr("artifact_dir", str(artifact_dir))
    trial.set_user_attr("result", summary(result))
    trial.set_user_attr("outcome", "ok")
    floor = setup.accuracy_floor
    if floor is not None:
        trial.set_constraint("accuracy_floor", floor - result["accuracy"])
    if "fingerprint_key" not in study.user_attrs:
        study.set_user_attr("fingerprint_key", result["fingerprint"]["key"])
    study.tell(trial, values)
    faults.point("driver.told")
    return "ok"


def objective_values(
    result: dict[str, Any], objectives: list[str], latency_unit: str
) -> list[float]:
    latency = result["latency_ratio"] if latency_unit == "ratio" else result["latency_ms"]
    table = {"accuracy": result["accuracy"], "latency": latency, "size": result["size_bytes"]}
    return [float(table[o]) for o in objectives]


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """The result without its artifact bytes (those go to files)."""
    return {k: v for k, v in result.items() if k not in ("artifact", "packed")}


def write_artifacts(
    run_dir: Path, number: int, result: dict[str, Any], attrs: dict[str, Any]
) -> Path:
    """Write the deployable, the packed weights, the plan and the result atomically."""
    final = run_dir / "trials" / f"{number:05d}"
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / f"model{result['artifact_suffix']}").write_bytes(result["artifact"])
    faults.point("artifacts.partial")
    (tmp / "model.acpk").write_bytes(result["packed"])
    (tmp / "plan.json").write_text(json.dumps(attrs.get("plan"), indent=2, sort_keys=True))
    (tmp / "result.json").write_text(
        json.dumps(summary(result), indent=2, sort_keys=True, default=str)
    )
    if final.exists():  # a re-run of the same number cannot happen; an orphan of a crash can
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def _start(
    study: optuna.Study,
    setup: SearchSetup,
    executor: Executor,
    driver: dict[str, Any],
    emit: Callable[[str, dict[str, Any]], None],
) -> Trial | None:
    trial = study.ask()
    faults.point("driver.asked")
    trial.set_user_attr("driver", driver)
    trial.set_user_attr("heartbeat", time.time())
    if not trial.user_attrs.get(SLOT):  # no slot was left: ask() made a fresh trial
        trial.set_user_attr("failure", "over budget: another driver took the last slot")
        study.tell(trial, state=TrialState.FAIL)
        return None
    plan = setup.space.sample(trial)
    if trial.user_attrs.get("baseline") in POST_TRAINING_BASELINES:
        plan = plan.without_finetuning()
    refine = trial.user_attrs.get(REFINE)
    if refine:  # the same plan as trial refine["of"], fine-tuned with a longer budget
        plan = plan.with_budget(refine["steps"], refine.get("lr"))
    trial.set_user_attr("plan", plan.to_dict())
    faults.point("driver.sampled")
    earlier = _completed_with_plan(study, plan.to_dict())
    if earlier is not None:  # the sampler proposed a plan already measured: reuse, don't retrain
        _copy_result(study, trial, earlier)
        emit("duplicate", {"trial": trial.number, "of": earlier.number, "study": study})
        return None
    executor.submit(trial.number, plan.to_dict(), setup.task.to_dict())
    emit(
        "started",
        {"trial": trial.number, "plan": plan, "baseline": trial.user_attrs.get("baseline")},
    )
    return trial


def _completed_with_plan(study: optuna.Study, plan: dict[str, Any]) -> FrozenTrial | None:
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("plan") == plan:
            return t
    return None


def _copy_result(study: optuna.Study, trial: Trial, earlier: FrozenTrial) -> None:
    """Record ``trial`` with the measurements of ``earlier`` (same plan, same deployable)."""
    trial.set_user_attr("duplicate_of", earlier.number)
    for key in ("result", "artifact_dir", "outcome"):
        if key in earlier.user_attrs:
            trial.set_user_attr(key, earlier.user_attrs[key])
    for key, value in earlier.constraints.items():
        trial.set_constraint(key, value)
    study.tell(trial, list(earlier.values))


def _initialise(study: optuna.Study, setup: SearchSetup) -> None:
    """Stamp the study and enqueue its baselines, warm starts and budget slots.

    Idempotent, so a driver that finds a study whose creator was killed half-way through this can
    run it again: what was already enqueued is not enqueued twice.
    """
    from autocompress import __version__

    if "signature" in study.user_attrs and study.user_attrs["signature"] != setup.signature():
        _check_same_search(study, setup)  # raises: someone else's half-made study
    study.set_user_attr("creator", {"host": socket.gethostname(), "pid": os.getpid()})
    study.set_user_attr("autocompress_version", __version__)
    study.set_user_attr("signature", setup.signature())
    study.set_user_attr("objectives", setup.objectives)
    study.set_user_attr("latency_unit", setup.search.latency_unit)
    study.set_user_attr("reference", setup.reference)
    study.set_user_attr("task", setup.task.to_dict())
    study.set_user_attr("space", setup.space.space.to_dict())
    study.set_user_attr("run_dir", str(setup.run_dir))
    study.set_user_attr("experiment", setup.experiment)
    existing = study.get_trials(deepcopy=False)
    have = {t.user_attrs.get("baseline") for t in existing}
    for kind in setup.search.baselines:
        if kind not in have:
            faults.point("driver.initialising")
            study.enqueue_trial(
                setup.space.baseline_params(kind), user_attrs={SLOT: True, "baseline": kind}
            )
    if setup.sensitivity:
        study.set_user_attr("sensitivity", setup.sensitivity)
    baselines = [setup.space.baseline_params(kind) for kind in setup.search.baselines]
    enqueued = sum(bool(t.user_attrs.get("warm_start")) for t in existing)
    for kind, params in warm_start_params(setup, baselines)[enqueued:]:  # the list is fixed
        study.enqueue_trial(params, user_attrs={SLOT: True, "warm_start": kind})
    add_budget_slots(study, setup.search.n_trials)
    study.set_user_attr("initialised", True)  # other drivers wait for this before joining


def _wait_until_initialised(study: optuna.Study, timeout_s: float = 60.0) -> bool:
    """A driver joining a study that another driver is still creating waits for its slots.

    Returns False when the creator is known dead (same host, process gone) or never stamped
    anything on an empty study: the caller then finishes the initialisation itself.
    """
    start = time.monotonic()
    while not study.user_attrs.get("initialised"):
        waited = time.monotonic() - start
        creator = study.user_attrs.get("creator") or {}
        if creator.get("host") == socket.gethostname() and not _pid_alive(
            int(creator.get("pid", -1))
        ):
            return False
        if "signature" not in study.user_attrs and waited > 5.0:
            if not study.get_trials(deepcopy=False) and not study.user_attrs:
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
    if study.user_attrs.get("signature") != setup.signature():
        raise StorageError(
            f"study {setup.name!r} was created with a different search space, objectives or "
            f"model; resuming would mix two searches. Restore the original space, or fork with "
            f"a new name (name={setup.name}-2)"
        )


def _counts(study: optuna.Study, search_only: bool = False) -> dict[TrialState, int]:
    counts = dict.fromkeys(TrialState, 0)
    for t in study.get_trials(deepcopy=False):
        if not (search_only and t.user_attrs.get(REFINE)):
            counts[t.state] += 1
    return counts


def enqueue_refinements(
    study: optuna.Study, numbers: list[int], steps: int, lr: float | None = None
) -> list[int]:
    """Queue, once each, the plans of completed trials ``numbers`` with ``steps`` of fine-tuning.

    A refinement is an ordinary trial (same plan, same measurement, its own number and
    artifacts) whose plan carries the longer budget; the search's proxy budget ranks plans, the
    refinement gives the members users pick the training they deserve (as AMC and HAQ fine-tune
    their final policy). Returns the numbers newly queued; already queued or finished
    refinements with the same budget are skipped, so calling this again after a crash is safe.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for n in numbers:
        t = trials.get(n)
        if t is None or t.state != TrialState.COMPLETE:
            raise ConfigError(
                f"trial {n} is not a completed trial of study {study.study_name!r}; "
                "choose one from `autocompress status` or the front"
            )
        if (t.user_attrs.get("plan") or {}).get("distill") is None:
            raise ConfigError(
                f"trial {n} is a post-training model (fp32 or int8 PTQ) with no fine-tuning to "
                "lengthen; refine a fine-tuned member"
            )
    queued = []
    for n in numbers:
        want = {"of": n, "steps": int(steps), "lr": lr}
        if any(
            t.user_attrs.get(REFINE) == want and t.state != TrialState.FAIL
            for t in trials.values()
        ):
            continue
        params = trials[n].system_attrs.get("fixed_params") or trials[n].params
        study.enqueue_trial(dict(params), user_attrs={SLOT: True, REFINE: want})
        queued.append(n)
    return queued


def refine_front(study: optuna.Study, setup: SearchSetup) -> list[int]:
    """The automatic refinement after the budget (``search.refine_members``): which members.

    The choice is stored on the study before anything is queued, so a resumed driver refines
    the same members even though refined trials have since changed the front.
    """
    k = setup.search.refine_members
    if k <= 0:
        return []
    chosen = study.user_attrs.get("refine_chosen")
    if chosen is None:
        chosen = refine_candidates(
            build_front(study), k, setup.accuracy_floor, setup.search.refine_slack
        )
        study.set_user_attr("refine_chosen", chosen)
    return enqueue_refinements(study, chosen, setup.search.refine_steps, setup.search.refine_lr)


def _waiting(study: optuna.Study) -> int:
    return _counts(study)[TrialState.WAITING]


def _running_elsewhere(study: optuna.Study) -> bool:
    """RUNNING trials remain (this driver has none in flight when it asks)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _heartbeat(trials: Any) -> None:
    now = time.time()
    for trial in trials:
        trial.set_user_attr("heartbeat", now)


def _is_stale(t: FrozenTrial, me: str) -> bool:
    driver = t.user_attrs.get("driver")
    started = t.datetime_start.timestamp() if t.datetime_start else 0.0
    if driver is None:  # killed between ask and the first stamp
        return time.time() - started > 10.0
    if driver.get("id") == me:
        return False
    pid = int(driver.get("pid", -1))
    if driver.get("host") == socket.gethostname() and (pid == os.getpid() or not _pid_alive(pid)):
        return True
    beat = float(t.user_attrs.get("heartbeat", started))
    return time.time() - beat > STALE_S


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
