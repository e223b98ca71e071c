"""status's trial-time breakdown: per fine-tuning budget, the mean trial and its stages."""

from __future__ import annotations

from dataclasses import replace

import pytest
from optuna.trial import TrialState

from autocompress.record import attrs as A
from autocompress.study import budget_clocks
from tests.record.test_result import _result
from tests.study.test_budget import _trial


def _timed(steps: int, **stages: float):
    return replace(_result(), finetune_steps=steps, stage_seconds=stages)


def test_each_budget_gets_its_mean_trial_broken_down_into_its_stages() -> None:
    trials = [
        _trial(0, TrialState.COMPLETE, 0, 10, _timed(0, gptq=6.0, measure=2.0, prune=0.1)),
        _trial(1, TrialState.COMPLETE, 0, 14, _timed(0, gptq=8.0, measure=4.0, prune=0.1)),
        _trial(2, TrialState.COMPLETE, 0, 40, _timed(60, finetune=30.0, gptq=7.0)),
        _trial(3, TrialState.COMPLETE, 0, 99, _timed(60, finetune=90.0), **{A.DUPLICATE_OF: 2}),
        _trial(4, TrialState.FAIL, 0, 50),
        _trial(5, TrialState.RUNNING, 0, None),
        _trial(6, TrialState.COMPLETE, 0, 20, _timed(0)),  # stored before stages were timed
    ]
    rung0, tuned = budget_clocks(trials)
    assert (rung0.steps, rung0.trials, rung0.wall_s) == (0, 2, 12.0)
    assert list(rung0.stages_s) == ["gptq", "measure", "prune"]  # largest first
    assert rung0.stages_s["gptq"] == pytest.approx(7.0)
    assert rung0.outside_s == pytest.approx(12.0 - 7.0 - 3.0 - 0.1)  # the means add up
    assert (tuned.steps, tuned.trials, tuned.wall_s) == (60, 1, 40.0)  # the duplicate ran nothing
    assert tuned.outside_s == pytest.approx(3.0)
    line = rung0.describe()
    assert line.startswith("0 steps (2 trial(s)): 12.0 s a trial = gptq 7.0, measure 3.0")
    assert "1 more stage(s) 0.1" in line and line.endswith("outside the stages 1.9")
    assert tuned.to_dict()["stages_s"] == {"finetune": 30.0, "gptq": 7.0}


def test_outside_the_stages_is_never_below_zero() -> None:
    late = _trial(0, TrialState.COMPLETE, 0, 5, _timed(0, realize=6.0))  # storage clock behind
    assert budget_clocks([late])[0].outside_s == 0.0
    assert budget_clocks([]) == []
