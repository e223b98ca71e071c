"""The search: driver (owns Optuna), executors (run trials), storage, samplers, setup."""

from autocompress.record import objective_values
from autocompress.study._budget import finetune_steps, trial_minutes, waiting
from autocompress.study._clocks import BudgetClocks, budget_clocks
from autocompress.study._driver import optimize, record, write_artifacts
from autocompress.study._executors import Executor, LocalExecutor, Outcome, execute
from autocompress.study._lifecycle import add_budget_slots, open_study, resolve_run_dir
from autocompress.study._progress import Progress
from autocompress.study._ray_executor import RayExecutor
from autocompress.study._recovery import recover_stale_trials
from autocompress.study._refine import enqueue_promotions, promote_chosen
from autocompress.study._retime import TimingSummary, retime_unsettled, timing_summary
from autocompress.study._rungs import ladder, promote
from autocompress.study._setup import (
    SearchSetup,
    experiment_task,
    setup_from_experiment,
    setup_from_objects,
)
from autocompress.study._space import BoundSpace, LayerSlot, bind_space
from autocompress.study._storage import load_stored_study, open_storage, redact

__all__ = [
    "BoundSpace",
    "BudgetClocks",
    "Executor",
    "LayerSlot",
    "LocalExecutor",
    "Outcome",
    "Progress",
    "RayExecutor",
    "SearchSetup",
    "TimingSummary",
    "add_budget_slots",
    "bind_space",
    "budget_clocks",
    "enqueue_promotions",
    "execute",
    "experiment_task",
    "finetune_steps",
    "ladder",
    "load_stored_study",
    "objective_values",
    "open_storage",
    "open_study",
    "optimize",
    "promote",
    "promote_chosen",
    "record",
    "recover_stale_trials",
    "redact",
    "resolve_run_dir",
    "retime_unsettled",
    "setup_from_experiment",
    "setup_from_objects",
    "timing_summary",
    "trial_minutes",
    "waiting",
    "write_artifacts",
]
