"""Before the first trial: realize the space's most compressed plan once, so a failure that would
recur on every plan is reported once, with its layer and a fix, and nothing is stored."""

from __future__ import annotations

from autocompress.errors import UnsupportedPlanError
from autocompress.study._setup import SearchSetup


def check_space(setup: SearchSetup) -> None:
    """Raise :class:`UnsupportedPlanError` if the space's most compressed plan cannot be made
    into a working deployable (``worker.dry_run``: seconds, no fine-tuning, no timing)."""
    from autocompress.worker import dry_run

    plan = setup.space.extreme_plan()
    if not plan.quantized_layers and not plan.pruned_layers:
        return  # an fp32-only space: the reference itself is the only plan
    try:
        dry_run(plan.to_dict(), setup.task.to_dict(), objects=setup.objects)
    except UnsupportedPlanError as exc:
        raise UnsupportedPlanError(
            f"the space's most compressed plan cannot be realized on this model: {exc}; "
            "leave that layer out in the space (bits: [none] and/or prune: [0.0]) or change the "
            "model, then run again (no study was written)"
        ) from None
