"""The study's user attributes: every key, and typed readers and writers for them.

This is the one module that spells an attribute name (as optuna keeps its ``_SYSTEM_ATTR_*``
names in one place). Everything else reads a trial through :func:`read_trial` (a frozen
:class:`TrialRecord`) and a study through :func:`read_study` (a :class:`StudyRecord`), and
writes through the functions below, so a renamed or retyped attribute changes here alone.

Trial attributes, in the order a trial gets them:
    slot, baseline | warm_start | refine | retry_of   when enqueued (a budget slot and its kind)
    driver, heartbeat                                  when a driver asks for it, then every 15 s
    plan                                               once sampled (the real values, not indices)
    result, artifact_dir, outcome                      when it completed
    failure, outcome, early_accuracy                   when it did not
    duplicate_of                                       when it reused an earlier trial's figures
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

from autocompress.plan import CompressionPlan
from autocompress.record._result import TrialResult

# Trial attributes
SLOT = "slot"  # True: this waiting trial is a budget slot (see study/_lifecycle.py)
BASELINE = "baseline"  # "fp32", "int8", "int8-prune50": a baseline plan
WARM_START = "warm_start"  # "uniform" / "sensitivity": enqueued before the sampler's plans
REFINE = "refine"  # {"of": number, "steps": S, "lr": lr}: the same plan, fine-tuned longer
RETRY_OF = "retry_of"  # number of the stale trial whose plan this one re-runs
DRIVER = "driver"  # {"host", "pid", "id"} of the driver running it
HEARTBEAT = "heartbeat"  # time.time() of that driver's last stamp
PLAN = "plan"  # CompressionPlan.to_dict()
RESULT = "result"  # TrialResult.to_dict()
ARTIFACT_DIR = "artifact_dir"  # run_dir/trials/NNNNN
OUTCOME = "outcome"  # "ok" | "failed" | "hopeless" | "timeout" | "crashed"
FAILURE = "failure"  # one line: why it did not complete
EARLY_ACCURACY = "early_accuracy"  # of a trial stopped early
DUPLICATE_OF = "duplicate_of"  # number of the completed trial with the same plan

# Study attributes
CREATOR = "creator"
VERSION = "autocompress_version"
SIGNATURE = "signature"
OBJECTIVES = "objectives"
LATENCY_UNIT = "latency_unit"
REFERENCE = "reference"
TASK = "task"
SPACE = "space"
RUN_DIR = "run_dir"
EXPERIMENT = "experiment"
SENSITIVITY = "sensitivity"
INITIALISED = "initialised"
FINGERPRINT_KEY = "fingerprint_key"
REFINE_CHOSEN = "refine_chosen"

# What a retry of a stale trial inherits from it.
_INHERITED = (BASELINE, REFINE)


@dataclass(frozen=True)
class Refinement:
    """A refinement trial: the plan of trial ``of`` with ``steps`` of fine-tuning at ``lr``."""

    of: int
    steps: int
    lr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"of": self.of, "steps": self.steps, "lr": self.lr}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refinement:
        return cls(int(data["of"]), int(data["steps"]), data.get("lr"))


@dataclass(frozen=True)
class DriverStamp:
    """Which driver process runs a trial."""

    host: str
    pid: int
    id: str

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "id": self.id}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriverStamp:
        return cls(str(data.get("host", "?")), int(data.get("pid", -1)), str(data.get("id", "")))


@dataclass(frozen=True)
class TrialRecord:
    """A trial's user attributes, typed. Absent attributes are ``None`` / ``False``."""

    slot: bool = False
    baseline: str | None = None
    warm_start: str | None = None
    refine: Refinement | None = None
    retry_of: int | None = None
    driver: DriverStamp | None = None
    heartbeat: float | None = None
    plan: CompressionPlan | None = None
    result: TrialResult | None = None
    artifact_dir: str | None = None
    outcome: str | None = None
    failure: str | None = None
    early_accuracy: float | None = None
    duplicate_of: int | None = None
    plan_data: Mapping[str, Any] | None = field(default=None, repr=False)  # as stored


def read_trial(trial: FrozenTrial | Trial) -> TrialRecord:
    """The typed view of ``trial``'s user attributes."""
    a = trial.user_attrs
    refine, driver, plan, result = a.get(REFINE), a.get(DRIVER), a.get(PLAN), a.get(RESULT)
    return TrialRecord(
        slot=bool(a.get(SLOT)),
        baseline=a.get(BASELINE) or None,
        warm_start=a.get(WARM_START) or None,
        refine=Refinement.from_dict(refine) if refine else None,
        retry_of=a.get(RETRY_OF),
        driver=DriverStamp.from_dict(driver) if driver else None,
        heartbeat=a.get(HEARTBEAT),
        plan=CompressionPlan.from_dict(plan) if plan else None,
        result=TrialResult.from_dict(result) if result else None,
        artifact_dir=a.get(ARTIFACT_DIR),
        outcome=a.get(OUTCOME),
        failure=a.get(FAILURE),
        early_accuracy=a.get(EARLY_ACCURACY),
        duplicate_of=a.get(DUPLICATE_OF),
        plan_data=plan,
    )


def is_refinement(trial: FrozenTrial | Trial) -> bool:
    """Cheaper than ``read_trial(t).refine``: budget counts ask it of every trial, often."""
    return bool(trial.user_attrs.get(REFINE))


def slot_attrs(
    *,
    baseline: str | None = None,
    warm_start: str | None = None,
    refine: Refinement | None = None,
    retry_of: int | None = None,
) -> dict[str, Any]:
    """The attributes of a budget slot to enqueue (``study.enqueue_trial(..., user_attrs=)``)."""
    attrs: dict[str, Any] = {SLOT: True}
    if baseline:
        attrs[BASELINE] = baseline
    if warm_start:
        attrs[WARM_START] = warm_start
    if refine is not None:
        attrs[REFINE] = refine.to_dict()
    if retry_of is not None:
        attrs[RETRY_OF] = retry_of
    return attrs


def retry_attrs(stale: FrozenTrial) -> dict[str, Any]:
    """A slot re-running ``stale``'s plan, with the kind (baseline, refinement) it had."""
    attrs = {SLOT: True, RETRY_OF: stale.number}
    attrs.update({k: stale.user_attrs[k] for k in _INHERITED if stale.user_attrs.get(k)})
    return attrs


def stamp_driver(trial: Trial, driver: DriverStamp) -> None:
    trial.set_user_attr(DRIVER, driver.to_dict())
    trial.set_user_attr(HEARTBEAT, time.time())


def beat(trial: Trial, now: float) -> None:
    trial.set_user_attr(HEARTBEAT, now)


def set_plan(trial: Trial, plan: CompressionPlan) -> None:
    trial.set_user_attr(PLAN, plan.to_dict())


def set_completed(trial: Trial, result: TrialResult, artifact_dir: str) -> None:
    trial.set_user_attr(ARTIFACT_DIR, artifact_dir)
    trial.set_user_attr(RESULT, result.to_dict())
    trial.set_user_attr(OUTCOME, "ok")


def set_failed(trial: Trial, kind: str, reason: str, early_accuracy: float | None = None) -> None:
    trial.set_user_attr(FAILURE, reason)
    trial.set_user_attr(OUTCOME, kind)
    if early_accuracy is not None:
        trial.set_user_attr(EARLY_ACCURACY, early_accuracy)


def set_failure(trial: Trial, reason: str) -> None:
    """Only the reason: a trial closed by a driver, not run (over budget, stale)."""
    trial.set_user_attr(FAILURE, reason)


def copy_completed(trial: Trial, earlier: FrozenTrial) -> None:
    """``trial`` takes ``earlier``'s measurement (same plan, same deployable)."""
    trial.set_user_attr(DUPLICATE_OF, earlier.number)
    for key in (RESULT, ARTIFACT_DIR, OUTCOME):
        if key in earlier.user_attrs:
            trial.set_user_attr(key, earlier.user_attrs[key])


@dataclass(frozen=True)
class StudyRecord:
    """An autocompress study's own attributes, typed (empty for a foreign study)."""

    objectives: tuple[str, ...]
    latency_unit: str
    reference: Mapping[str, float]  # fp32 latency_ms, size_bytes, accuracy
    task: Mapping[str, Any]  # Task.to_dict()
    run_dir: str | None
    signature: str | None
    fingerprint_key: str | None
    refine_chosen: tuple[int, ...] | None
    initialised: bool
    creator: Mapping[str, Any]
    sensitivity: Mapping[str, Any] | None
    experiment: Mapping[str, Any] | None
    has_any: bool  # the study has attributes at all


def read_study(study: optuna.Study) -> StudyRecord:
    a = study.user_attrs
    chosen = a.get(REFINE_CHOSEN)
    return StudyRecord(
        objectives=tuple(a.get(OBJECTIVES) or ("accuracy", "latency", "size")),
        latency_unit=str(a.get(LATENCY_UNIT) or "ratio"),
        reference=dict(a.get(REFERENCE) or {}),
        task=dict(a.get(TASK) or {}),
        run_dir=a.get(RUN_DIR),
        signature=a.get(SIGNATURE),
        fingerprint_key=a.get(FINGERPRINT_KEY),
        refine_chosen=None if chosen is None else tuple(int(n) for n in chosen),
        initialised=bool(a.get(INITIALISED)),
        creator=dict(a.get(CREATOR) or {}),
        sensitivity=a.get(SENSITIVITY),
        experiment=a.get(EXPERIMENT),
        has_any=bool(a),
    )


@dataclass(frozen=True)
class StudyStamp:
    """What a new study is stamped with (``study/_lifecycle.py`` builds it from the setup)."""

    creator: Mapping[str, Any]
    version: str
    signature: str
    objectives: tuple[str, ...]
    latency_unit: str
    reference: Mapping[str, Any]
    task: Mapping[str, Any]
    space: Mapping[str, Any]
    run_dir: str
    experiment: Mapping[str, Any] | None


def stamp_study(study: optuna.Study, stamp: StudyStamp) -> None:
    study.set_user_attr(CREATOR, dict(stamp.creator))
    study.set_user_attr(VERSION, stamp.version)
    study.set_user_attr(SIGNATURE, stamp.signature)
    study.set_user_attr(OBJECTIVES, list(stamp.objectives))
    study.set_user_attr(LATENCY_UNIT, stamp.latency_unit)
    study.set_user_attr(REFERENCE, dict(stamp.reference))
    study.set_user_attr(TASK, dict(stamp.task))
    study.set_user_attr(SPACE, dict(stamp.space))
    study.set_user_attr(RUN_DIR, stamp.run_dir)
    study.set_user_attr(EXPERIMENT, stamp.experiment)


def set_sensitivity(study: optuna.Study, sensitivity: Mapping[str, Any]) -> None:
    study.set_user_attr(SENSITIVITY, dict(sensitivity))


def mark_initialised(study: optuna.Study) -> None:
    study.set_user_attr(INITIALISED, True)


def set_fingerprint_key(study: optuna.Study, key: str) -> None:
    """The device fingerprint of the study's first measurement: its front's device."""
    if FINGERPRINT_KEY not in study.user_attrs:
        study.set_user_attr(FINGERPRINT_KEY, key)


def set_refine_chosen(study: optuna.Study, numbers: list[int]) -> None:
    study.set_user_attr(REFINE_CHOSEN, list(numbers))
