"""The worker wing: what runs one trial, a pure function of plain data.

``Task`` (what every trial receives) and ``TrialResult`` (what it returns) are light and loaded
eagerly, as is the registry of running trials' fine-tuning steps (``_steps``); ``run_trial`` and
the per-process context load torch, so they are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from autocompress.worker._steps import CURRENT_TRIAL, running_steps
from autocompress.worker._steps import clear as clear_steps
from autocompress.worker._task import Task

_LAZY = {
    "run_trial": "autocompress.worker._trial",
    "time_deployable": "autocompress.worker._trial",
    "retime_artifact": "autocompress.worker._retime",
    "usual_reference": "autocompress.worker._context",
    "trial_context": "autocompress.worker._context",
    "TrialContext": "autocompress.worker._context",
    "TrialData": "autocompress.worker._context",
    "UserObjects": "autocompress.worker._context",
    "loader_data": "autocompress.worker._context",
    "splits_data": "autocompress.worker._context",
    "check_target_node": "autocompress.worker._remote",
    "dry_run": "autocompress.worker._preflight",
    "check_feature_term": "autocompress.worker._preflight",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'autocompress.worker' has no attribute {name!r}")


__all__ = [
    "CURRENT_TRIAL",
    "Task",
    "TrialContext",
    "TrialData",
    "UserObjects",
    "check_feature_term",
    "check_target_node",
    "clear_steps",
    "dry_run",
    "loader_data",
    "retime_artifact",
    "run_trial",
    "running_steps",
    "splits_data",
    "time_deployable",
    "trial_context",
    "usual_reference",
]
