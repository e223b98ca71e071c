"""Made-up trial outputs for tests of the driver, storages and faults (no training)."""

from __future__ import annotations

import random

from autocompress.measure import LatencyStats, Measurement
from autocompress.record import TrialOutput, TrialResult


def synthetic_result(
    accuracy: float, latency_ms: float, latency_ratio: float | None, size_bytes: float
) -> TrialResult:
    """A result with these figures and a fixed fingerprint."""
    stats = LatencyStats(latency_ms, latency_ms, latency_ms, latency_ms, 0.0, 1)
    return TrialResult(
        accuracy=accuracy,
        latency_ms=latency_ms,
        latency_ratio=latency_ratio,
        reference_latency_ms=None,
        size_bytes=int(size_bytes),
        deploy_bytes=1,
        params=0,
        latency=Measurement(stats, None, 1, True, 0.0, [0]),
        fingerprint={"key": "synthetic"},
        runtime="synthetic",
        artifact_suffix=".bin",
    )


def synthetic_output(rng: random.Random) -> TrialOutput:
    """A plausible measured result with random figures, and placeholder bytes."""
    result = synthetic_result(
        rng.uniform(0.5, 1.0),
        rng.uniform(0.1, 1.0),
        rng.uniform(0.2, 1.0),
        rng.randint(10**4, 10**6),
    )
    return TrialOutput(result, b"x", b"y")


def synthetic_study(
    storage: object, trials: list[tuple[float, float, float, int | None]], floor: float
) -> object:
    """A finished autocompress study written by the driver's record writers, no training.

    ``trials``: (accuracy, latency ratio, size bytes, weight bits of ``fc`` or None for fp32);
    each completed, with the accuracy-floor constraint at ``floor``.
    """
    import optuna

    from autocompress.plan import CompressionPlan, LayerPlan
    from autocompress.record import attrs

    study = optuna.create_study(
        study_name="synthetic", storage=storage, directions=["maximize", "minimize", "minimize"]
    )
    stamp = attrs.StudyStamp(
        creator={},
        version="test",
        signature="s",
        objectives=("accuracy", "latency", "size"),
        latency_unit="ratio",
        reference={"latency_ms": 1.0, "size_bytes": 1e6},
        task={},
        space={},
        run_dir="/nowhere",
        experiment=None,
        accuracy_floor=floor,
    )
    attrs.stamp_study(study, stamp)
    for accuracy, ratio, size, bits in trials:
        trial = study.ask()
        trial.suggest_int("bits.fc", 0, 3)  # the sampler's ordinal index, as the space stores it
        plan = CompressionPlan({"fc": LayerPlan(weight_bits=bits, prune_ratio=0.25)})
        attrs.set_plan(trial, plan)
        result = synthetic_result(accuracy, ratio, ratio, size)
        attrs.set_completed(trial, result, "/nowhere")
        attrs.set_constraints(trial, {"accuracy_floor": floor - accuracy})
        study.tell(trial, [accuracy, ratio, size])
    return study
