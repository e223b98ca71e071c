"""The study's user attributes: every key, and typed readers and writers for them.

This is the one module that spells an attribute name (as optuna keeps its ``_SYSTEM_ATTR_*``
names in one place). Everything else reads a trial through :func:`read_trial` (a frozen
:class:`TrialRecord`) and a study through :func:`read_study` (a :class:`StudyRecord`), and
writes through the functions below, so a renamed or retyped attribute changes here alone.

Trial attributes, in the order a trial gets them:
    slot, baseline | warm_start | rung | retry_of     when enqueued (a budget slot and its kind;
                                                       a promotion's ``rung`` names its parent)
    driver, heartbeat                                  when a driver asks for it, then every 15 s
    rung                                               an entry's (rung 0), once asked
    plan, weight_bits.<layer>, prune_ratio.<layer>,    once sampled (the real values, not the
      kd_temperature, kd_alpha                           sampler's ordinal indices: dashboards)
    result, artifact_dir, outcome                      when it completed
    failure, outcome, early_accuracy                   when it did not
    duplicate_of                                       when it reused an earlier trial's figures
    feasible (+ the system attribute ``constraints``)  when a constraint was set (see
                                                       :func:`set_constraints`)

Study: the stamp (:func:`stamp_study`), with the objectives' metric names for dashboards;
``retime.<number>`` per trial timed again after the search (:func:`set_retime`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

from autocompress.plan import CompressionPlan
from autocompress.record._result import Retime, TrialResult
from autocompress.record._rung import Promotion, Rung

# Trial attributes
SLOT = "slot"  # True: this waiting trial is a budget slot (see study/_lifecycle.py)
BASELINE = "baseline"  # "fp32", "int8", "int8-prune50": a baseline plan
WARM_START = "warm_start"  # "uniform" / "sensitivity": enqueued before the sampler's plans
RUNG = "rung"  # {"level": k, "steps": S, "parent": n | None, "lr": lr}: see Rung
REFINE = "refine"  # {"of", "steps", "lr"}: a refinement of studies made before rungs (read only)
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
FEASIBLE = "feasible"  # every constraint <= 0 (shown as a column by optuna-dashboard)
WEIGHT_BITS = "weight_bits."  # + layer name: the plan's real bits (32: full precision)
PRUNE_RATIO = "prune_ratio."  # + layer name: the plan's real fraction of channels removed
KD_TEMPERATURE = "kd_temperature"  # the plan's distillation temperature (absent: no KD)
KD_ALPHA = "kd_alpha"
# Trial *system* attribute: the constraint values as a list, the format Optuna itself writes for
# ``constraints_func`` and reads beside ``set_constraint``'s; optuna-dashboard 0.21 reads this one
# only (``_serializer.CONSTRAINTS_KEY``), so ``set_constraint`` alone left feasibility invisible.
CONSTRAINTS = "constraints"
FP32_BITS = 32  # how full precision shows where bits must stay integers

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
RUNGS = "rungs"  # the ladder's step budgets (search.rungs); absent: one rung
PROMOTIONS = "promotions"  # [[parent, level, steps], ...]: promotions decided, before enqueueing
ACCURACY_FLOOR = "accuracy_floor"  # lowest feasible validation accuracy (fraction); None: none
RETIME = "retime."  # + trial number: Retime.to_dict() (a finished trial's own attrs are frozen)

# What a retry of a stale trial inherits from it.
_INHERITED = (BASELINE, RUNG, REFINE)


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
    rung: Rung | None = None  # None: no rung recorded (a study without rungs: rung 0)
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
    rung, driver, plan, result = (
        a.get(RUNG) or a.get(REFINE),
        a.get(DRIVER),
        a.get(PLAN),
        a.get(RESULT),
    )
    return TrialRecord(
        slot=bool(a.get(SLOT)),
        baseline=a.get(BASELINE) or None,
        warm_start=a.get(WARM_START) or None,
        rung=Rung.from_dict(rung) if rung else None,
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


def is_promotion(trial: FrozenTrial | Trial) -> bool:
    """A promoted trial (or an old refinement): extra to the search budget. Cheaper than
    ``read_trial(t).rung``: budget counts ask it of every trial, often."""
    a = trial.user_attrs
    rung = a.get(RUNG)
    return bool(a.get(REFINE)) or bool(rung and rung.get("parent") is not None)


def slot_attrs(
    *,
    baseline: str | None = None,
    warm_start: str | None = None,
    rung: Rung | None = None,
    retry_of: int | None = None,
) -> dict[str, Any]:
    """The attributes of a budget slot to enqueue (``study.enqueue_trial(..., user_attrs=)``)."""
    attrs: dict[str, Any] = {SLOT: True}
    if baseline:
        attrs[BASELINE] = baseline
    if warm_start:
        attrs[WARM_START] = warm_start
    if rung is not None:
        attrs[RUNG] = rung.to_dict()
    if retry_of is not None:
        attrs[RETRY_OF] = retry_of
    return attrs


def retry_attrs(stale: FrozenTrial) -> dict[str, Any]:
    """A slot re-running ``stale``'s plan, with the kind (baseline, rung) it had."""
    attrs = {SLOT: True, RETRY_OF: stale.number}
    attrs.update({k: stale.user_attrs[k] for k in _INHERITED if stale.user_attrs.get(k)})
    return attrs


def stamp_driver(trial: Trial, driver: DriverStamp) -> None:
    trial.set_user_attr(DRIVER, driver.to_dict())
    trial.set_user_attr(HEARTBEAT, time.time())


def set_rung(trial: Trial, rung: Rung) -> None:
    """An entry's rung (level 0), recorded when it is asked."""
    trial.set_user_attr(RUNG, rung.to_dict())


def beat(trial: Trial, now: float) -> None:
    trial.set_user_attr(HEARTBEAT, now)


def set_plan(trial: Trial, plan: CompressionPlan) -> None:
    """The plan, and its real values per layer beside the sampler's ordinal parameters."""
    trial.set_user_attr(PLAN, plan.to_dict())
    for name, value in plan_values(plan).items():
        trial.set_user_attr(name, value)


def plan_values(plan: CompressionPlan) -> dict[str, float | int]:
    """``weight_bits.<layer>`` (32 for full precision), ``prune_ratio.<layer>``, KD knobs."""
    values: dict[str, float | int] = {}
    for layer, lp in plan.layers.items():
        values[WEIGHT_BITS + layer] = FP32_BITS if lp.weight_bits is None else lp.weight_bits
        values[PRUNE_RATIO + layer] = float(lp.prune_ratio)
    if plan.distill is not None:
        values[KD_TEMPERATURE] = float(plan.distill.temperature)
        values[KD_ALPHA] = float(plan.distill.alpha)
    return values


def set_constraints(trial: Trial, constraints: Mapping[str, float]) -> None:
    """Constraint values (feasible when all <= 0), where Optuna 5 and optuna-dashboard read them.

    Written once, as the list Optuna writes for ``constraints_func`` (its samplers read it as
    constraints "0", "1", ...); ``trial.set_constraint`` would hide them from the dashboard, and
    both together would count each constraint twice (GPSampler models each one).
    """
    values = [float(v) for v in constraints.values()]
    trial.storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS, values)
    trial.set_user_attr(FEASIBLE, all(v <= 0.0 for v in values))


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
    if earlier.constraints:
        set_constraints(trial, earlier.constraints)


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
    promotions: tuple[Promotion, ...]  # decided (each enqueued once, after it was stored)
    initialised: bool
    creator: Mapping[str, Any]
    sensitivity: Mapping[str, Any] | None
    experiment: Mapping[str, Any] | None
    has_any: bool  # the study has attributes at all
    accuracy_floor: float | None = None  # fraction; None: no floor (or a study made before it)
    rungs: tuple[int, ...] | None = None  # the ladder's step budgets; None: one rung
    retimes: Mapping[int, Retime] = field(default_factory=dict)  # trial number -> its re-time


def read_study(study: optuna.Study) -> StudyRecord:
    a = study.user_attrs
    rungs = a.get(RUNGS)
    return StudyRecord(
        objectives=tuple(a.get(OBJECTIVES) or ("accuracy", "latency", "size")),
        latency_unit=str(a.get(LATENCY_UNIT) or "ratio"),
        reference=dict(a.get(REFERENCE) or {}),
        task=dict(a.get(TASK) or {}),
        run_dir=a.get(RUN_DIR),
        signature=a.get(SIGNATURE),
        fingerprint_key=a.get(FINGERPRINT_KEY),
        promotions=tuple(Promotion(*map(int, p)) for p in a.get(PROMOTIONS) or ()),
        initialised=bool(a.get(INITIALISED)),
        creator=dict(a.get(CREATOR) or {}),
        sensitivity=a.get(SENSITIVITY),
        experiment=a.get(EXPERIMENT),
        has_any=bool(a),
        accuracy_floor=_accuracy_floor(a),
        rungs=None if rungs is None else tuple(int(s) for s in rungs),
        retimes={int(k[len(RETIME) :]): Retime.from_dict(v) for k, v in _prefixed(a, RETIME)},
    )


def _prefixed(a: Mapping[str, Any], prefix: str) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in a.items() if k.startswith(prefix)]


def _accuracy_floor(a: Mapping[str, Any]) -> float | None:
    """The stored floor; for a study stamped before it was stored, its experiment's drop."""
    if ACCURACY_FLOOR in a:
        return None if a[ACCURACY_FLOOR] is None else float(a[ACCURACY_FLOOR])
    drop = ((a.get(EXPERIMENT) or {}).get("search") or {}).get("max_accuracy_drop")
    fp32 = (a.get(REFERENCE) or {}).get("val_accuracy")
    return None if drop is None or fp32 is None else float(fp32) - float(drop) / 100.0


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
    accuracy_floor: float | None = None
    rungs: tuple[int, ...] | None = None  # search.rungs


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
    study.set_user_attr(ACCURACY_FLOOR, stamp.accuracy_floor)
    if stamp.rungs is not None:
        study.set_user_attr(RUNGS, list(stamp.rungs))
    with warnings.catch_warnings():  # experimental since Optuna 3.2, stable in use since
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(metric_names(stamp.objectives, stamp.latency_unit))


def metric_names(objectives: tuple[str, ...] | list[str], latency_unit: str) -> list[str]:
    """The objectives as dashboards label them, units in the name (``latency_ratio``: x fp32)."""
    units = {"accuracy": "accuracy", "size": "size_bytes"}
    units["latency"] = "latency_ratio" if latency_unit == "ratio" else "latency_ms"
    return [units.get(o, o) for o in objectives]


def set_sensitivity(study: optuna.Study, sensitivity: Mapping[str, Any]) -> None:
    study.set_user_attr(SENSITIVITY, dict(sensitivity))


def mark_initialised(study: optuna.Study) -> None:
    study.set_user_attr(INITIALISED, True)


def set_fingerprint_key(study: optuna.Study, key: str) -> None:
    """The device fingerprint of the study's first measurement: its front's device."""
    if FINGERPRINT_KEY not in study.user_attrs:
        study.set_user_attr(FINGERPRINT_KEY, key)


def set_retime(study: optuna.Study, number: int, retime: Retime) -> None:
    """Trial ``number``'s re-time (``study/_retime.py``); one key per trial, so drivers that
    re-time different trials at once never overwrite each other."""
    study.set_user_attr(f"{RETIME}{number}", retime.to_dict())


def add_promotions(study: optuna.Study, promotions: list[Promotion]) -> None:
    """Store promotions as decided, before any is enqueued (a resumed driver enqueues the
    stored ones it finds without a trial, and never decides one twice)."""
    stored = [list(p) for p in study.user_attrs.get(PROMOTIONS) or ()]
    stored += [[p.parent, p.level, p.steps] for p in promotions]
    study.set_user_attr(PROMOTIONS, stored)
