"""Latency you can trust: the protocol (``_latency``), isolation (``_lock``), fingerprints."""

from autocompress.measure._fingerprint import cpu_model, fingerprint, fingerprint_key
from autocompress.measure._latency import (
    LatencyStats,
    Measurement,
    default_cores,
    measure,
    pinned,
)
from autocompress.measure._lock import busy, exclusive, lock_dir

__all__ = [
    "LatencyStats",
    "Measurement",
    "busy",
    "cpu_model",
    "default_cores",
    "exclusive",
    "fingerprint",
    "fingerprint_key",
    "lock_dir",
    "measure",
    "pinned",
]
