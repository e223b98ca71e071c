"""Timing a candidate beside the fp32 reference, with the fingerprint of where it was timed.

The one sequence every latency figure of a trial goes through, here or on a remote node: the
protocol of ``_latency`` (same sitting, interleaved, pinned, exclusive lock), then the device
fingerprint that makes the figure comparable. Plain arguments: two runners and the target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autocompress.config import TargetConfig
from autocompress.measure._fingerprint import fingerprint
from autocompress.measure._latency import Measurement, Runner, default_cores, measure


def time_beside_reference(
    candidate: Runner,
    reference: Runner,
    target: TargetConfig,
    *,
    versions: Mapping[str, str],
    input_shape: Sequence[int],
    precision: str | None,
    node: str | None = None,
    expected_reference_ms: float | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """(the accepted sitting, the fingerprint of this machine, runtime and settings);
    ``expected_reference_ms``: the reference's usual median (see ``measure``)."""
    sitting = measure(candidate, reference, target.measure, target.cores, expected_reference_ms)
    where = fingerprint(
        target,
        versions=versions,
        cores=target.cores or default_cores(),
        input_shape=list(input_shape),
        node=node,
        precision=precision,
    )
    return sitting, where
