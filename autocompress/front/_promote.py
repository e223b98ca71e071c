"""Which plans a multi-fidelity search promotes to the next rung: pure selection, no Optuna.

Asynchronous successive halving (ASHA, Li et al. 2020) with a multi-objective rank, the rule of
Syne Tune's MOASHA and SMAC3's multi-objective intensifier: the evaluations completed at a rung
are sorted into non-dominated fronts (NSGA-II's sort) on (rung accuracy, latency, size); within
one front, a larger hypervolume contribution ranks first. A plan in the top floor(n / eta) of
its rung's n evaluations, and not promoted from it yet, goes to the next rung, highest rung
first, each time a worker is free: no rung waits for the others to fill.

Never promoted: a plan whose best case, the fp32 reference's accuracy at the plan's own latency
and size (both exact at rung 0: they depend on the plan alone), is dominated by the final front
(top-rung trials and post-training plans, whose figures no budget changes). No fine-tuning could
make it extend the front.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autocompress.front._pareto import dominates, hypervolume, non_dominated, to_minimization
from autocompress.plan import CompressionPlan


@dataclass(frozen=True)
class Evaluation:
    """One plan's completed trial at one rung, as promotion sees it."""

    number: int  # the trial (a promotion's parent)
    level: int  # its rung
    values: tuple[float, ...]  # the objectives, in the study's order and units
    promotable: bool = True  # False: a post-training plan, nothing to fine-tune longer
    promoted: bool = False  # already promoted from this rung (decided, maybe not run yet)


def plan_key(plan: CompressionPlan) -> str:
    """The plan without its budget (``distill.steps``, ``distill.lr``): one key per plan
    across its rungs, so its trials at each budget are recognised as the same plan."""
    data = plan.to_dict()
    if data.get("distill"):
        data["distill"] = {k: v for k, v in data["distill"].items() if k not in ("steps", "lr")}
    return json.dumps(data, sort_keys=True)


def rank_order(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices, best first: non-dominated fronts in turn, larger hypervolume contribution
    first within a front (then the lower index: earlier trials win exact ties)."""
    left = list(range(len(values)))
    order: list[int] = []
    while left:
        front = [left[i] for i in non_dominated([values[j] for j in left], directions)]
        gains = contributions([values[j] for j in front], directions)
        order += [front[i] for i in sorted(range(len(front)), key=lambda i: (-gains[i], i))]
        left = [j for j in left if j not in set(front)]
    return order


def contributions(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[float]:
    """Each point's exclusive hypervolume: what the set loses without it.

    Computed with each objective scaled to [0, 1] over the points (so latency in ms and size in
    bytes weigh alike) and the reference point at 1.1 in each.
    """
    rows = to_minimization(values, directions)
    if len(rows) <= 1:
        return [1.0] * len(rows)
    low, high = rows.min(axis=0), rows.max(axis=0)
    scaled = (rows - low) / np.where(high > low, high - low, 1.0)
    reference = [1.1] * scaled.shape[1]
    total = hypervolume(scaled, reference)
    return [total - hypervolume(np.delete(scaled, i, axis=0), reference) for i in range(len(rows))]


def select_promotions(
    evaluations: Sequence[Evaluation],
    *,
    levels: int,
    eta: int,
    directions: Sequence[str],
    final: Sequence[Sequence[float]] = (),
    best_case: tuple[int, float] | None = None,
) -> list[Evaluation]:
    """The evaluations to promote now, highest rung first (see the module docstring).

    Args:
        evaluations: one per plan and rung, completed.
        levels: rungs in the ladder; nothing is promoted from the top one.
        eta: the top ``floor(n / eta)`` of a rung's ``n`` evaluations are promotable.
        directions: "maximize" / "minimize" per objective.
        final: the objectives of the final front's trials (top rung or post-training).
        best_case: (objective index, value): the accuracy a plan could at best reach (fp32's);
            None: no plan is ruled out.
    """
    final_min = to_minimization(final, directions) if len(final) else None
    chosen: list[Evaluation] = []
    for level in range(levels - 2, -1, -1):
        rung = [e for e in evaluations if e.level == level]
        top = rank_order([e.values for e in rung], directions)[: len(rung) // eta]
        for i in top:
            e = rung[i]
            if (
                e.promotable
                and not e.promoted
                and not _hopeless(e, final_min, best_case, directions)
            ):
                chosen.append(e)
    return chosen


def _hopeless(
    e: Evaluation,
    final_min: np.ndarray | None,
    best_case: tuple[int, float] | None,
    directions: Sequence[str],
) -> bool:
    """Its best case is dominated by the final front: no budget makes it extend the front."""
    if final_min is None or best_case is None:
        return False
    values = list(e.values)
    values[best_case[0]] = best_case[1]
    point = to_minimization([values], directions)[0]
    return any(dominates(f, point) for f in final_min)


@dataclass(frozen=True)
class RankFidelity:
    """How well one rung's accuracy ranks plans as the next rung does."""

    steps: tuple[int, int]  # (lower rung's budget, upper rung's)
    plans: int  # plans measured at both (the promoted ones)
    tau: float | None  # Kendall's tau-b of their accuracies; None under 2 plans or no spread

    def to_dict(self) -> dict[str, object]:
        return {"steps": list(self.steps), "plans": self.plans, "tau": self.tau}

    def describe(self) -> str:
        tau = "n/a" if self.tau is None else f"{self.tau:+.2f}"
        return f"{self.steps[0]}->{self.steps[1]} steps: tau {tau} over {self.plans} plans"


def rank_fidelity(points: Sequence[tuple[str, int, int, float]]) -> list[RankFidelity]:
    """Kendall's tau of accuracy between consecutive rungs, over the plans at both.

    ``points``: (plan key, rung, budget in steps, accuracy), one per plan and rung (the first
    trial kept when a plan has several). A tau near 1 says the cheap rung already ranks plans
    as the longer budget does; near 0, the ladder's lower rung is a poor filter.
    """
    by_rung: dict[int, dict[str, tuple[int, float]]] = {}
    for key, level, steps, accuracy in points:
        by_rung.setdefault(level, {}).setdefault(key, (steps, accuracy))
    out = []
    for level in sorted(by_rung):
        upper = by_rung.get(level + 1)
        if not upper:
            continue
        both = [k for k in upper if k in by_rung[level]]
        low = [by_rung[level][k][1] for k in both]
        high = [upper[k][1] for k in both]
        budgets = (
            next(iter(by_rung[level].values()))[0],
            next(iter(upper.values()))[0],
        )
        out.append(RankFidelity(budgets, len(both), kendall_tau(low, high)))
    return out


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b (ties in either list counted as scipy.stats.kendalltau counts them)."""
    n = len(x)
    concordant = discordant = ties_x = ties_y = 0
    for i in range(n):
        for j in range(i + 1, n):
            dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif dx == dy:
                concordant += 1
            else:
                discordant += 1
    denominator = np.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return None if n < 2 or denominator == 0 else float((concordant - discordant) / denominator)
