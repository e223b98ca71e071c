"""Picking from a front: budgets, preferences, numbers, the knee, and errors that help."""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from autocompress.front import Front, Member, PickError, pick
from autocompress.plan import CompressionPlan
from tests.synthetic import synthetic_result


def _member(n: int, acc: float, ms: float, size: float, baseline: str | None = None) -> Member:
    result = synthetic_result(acc, ms, ms / 1.0, size)
    return Member(
        n, {"accuracy": acc, "latency": ms, "size": size}, CompressionPlan(), result, baseline
    )


FRONT_MEMBERS = [
    _member(0, 0.92, 1.00, 1_200_000, "fp32"),
    _member(3, 0.915, 0.40, 300_000),
    _member(5, 0.90, 0.20, 60_000),
    _member(7, 0.86, 0.12, 40_000),
]
FRONT = Front(
    ["accuracy", "latency", "size"],
    FRONT_MEMBERS,
    [*FRONT_MEMBERS, _member(9, 0.5, 2.0, 2e6)],
    {"val_accuracy": 0.92, "size_bytes": 1_200_000},
)


def test_budget_and_preference() -> None:
    assert pick(FRONT, max_latency_ms=0.5).number == 3  # most accurate under 0.5 ms
    assert pick(FRONT, max_latency_ms=0.5, prefer="size").number == 7
    assert pick(FRONT, min_accuracy=0.89, prefer="latency").number == 5
    assert FRONT.pick(max_latency_ms=0.3, min_accuracy=0.89, prefer="size").number == 5
    assert pick(FRONT, max_size_bytes=100_000).number == 5


def test_by_number_and_knee() -> None:
    assert pick(FRONT, number=9).number == 9  # any completed trial, dominated or not
    knee = pick(FRONT, prefer="knee")
    assert knee.number == FRONT.knee.number and knee.number in (3, 5)


def test_nothing_fits_names_the_closest_points() -> None:
    with pytest.raises(PickError) as err:
        pick(FRONT, max_latency_ms=0.15, min_accuracy=0.9)
    message = str(err.value)
    assert "no front member meets latency <= 0.15 ms, accuracy >= 90.00%" in message
    # trial 7 misses by 4.4% (accuracy), trial 5 by 33% (latency): the closest comes first
    assert message.index("trial 7") < message.index("trial 5")
    assert "\n" not in message


def test_bad_requests() -> None:
    with pytest.raises(PickError, match="trial 42 is not a completed trial"):
        pick(FRONT, number=42)
    with pytest.raises(PickError, match="prefer='speed' is not a preference"):
        pick(FRONT, prefer="speed")
    empty = Front(["accuracy", "latency", "size"], [], FRONT.completed, FRONT.reference)
    with pytest.raises(PickError, match="the front is empty"):
        pick(empty)


def test_hypervolume_history_is_monotone(finished) -> None:
    result, _ = finished
    history = result.front.hypervolume_history()
    values = [hv for _, hv in history]
    assert len(history) == len(result.front.completed)
    assert all(b >= a - 1e-12 for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(result.front.hypervolume())


def test_latency_preference_follows_the_study_objective_not_drifting_ms() -> None:
    # a timed while the machine was slow (fp32 0.60 ms beside it), b while it was fast (0.42)
    a = Member(
        1,
        {"accuracy": 0.9, "latency": 0.50, "size": 9.0},
        CompressionPlan(),
        synthetic_result(0.9, 0.30, 0.50, 9.0),
    )
    b = Member(
        2,
        {"accuracy": 0.9, "latency": 0.60, "size": 8.0},
        CompressionPlan(),
        synthetic_result(0.9, 0.25, 0.60, 8.0),
    )
    front = Front(["accuracy", "latency", "size"], [a, b], [a, b], {"val_accuracy": 0.92})
    assert pick(front, prefer="latency").number == 1


def test_top_rung_front_keeps_final_members_a_short_budget_dominates() -> None:
    """A 60-step score can beat a 1000-step one: the fully trained member must stay pickable."""
    short = dataclasses.replace(_member(11, 0.93, 0.30, 100_000), rung=1, final=False)
    final = dataclasses.replace(_member(12, 0.925, 0.31, 110_000), rung=2, final=True)
    worse = dataclasses.replace(_member(13, 0.90, 0.35, 120_000), rung=2, final=True)
    fast = FRONT_MEMBERS[3]  # trial 7, post-training figures (final)
    completed = [fast, short, final, worse]
    front = Front(
        ["accuracy", "latency", "size"],
        [short, fast],  # the all-rung front: `final` is dominated by `short`
        completed,
        FRONT.reference,
        rungs=(0, 60, 1000),
    )
    top = front.at_top_rung()
    assert [m.number for m in top.members] == [12, 7]  # 13 stays dominated by 12
    assert front.pick().number == 12  # the most accurate fully trained member


def test_a_promoted_plans_lower_rung_is_pickable_by_number() -> None:
    entry = dataclasses.replace(_member(11, 0.88, 0.30, 100_000), rung=0, final=False)
    promoted = dataclasses.replace(_member(14, 0.92, 0.30, 100_000), rung=1, parent=11)
    front = Front(["accuracy", "latency", "size"], [promoted], [promoted], lower_rungs=[entry])
    assert front.pick(number=11) is entry
    with pytest.raises(PickError, match="trial 12 is not a completed trial"):
        front.pick(number=12)
