"""benchmarks/vit.py: which plans it fine-tunes longer, and which members the plain pipeline
dominates, checked on made-up fronts (the benchmark itself runs for half an hour)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan

import vit as bench  # benchmarks/vit.py (tests/benchmarks/conftest.py)


def _plan(bits: int, ratio: float, steps: int) -> CompressionPlan:
    layer = LayerPlan(weight_bits=bits, prune_ratio=ratio)
    return CompressionPlan({"fc": layer}, DistillPlan(1.0, 0.5, steps=steps))


def _member(number, bits, ratio, steps, baseline=None):
    return SimpleNamespace(
        number=number, plan=_plan(bits, ratio, steps), steps=steps, baseline=baseline
    )


def _result(completed, lower=()):
    front = SimpleNamespace(completed=list(completed), lower_rungs=list(lower), rungs=(0, 60, 250))
    return SimpleNamespace(front=front)


class Calls(list):
    """autocompress.refine's calls, answering with ``after`` (the study the test prepared)."""

    after = None


@pytest.fixture
def refined(monkeypatch):
    calls = Calls()

    def refine(config, trials, *, steps=None, progress=True):
        calls.append((list(trials), steps))
        return calls.after

    monkeypatch.setattr(bench.autocompress, "refine", refine)
    return calls


def test_plain_baselines_below_the_top_rung_are_promoted_once(refined) -> None:
    config = SimpleNamespace(finetune=SimpleNamespace(steps=60))
    low = _result(
        [
            _member(3, 8, 0.25, 60, "plain-prune25"),
            _member(4, 8, 0.5, 250, "plain-prune50"),
            _member(5, 4, 0.5, 250),
        ]
    )
    refined.after = _result([_member(9, 8, 0.25, 250, "plain-prune25")], [low.front.completed[0]])
    assert bench._plain_at_top_rung(config, low) is refined.after
    assert refined == [([3], 250)]
    refined.clear()
    assert bench._plain_at_top_rung(config, refined.after) is refined.after  # nothing left to do
    assert refined == []


def test_longer_budgets_run_once_and_return_the_longer_trials(refined) -> None:
    ours, plain = _member(41, 4, 0.5, 250), _member(54, 8, 0.5, 250, "plain-prune50")
    start = _result([ours, plain])
    after = _result(
        [_member(55, 4, 0.5, 1000), _member(56, 8, 0.5, 1000, "plain-prune50")], [ours, plain]
    )
    refined.after = after
    result, numbers = bench._longer(None, start, [41, 54], 1000)
    assert (result, numbers, refined) == (after, [55, 56], [([41, 54], 1000)])
    refined.clear()
    assert bench._longer(None, after, [41, 54], 1000) == (after, [55, 56])  # a re-run finds them
    assert refined == []
    with pytest.raises(SystemExit, match=r"no completed trial \[99\]"):
        bench._longer(None, after, [41, 99], 1000)


def test_a_member_is_dominated_only_by_a_plain_baseline_no_worse_everywhere() -> None:
    def row(trial, acc, ms, baseline=None, ratio=math.nan):
        return SimpleNamespace(
            trial=trial,
            baseline=baseline,
            test_accuracy=acc,
            verified_latency_ms=ms,
            verified_ratio=ratio,
        )

    rows = [
        row(1, 0.9123, 0.3435, "plain-prune50"),
        row(2, 0.9100, 0.3461),  # less accurate and slower, but smaller: not dominated
        row(3, 0.9000, 0.3500),  # worse on all three
        row(4, 0.9300, 0.3000, "int8"),  # not the plain pipeline: no verdict from it
    ]
    sizes = {1: 976_592, 2: 534_224, 3: 976_592, 4: 100}
    assert bench._dominated_by_plain(rows, sizes) == {3: 1}
    # timed beside fp32, the ratios decide: the member's milliseconds came from a slower turn
    timed = [row(1, 0.9123, 0.3435, "plain-prune50", 0.52), row(3, 0.9000, 0.3500, None, 0.50)]
    assert bench._dominated_by_plain(timed, sizes) == {}


def test_each_row_says_what_put_its_plan_in_the_study() -> None:
    def m(number, parent=None, baseline=None, warm_start=None):
        return SimpleNamespace(
            number=number, parent=parent, baseline=baseline, warm_start=warm_start
        )

    every = {
        t.number: t
        for t in [
            m(4, baseline="plain-prune50"),
            m(5, warm_start="plan"),
            m(9),
            m(20, parent=5),
            m(30, parent=20),  # promoted twice: still the user's plan
            m(31, parent=4),
            m(32, parent=9),
        ]
    }
    kinds = {n: bench._kind(every, n) for n in (4, 5, 9, 30, 31, 32)}
    assert kinds == {
        4: "plain-prune50",
        5: "warm start: plan",
        9: "sampled",
        30: "warm start: plan",
        31: "plain-prune50",
        32: "sampled",
    }
