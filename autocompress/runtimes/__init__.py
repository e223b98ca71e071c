"""Runtimes that realize compressed models for a target, behind one small registry.

``available_runtimes()`` lists the keys without importing any runtime library;
``get_runtime(name)`` imports the one asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from autocompress.runtimes._base import Deployable, Runtime

# key -> (module, class); modules are imported only when the runtime is used. Keyed by
# autocompress._names.RUNTIME_NAMES, in its order (config checks read that; a test compares them)
_REGISTRY = {
    "onnxruntime": ("autocompress.runtimes._onnxrt", "OnnxRuntime"),
    "eager": ("autocompress.runtimes._eager", "EagerRuntime"),
    "inductor": ("autocompress.runtimes._inductor", "InductorRuntime"),
    "cuda": ("autocompress.runtimes._cuda", "CudaRuntime"),
}


def available_runtimes() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def compute_precision(target: Any) -> str | None:
    """The arithmetic a CUDA target runs in (``auto`` = fp16); None for the CPU runtimes,
    whose precision the plan's bits decide."""
    if target.runtime != "cuda":
        return None
    return "fp16" if target.precision == "auto" else str(target.precision)


def int8_saturates() -> bool:
    """Whether ONNX Runtime's int8 kernels on this CPU can saturate: x86 without VNNI.

    There MLAS multiplies u8 activations by s8 weights with VPMADDUBSW, which adds each pair of
    products in 16 bits: full-range 8-bit weights beside large activations overflow and clamp
    (ORT's quantization docs say so). Measured on an AVX2-only AMD EPYC: the converged refnet
    at uniform int8 PTQ scored 92.30% against 93.80% fp32 (93.72% at 7 bits; 93.78% at 8 bits
    on a VNNI EPYC); a 4-block ViT at 8 bits agreed with its k-bit model on 81% of inputs, 98%
    at 7. VNNI (VPDPBUSD) accumulates in 32 bits, and 7-bit weights cannot overflow
    (2 x 255 x 63 < 2^15). ORT's remedies: uint8 weights (U8U8 kernels) or 7-bit weights.
    """
    import platform

    from autocompress.measure import cpu_flags

    flags = cpu_flags()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return x86 and bool(flags) and not any("vnni" in flag for flag in flags)


def saturating_int8(target: Any) -> bool:
    """ONNX Runtime realized and timed on this machine's CPU, and that CPU's int8 saturates."""
    local_cpu = not target.node_resources and str(target.device) == "cpu"
    return target.runtime == "onnxruntime" and local_cpu and int8_saturates()


def widest_exact_bits(target: Any) -> int:
    """The widest int8-kernel weights (static and dynamic int8) the target computes exactly.

    ``target.max_weight_bits`` if set, else 7 where the int8 kernels saturate (see
    ``int8_saturates``), else 8. The driver caps every trial's plan at it (``_plan_of``:
    ``CompressionPlan.capped``), so "8 bits" there trains and ships 7-bit weights: what the
    deployable computes is what was trained, at the fast kernel's speed. The exact
    alternative, uint8 weights (U8U8 kernels), measured on an AVX2-only AMD EPYC: refnet
    int8 93.78% val (fp32 93.80%, s8 weights 92.30%) but 1.40x the s8 latency, slower than
    fp32 (1.06 vs 1.01 ms at batch 1); 7-bit s8 weights (nearest rounding): 93.82%, 0.71 ms.
    MatMulNBits (``nbits``) layers are not capped: that kernel takes 2, 4 or 8 bits.
    """
    if target.max_weight_bits is not None:
        return int(target.max_weight_bits)
    return 7 if saturating_int8(target) else 8


def check_target_device(target: Any) -> None:
    """Before anything is trained or written: a CUDA target needs that GPU on this machine.

    A target timed on a Ray node (``target.node_resources``) is checked against the cluster
    instead (``worker.check_target_node``). Raises ``ConfigError`` (exit 2) naming the fix.
    """
    from autocompress.errors import ConfigError

    device = str(target.device)
    if target.node_resources or (target.runtime != "cuda" and not device.startswith("cuda")):
        return
    import torch

    index = int(device.partition(":")[2] or 0) if device.startswith("cuda") else 0
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if index >= count:
        raise ConfigError(
            f"target.runtime={target.runtime} target.device={device} needs a CUDA GPU, and this "
            f"machine has {count}; run where one is, time on a Ray node that has one "
            "(target.node_resources), or use target.runtime=onnxruntime target.device=cpu"
        )


def get_runtime(name: str) -> Runtime:
    from autocompress.errors import ConfigError

    if name not in _REGISTRY:
        raise ConfigError(f"runtime {name!r} is unknown; use one of {sorted(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)()


def onnx_graph_input(artifact: bytes) -> tuple[str, list[int | str]]:
    """Name and shape of an ONNX deployable's first input (for export manifests)."""
    from autocompress.runtimes._onnxrt import graph_input

    return graph_input(artifact)


def onnx_skeleton(artifact: bytes, codes: Mapping[str, Any]) -> Any:
    """An ONNX QDQ deployable with the int8 weights that ``codes`` (packed tensor name -> k-bit
    integer codes) rebuild exactly taken out: ``.artifact`` (bytes), ``.packed_to_onnx``
    (packed name -> initializer name), ``.kept`` (initializer left in -> why)."""
    from autocompress.runtimes._onnxrt_weights import make_skeleton

    return make_skeleton(artifact, codes)


__all__ = [
    "Deployable",
    "Runtime",
    "available_runtimes",
    "check_target_device",
    "compute_precision",
    "get_runtime",
    "int8_saturates",
    "onnx_graph_input",
    "onnx_skeleton",
    "saturating_int8",
    "widest_exact_bits",
]
