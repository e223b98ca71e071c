"""The search driver: the only code that talks to Optuna, and the loop a reader opens first.

    experiments/x.yaml --load_experiment--> ExperimentConfig --setup--> SearchSetup
    study = open_study(setup)          create (with budget slots) or resume      (_lifecycle)
    recover_stale_trials(study)        RUNNING trials of dead drivers -> FAIL, plans re-queued
    loop, up to executor.capacity trials in flight; for each free worker:
        trial = a waiting promotion    highest rung first (_rungs.claim_promotion)
             or a new promotion        top 1/eta of a rung by non-dominated sorting (_rungs)
             or study.ask()            pops a budget slot (baselines are the first slots)
        plan  = space.sample(trial)    a CompressionPlan keyed by module name, with the budget
                                       of its rung (search.rungs; entries at the lowest)
        executor.submit(trial.number, plan.to_dict(), task.to_dict())   plain data only
        -- worker: run_trial(plan, task) -> TrialOutput (result + bytes) --
        write artifacts; record the result (record/_attrs); constraints (A.set_constraints)
        study.tell(trial, [accuracy, latency, size])  or FAIL / PRUNED with the reason
    no slot left and nothing promotable, or nothing that fits search.max_trial_minutes
        (_budget) or search.max_steps: stop when the trials in flight are recorded, saying
        which budget was spent
    trials timed unsettled: timed again, the steadier sitting kept (_retime)
    front = build_front(study) -> front.json   each plan at its highest rung

A trial asked when no slot was left (another driver took the last one) is closed at once as FAIL
with that reason, never run. Stale-trial recovery and heartbeats live in ``_recovery``.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from autocompress import _faults as faults
from autocompress import _files
from autocompress.errors import AutocompressError
from autocompress.front import build_front
from autocompress.plan import CompressionPlan
from autocompress.record import DriverStamp, Rung, TrialOutput, objective_values, read_trial
from autocompress.record import attrs as A
from autocompress.study._budget import TimeBudget, time_budget, top_rung_note, waiting
from autocompress.study._executors import Executor, Outcome
from autocompress.study._lifecycle import add_budget_slots
from autocompress.study._recovery import HEARTBEAT_S, heartbeat, recover_stale_trials
from autocompress.study._retime import retime_unsettled
from autocompress.study._rungs import (
    budgeted,
    claim_promotion,
    entry_rung,
    fully_trained,
    ladder,
    promote,
    rung_floor,
    steps_left,
)
from autocompress.study._setup import SearchSetup

MAX_FAILURE_STREAK = 8  # failed trials in a row: something is broken, stop and say why
MAX_HOPELESS_STREAK = 20  # early-stopped trials in a row: the accuracy floor looks unreachable
WAIT_OTHERS_S = 1.0  # poll period while only other drivers' trials are running
POST_TRAINING_BASELINES = (
    "fp32",
    "int8",
    "int8-dynamic",
)  # int8-prune50 is fine-tuned like any trial
PLAIN_BASELINES = ("plain-prune25", "plain-prune50")  # fine-tuned the plain way
Emit = Callable[[str, dict[str, Any]], None]


def optimize(
    study: optuna.Study,
    setup: SearchSetup,
    executor: Executor,
    *,
    on_event: Emit | None = None,
) -> optuna.Study:
    """Run trials until the study has ``n_trials`` COMPLETE entries (plans sampled, baselines
    included) and nothing is left to promote (see the module docstring)."""
    emit: Emit = on_event or (lambda kind, info: None)
    driver = DriverStamp(socket.gethostname(), os.getpid(), uuid.uuid4().hex[:8])
    _recover(study, driver, emit)
    in_flight: dict[int, Trial] = {}
    streaks = {"failed": 0, "hopeless": 0}
    stop: str | None = None
    last_beat = time.monotonic()
    try:
        while True:
            while stop is None and len(in_flight) < executor.capacity:
                asked = _next_trial(study, setup)
                if asked is None:
                    break
                trial = _start(study, setup, executor, asked, driver, emit)
                if trial is not None:
                    in_flight[trial.number] = trial
            if not in_flight:
                if stop is None and _running_elsewhere(study):
                    # trials of other drivers: wait for them, or recover them if their driver died
                    time.sleep(WAIT_OTHERS_S)
                    _recover(study, driver, emit)
                    continue
                break
            for outcome in executor.wait(timeout=HEARTBEAT_S):
                trial = in_flight.pop(outcome.number)
                _count_streaks(streaks, record(study, setup, trial, outcome))
                emit("finished", {"trial": trial.number, "outcome": outcome, "study": study})
            if time.monotonic() - last_beat >= HEARTBEAT_S:
                heartbeat(in_flight.values())
                last_beat = time.monotonic()
            stop = stop or _stop_reason(study, streaks)
    finally:
        executor.close()
    if stop is None:  # the machine is quiet now: time again what never settled
        emit("retimed", {"pass": retime_unsettled(study, setup)})
    build_front(study).write_json(setup.run_dir / "front.json")
    spent = None if stop is not None else budget_left(study, setup) or steps_left(study, setup)
    if spent is not None:
        emit("budget_spent", {"reason": spent})
    if stop is not None:  # the trials in flight were finished and the front written first
        raise AutocompressError(stop)
    return study


def record(study: optuna.Study, setup: SearchSetup, trial: Trial, outcome: Outcome) -> str:
    """Persist a finished trial: artifacts first, then attributes, then ``tell``.

    Returns the outcome kind as recorded (an "ok" run that measured NaN is recorded "failed").
    """
    if outcome.kind != "ok" or outcome.output is None:
        A.set_failed(trial, outcome.kind, outcome.reason or outcome.kind, outcome.early_accuracy)
        state = TrialState.PRUNED if outcome.kind == "hopeless" else TrialState.FAIL
        study.tell(trial, state=state)
        add_budget_slots(study, setup.search.n_trials)
        return outcome.kind if outcome.kind != "ok" else "failed"
    result = outcome.output.result
    values = objective_values(result, setup.objectives, setup.search.latency_unit)
    if any(v != v for v in values):  # NaN: the trial measured nothing usable
        failed = Outcome(outcome.number, "failed", reason=f"non-finite objectives {values}")
        return record(study, setup, trial, failed)
    plan = read_trial(trial).plan_data
    artifact_dir = write_artifacts(setup.run_dir, trial.number, outcome.output, plan)
    faults.point("driver.artifacts")
    A.set_completed(trial, result, str(artifact_dir))
    floor = rung_floor(study, setup, read_trial(trial).rung)
    if floor is not None:
        A.set_constraints(trial, {"accuracy_floor": floor - result.accuracy})
    if result.fingerprint_key is not None:
        A.set_fingerprint_key(study, result.fingerprint_key)
    study.tell(trial, values)
    faults.point("driver.told")
    return "ok"


def write_artifacts(run_dir: Path, number: int, output: TrialOutput, plan: Any) -> Path:
    """Write the deployable, the packed weights, the plan and the result atomically."""

    def fill(tmp: Path) -> None:
        (tmp / f"model{output.result.artifact_suffix}").write_bytes(output.artifact)
        faults.point("artifacts.partial")
        (tmp / "model.acpk").write_bytes(output.packed)
        (tmp / "plan.json").write_text(json.dumps(plan, indent=2, sort_keys=True))
        (tmp / "result.json").write_text(
            json.dumps(output.result.to_dict(), indent=2, sort_keys=True, default=str)
        )

    return _files.write_dir(run_dir / "trials" / f"{number:05d}", fill)


def _next_trial(study: optuna.Study, setup: SearchSetup) -> Trial | None:
    """The trial a free worker runs: a waiting promotion (highest rung first), else one
    decided now, else a budget slot (a new plan); None when there is none of these, or none
    whose expected duration fits in what is left of ``search.max_trial_minutes``."""
    budget = _time_budget(study.get_trials(deepcopy=False), setup)
    trial = claim_promotion(study, budget)
    if trial is None and promote(study, setup, budget):
        trial = claim_promotion(study, budget)
    entry = entry_rung(setup)
    steps = setup.task.finetune.steps if entry is None else entry.steps
    if trial is None and _waiting_slots(study) > 0 and (budget is None or budget.fits(steps)):
        trial = study.ask()
        faults.point("driver.asked")
    return trial


def budget_left(study: optuna.Study, setup: SearchSetup) -> str | None:
    """Why a search ended with budget slots unsampled, or None: ``search.max_trial_minutes``
    was spent (a later run with a larger value goes on)."""
    trials = study.get_trials(deepcopy=False)
    budget = _time_budget(trials, setup)
    plans, promotions = waiting(trials)
    if budget is None or not plans + promotions:
        return None
    spent = (
        f"trial-time budget spent: {budget.committed_s / 60:.1f} of "
        f"{budget.limit_s / 60:g} trial-minutes; {plans} plan(s) not "
        f"sampled and {promotions} promotion(s) not run, as they would pass it; raise "
        "search.max_trial_minutes and run the same command again to go on"
    )
    rungs = ladder(setup) if setup.search.rungs is not None else []
    done = fully_trained(trials, len(rungs) - 1) if rungs else None
    thin = top_rung_note(budget, rungs, setup.search.eta, done)
    return spent if thin is None else f"{spent}. Note: {thin}"


def _time_budget(trials: list[FrozenTrial], setup: SearchSetup) -> TimeBudget | None:
    """The study's trial-time budget now (None without ``search.max_trial_minutes``); a plan
    without its own budget fine-tunes the experiment's ``finetune.steps``."""
    return time_budget(
        trials, setup.search.max_trial_minutes, default_steps=setup.task.finetune.steps
    )


def _start(
    study: optuna.Study,
    setup: SearchSetup,
    executor: Executor,
    trial: Trial,
    driver: DriverStamp,
    emit: Emit,
) -> Trial | None:
    A.stamp_driver(trial, driver)
    slot = read_trial(trial)
    if not slot.slot:  # no slot was left: ask() made a fresh trial
        A.set_failure(trial, "over budget: another driver took the last slot")
        study.tell(trial, state=TrialState.FAIL)
        return None
    rung = slot.rung or entry_rung(setup)
    if slot.rung is None and rung is not None:
        A.set_rung(trial, rung)
    plan = _plan_of(setup, trial, slot.baseline, rung)
    A.set_plan(trial, plan)
    faults.point("driver.sampled")
    earlier = _completed_with_plan(study, plan)
    if earlier is not None:  # the sampler proposed a plan already measured: reuse, don't retrain
        _copy_result(study, trial, earlier)
        emit("duplicate", {"trial": trial.number, "of": earlier.number, "study": study})
        return None
    executor.submit(trial.number, plan.to_dict(), setup.task.to_dict())
    emit("started", {"trial": trial.number, "plan": plan, "baseline": slot.baseline})
    return trial


def _plan_of(
    setup: SearchSetup, trial: Trial, baseline: str | None, rung: Rung | None
) -> CompressionPlan:
    """The sampled plan, without fine-tuning for post-training baselines, with its rung's
    budget (a promotion: the same plan as trial ``rung.parent``, fine-tuned longer).

    The plain baselines go up the rungs like any plan: they are compared at equal budgets.
    Every plan is capped at the bits the target's int8 kernels compute exactly (7 where they
    saturate: ``runtimes.widest_exact_bits``), so the stored plan is what was trained and ships.
    """
    plan = setup.space.sample(trial)
    if baseline in POST_TRAINING_BASELINES:
        plan = plan.without_finetuning()
    elif baseline in PLAIN_BASELINES:
        plan = plan.plain()
    return budgeted(plan.capped(setup.space.widest_bits), rung)


def _completed_with_plan(study: optuna.Study, plan: CompressionPlan) -> FrozenTrial | None:
    wanted = plan.to_dict()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if read_trial(t).plan_data == wanted:
            return t
    return None


def _copy_result(study: optuna.Study, trial: Trial, earlier: FrozenTrial) -> None:
    """Record ``trial`` with the measurements of ``earlier`` (same plan, same deployable)."""
    A.copy_completed(trial, earlier)  # the constraints too
    study.tell(trial, list(earlier.values))


def _recover(study: optuna.Study, driver: DriverStamp, emit: Emit) -> None:
    recovered = recover_stale_trials(study, driver.id)
    if recovered:
        emit("recovered", {"trials": recovered})


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
            f"{read_trial(last).failure or '?'}. The study is kept; fix the cause and run "
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


def _waiting_slots(study: optuna.Study) -> int:
    """Budget slots (and retries) not sampled yet; waiting promotions are not counted: those
    the budget lets start are claimed by ``claim_promotion``."""
    return waiting(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))[0]


def _running_elsewhere(study: optuna.Study) -> bool:
    """RUNNING trials remain (this driver has none in flight when it asks)."""
    return bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
