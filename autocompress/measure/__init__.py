"""Latency you can trust: the protocol (``_latency``), isolation (``_lock``), fingerprints."""

from autocompress.measure._accuracy import top1_accuracy
from autocompress.measure._fingerprint import (
    cpu_flags,
    cpu_isa,
    cpu_line,
    cpu_model,
    fingerprint,
    fingerprint_key,
    this_cpu,
)
from autocompress.measure._latency import (
    Elapsed,
    LatencyStats,
    Measurement,
    default_cores,
    measure,
    pinned,
    sitting_badness,
)
from autocompress.measure._lock import busy, busy_waited, checkpoint, exclusive, lock_dir
from autocompress.measure._timing import time_beside_reference

__all__ = [
    "Elapsed",
    "LatencyStats",
    "Measurement",
    "busy",
    "busy_waited",
    "checkpoint",
    "cpu_flags",
    "cpu_isa",
    "cpu_line",
    "cpu_model",
    "default_cores",
    "exclusive",
    "fingerprint",
    "fingerprint_key",
    "lock_dir",
    "measure",
    "pinned",
    "sitting_badness",
    "this_cpu",
    "time_beside_reference",
    "top1_accuracy",
]
