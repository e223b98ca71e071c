"""Promotion between rungs: non-dominated sorting, hypervolume tie-break, never-promote rule."""

from __future__ import annotations

import pytest
from scipy.stats import kendalltau

from autocompress.front import (
    Evaluation,
    contributions,
    kendall_tau,
    plan_key,
    rank_fidelity,
    rank_order,
    select_promotions,
)
from autocompress.plan import CompressionPlan

DIRECTIONS = ["maximize", "minimize", "minimize"]  # accuracy, latency ratio, size


def test_rank_order_sorts_fronts_then_breaks_ties_by_hypervolume_contribution():
    # accuracy, latency; scaled to [0, 1] (minimised): A (1, 0), B (0, 1), C (0.5, 0.2),
    # reference 1.1: exclusive volumes A 0.1 x 0.2, B 0.5 x 0.1, C 0.5 x 0.8
    points = [(0.80, 1.0), (0.90, 2.0), (0.85, 1.2), (0.79, 2.5)]  # the last is dominated
    gains = contributions(points[:3], ["maximize", "minimize"])
    assert gains == pytest.approx([0.02, 0.05, 0.40])
    assert rank_order(points, ["maximize", "minimize"]) == [2, 1, 0, 3]
    three = [(0.80, 0.50, 100.0), (0.85, 0.40, 90.0), (0.70, 0.90, 200.0), (0.9, 0.6, 120.0)]
    order = rank_order(three, DIRECTIONS)
    assert set(order[:2]) == {1, 3} and order[2:] == [0, 2]  # second front, then third


def test_exact_ties_keep_the_earlier_trial_first():
    assert rank_order([(0.9, 0.5, 10.0), (0.9, 0.5, 10.0)], DIRECTIONS) == [0, 1]
    assert rank_order([], DIRECTIONS) == []


def _rung(level, points, start=0, **kw):
    return [Evaluation(start + i, level, p, **kw) for i, p in enumerate(points)]


def test_the_top_floor_n_over_eta_of_a_rung_are_promoted_highest_rung_first():
    rung0 = _rung(0, [(0.5 + 0.01 * i, 1.0 - 0.05 * i, 100.0) for i in range(6)])  # 5 dominates
    rung1 = _rung(1, [(0.9, 0.2, 50.0), (0.8, 0.3, 60.0), (0.7, 0.4, 70.0)], start=10)
    chosen = select_promotions(rung0 + rung1, levels=3, eta=3, directions=DIRECTIONS)
    assert [(e.number, e.level) for e in chosen] == [(10, 1), (5, 0), (4, 0)]
    # nothing from the top rung; fewer than eta evaluations: nothing from that rung yet
    assert select_promotions(rung1, levels=2, eta=3, directions=DIRECTIONS) == []
    assert select_promotions(rung0[:2], levels=2, eta=3, directions=DIRECTIONS) == []


def test_promoted_and_post_training_plans_are_not_promoted_again_and_keep_their_place():
    points = [(0.9, 0.2, 50.0), (0.85, 0.3, 60.0), (0.8, 0.4, 70.0), (0.7, 0.5, 80.0)]
    points += [(0.6, 0.6, 90.0), (0.5, 0.7, 95.0)]  # a chain: each dominates the next
    evaluations = [
        Evaluation(0, 0, points[0], promoted=True),  # already went up: its place is taken
        Evaluation(1, 0, points[1], promotable=False),  # post-training: nothing to lengthen
        *[Evaluation(i, 0, points[i]) for i in range(2, 6)],
    ]
    assert select_promotions(evaluations, levels=2, eta=3, directions=DIRECTIONS) == []
    chosen = select_promotions(evaluations, levels=2, eta=2, directions=DIRECTIONS)
    assert [e.number for e in chosen] == [2]  # top 3 of 6: 0 (done), 1 (post-training), 2


def test_a_plan_that_could_not_extend_the_front_even_at_fp32_accuracy_is_never_promoted():
    rung0 = _rung(0, [(0.5, 0.8, 300.0), (0.4, 0.3, 90.0), (0.3, 0.9, 400.0)])
    final = [(0.91, 0.5, 200.0)]  # e.g. a top-rung member, or int8 PTQ
    fp32 = (0, 0.92)
    chosen = select_promotions(
        rung0, levels=2, eta=1, directions=DIRECTIONS, final=final, best_case=fp32
    )
    # plan 0 at 92% would still be slower and bigger than 0.91/0.5/200 but more accurate:
    # not dominated; plan 2 at 92% is dominated? no: 0.92 > 0.91, so it stays too
    assert [e.number for e in chosen] == [1, 0, 2]
    worse = [(0.93, 0.5, 200.0)]  # more accurate than fp32 could make them
    chosen = select_promotions(
        rung0, levels=2, eta=1, directions=DIRECTIONS, final=worse, best_case=fp32
    )
    assert [e.number for e in chosen] == [1]  # faster and smaller: it could extend the front
    # no best case known (no fp32 accuracy stored): nothing is ruled out
    assert len(select_promotions(rung0, levels=2, eta=1, directions=DIRECTIONS, final=worse)) == 3


def test_plan_key_ignores_the_budget_only():
    plan = CompressionPlan.from_dict(
        {"layers": {"fc": {"weight_bits": 4}}, "distill": {"temperature": 2.0, "alpha": 0.5}}
    )
    assert plan_key(plan) == plan_key(plan.with_budget(0)) == plan_key(plan.with_budget(250, 0.1))
    assert plan_key(plan) != plan_key(plan.without_finetuning())
    other = CompressionPlan.from_dict({"layers": {"fc": {"weight_bits": 8}}, "distill": None})
    assert plan_key(other) != plan_key(plan)


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ([0.86, 0.88, 0.9, 0.87], [0.90, 0.91, 0.905, 0.92]),
        ([1, 1, 2, 3], [1, 2, 2, 4]),  # ties in both
    ],
)
def test_kendall_tau_matches_scipy_tau_b(x, y):
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)


def test_rank_fidelity_pairs_each_plan_across_consecutive_rungs():
    points = [
        ("a", 0, 0, 0.50), ("b", 0, 0, 0.60), ("c", 0, 0, 0.70), ("d", 0, 0, 0.10),
        ("a", 1, 60, 0.85), ("b", 1, 60, 0.80), ("c", 1, 60, 0.90),
        ("c", 2, 250, 0.91),
    ]  # fmt: skip
    first, second = rank_fidelity(points)
    assert first.steps == (0, 60) and first.plans == 3
    assert first.tau == pytest.approx(kendalltau([0.5, 0.6, 0.7], [0.85, 0.8, 0.9]).statistic)
    assert second.steps == (60, 250) and second.plans == 1 and second.tau is None
    assert first.describe() == "0->60 steps: tau +0.33 over 3 plans"
    assert rank_fidelity(points[:4]) == []
