"""Runtimes that realize compressed models for a target, behind one small registry.

``available_runtimes()`` lists the keys without importing any runtime library;
``get_runtime(name)`` imports the one asked for.
"""

from __future__ import annotations

import importlib
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


__all__ = [
    "Deployable",
    "Runtime",
    "available_runtimes",
    "compute_precision",
    "get_runtime",
    "onnx_graph_input",
]
