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
