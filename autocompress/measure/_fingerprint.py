"""Device fingerprints: which machine, runtime and settings a latency figure belongs to.

Latency is only comparable on the same hardware, runtime version, thread count, batch and input
shape. Every trial records its fingerprint, and ``key`` hashes the fields that make figures
comparable, so fronts from different machines are never merged silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from autocompress.config import TargetConfig

COMPARABLE = (
    "cpu",
    "gpu",
    "host",
    "device",
    "runtime",
    "versions",
    "threads",
    "batch_size",
    "input_shape",
    "cores",
)


@lru_cache(maxsize=1)
def cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``avx512_vnni``, ...); empty where ``/proc/cpuinfo`` is not."""
    return frozenset(_cpuinfo("flags").split())


# the extensions int8 and bf16 kernels dispatch on: what sets int8's gain over fp32 on a CPU
# (AVX2 alone saturates int8 products, VNNI accumulates in 32 bits, AMX multiplies tiles), so
# two machines that /proc/cpuinfo names alike ("AMD EPYC") can gain differently from int8
ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8")


def cpu_isa() -> list[str]:
    """Which of ``ISA`` this CPU has, in that order (empty where ``/proc/cpuinfo`` is not)."""
    flags = cpu_flags()
    return [name for name in ISA if name in flags]


def cpu_line(info: Mapping[str, Any]) -> str:
    """A fingerprint's CPU in words: its model and, where recorded, its int8/bf16 extensions
    (fingerprints stored before ``isa`` existed give the model alone)."""
    isa = info.get("isa")
    return str(info.get("cpu", "?")) + (f" [{' '.join(isa)}]" if isa else "")


def this_cpu() -> str:
    """This machine's CPU in words, as a fingerprint taken here would give it (``cpu_line``)."""
    return cpu_line({"cpu": cpu_model(), "isa": cpu_isa()})


def _cpuinfo(field: str) -> str:
    """The first ``field`` line of ``/proc/cpuinfo``, or ``""``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    index = int(device.split(":")[1]) if ":" in device else 0
    return torch.cuda.get_device_name(index)


def fingerprint(
    target: TargetConfig,
    *,
    versions: Mapping[str, str],
    cores: Sequence[int],
    input_shape: Sequence[int],
    node: str | None = None,
    precision: str | None = None,
) -> dict[str, Any]:
    """The fingerprint of a measurement taken here, now, on ``target`` (its device, runtime,
    threads and batch) with these runtime versions, cores and input shape."""
    import torch

    device, runtime = target.device, target.runtime
    threads, batch_size = target.threads, target.batch_size

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "isa": cpu_isa(),  # not in the key: the host is, and a host keeps its CPU
        "gpu": gpu_name(device),
        "host": socket.gethostname(),
        "node": node or os.environ.get("AUTOCOMPRESS_NODE_NAME") or socket.gethostname(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "device": device,
        "runtime": runtime,
        "precision": precision,
        "versions": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            **dict(versions),
        },
        "threads": threads,
        "cores": list(cores),
        "batch_size": batch_size,
        "input_shape": list(input_shape),
    }
    info["key"] = fingerprint_key(info)
    return info


def fingerprint_key(info: Mapping[str, Any]) -> str:
    """A short hash of the fields that make two latency figures comparable."""
    data = {k: info.get(k) for k in COMPARABLE}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]
