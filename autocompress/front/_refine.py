"""Which front members deserve a longer fine-tuning: pure selection on a front, no Optuna.

Searches rank plans with a short proxy budget that underestimates most the plans a longer one
recovers most (measured on the reference model: uniform 50% pruning 86.2% after 60 steps,
91.0% after 1000; fp32 91.1%). A member is worth refining by what it would add to the front if
the long budget brought its accuracy up to the best of the pool: its *optimistic hypervolume
gain*. That gain is zero for members already as accurate as the best (refining them changes
little) and largest for the most compressed members in reach, along the whole latency-size
trade-off, which is where a user's pick lies when the budget is tight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autocompress.front._front import DIRECTIONS
from autocompress.front._pareto import hypervolume, non_dominated, to_minimization


def refine_candidates(
    front: Any, k: int, floor: float | None = None, slack: float = 0.0
) -> list[int]:
    """Trial numbers of the ``k`` members with the largest optimistic hypervolume gain.

    The pool is the non-dominated set of the fine-tuned search trials not refined yet (one per
    plan, the front's device only) whose short-budget accuracy is at most ``slack`` points under
    the accuracy ``floor``: a floor applied to the short budget alone would never let a fast
    plan be refined. Each pool member's gain is computed alone against the pool as it is, so
    the ``k`` chosen spread over the members that could each change the front the most.
    """
    pool = refine_pool(front, floor, slack)
    if len(pool) <= k:
        return [m.number for m in pool]
    gains = optimistic_gains(pool, [o for o in front.objectives if o in DIRECTIONS])
    order = sorted(range(len(pool)), key=lambda i: (-gains[i], i))
    return [pool[i].number for i in order[:k]]


def refine_pool(front: Any, floor: float | None, slack: float) -> list[Any]:
    """Refinable members of ``front`` (same fingerprint), non-dominated, sorted by latency."""
    refined = {m.refines for m in front.completed if m.refines is not None}
    lowest = -float("inf") if floor is None else floor - slack / 100.0
    key = front.fingerprint_key
    plans: dict[str, Any] = {}  # one member per plan: duplicates share one measurement
    for m in front.completed:
        if (
            (key is None or m.fingerprint_key == key)
            and m.plan.distill is not None
            and m.plan.distill.steps is None
            and m.number not in refined
            and m.objectives.get("accuracy", 1.0) >= lowest
        ):
            plans.setdefault(m.plan.to_json(), m)
    eligible = list(plans.values())
    if not eligible:
        return []
    objectives = [o for o in front.objectives if o in DIRECTIONS]
    idx = non_dominated(
        [[m.objectives[o] for o in objectives] for m in eligible],
        [DIRECTIONS[o] for o in objectives],
    )
    return sorted((eligible[i] for i in idx), key=lambda m: m.objectives.get("latency", 0.0))


def optimistic_gains(pool: Sequence[Any], objectives: Sequence[str]) -> list[float]:
    """Per member: hypervolume gained if its accuracy became the pool's best, the rest as is.

    Computed in the study's objective space (minimised), with the reference point 10% of the
    range beyond the pool's worst value of each objective. Without an accuracy objective there
    is nothing to recover: each member's own hypervolume contribution is its gain.
    """
    directions = [DIRECTIONS[o] for o in objectives]
    rows = to_minimization([[m.objectives[o] for o in objectives] for m in pool], directions)
    worst, best = rows.max(axis=0), rows.min(axis=0)
    reference = worst + 0.1 * np.where(worst > best, worst - best, 1.0)
    base = hypervolume(rows, reference)
    acc = objectives.index("accuracy") if "accuracy" in objectives else None
    gains = []
    for i in range(len(rows)):
        changed = rows.copy()
        if acc is None:
            changed = np.delete(changed, i, axis=0)
            gains.append(base - hypervolume(changed, reference))
            continue
        changed[i, acc] = best[acc]
        gains.append(hypervolume(changed, reference) - base)
    return gains
