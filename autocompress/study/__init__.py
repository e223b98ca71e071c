"""The search: driver (owns Optuna), executors (run trials), storage, samplers, setup."""

from autocompress.study._driver import (
    add_budget_slots,
    objective_values,
    open_study,
    optimize,
    recover_stale_trials,
)
from autocompress.study._executors import Executor, LocalExecutor, Outcome, execute
from autocompress.study._setup import SearchSetup, setup_from_experiment, setup_from_objects
from autocompress.study._storage import open_storage, redact

__all__ = [
    "Executor",
    "LocalExecutor",
    "Outcome",
    "SearchSetup",
    "add_budget_slots",
    "execute",
    "objective_values",
    "open_storage",
    "open_study",
    "optimize",
    "recover_stale_trials",
    "redact",
    "setup_from_experiment",
    "setup_from_objects",
]
