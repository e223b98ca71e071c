"""autocompress: the measured, resumable Pareto front of compressed versions of a PyTorch model.

An Optuna multi-objective study samples per-layer bit widths, pruning ratios and distillation
temperatures; a torch backend applies each plan (channels really removed, QAT with distillation,
real int8 kernels); each candidate is scored on accuracy, latency measured on the target and size.

Example:
    >>> import autocompress
    >>> result = autocompress.search("experiments/fashion_mnist.yaml")  # doctest: +SKIP
    >>> print(result.front.knee.plan.summary())                          # doctest: +SKIP

``import autocompress`` stays light: torch, optuna, ray and plotly load only when used.
"""

from __future__ import annotations

from typing import Any

from autocompress.errors import AutocompressError, ConfigError
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan

__version__ = "0.1.0"

_LAZY = {
    "search": "autocompress._api",
    "load": "autocompress._api",
    "refine": "autocompress._api",
    "SearchResult": "autocompress._api",
    "StudyOptions": "autocompress._api",
    "run_trial": "autocompress.worker",
    "load_experiment": "autocompress.config",
    "SearchSpace": "autocompress.config",
    "SearchSections": "autocompress.config",
    "ExperimentConfig": "autocompress.config",
    "Front": "autocompress.front",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autocompress' has no attribute {name!r}")


__all__ = [
    "AutocompressError",
    "CompressionPlan",
    "ConfigError",
    "DistillPlan",
    "ExperimentConfig",
    "Front",
    "LayerPlan",
    "SearchResult",
    "SearchSections",
    "SearchSpace",
    "StudyOptions",
    "__version__",
    "load",
    "load_experiment",
    "refine",
    "run_trial",
    "search",
]
