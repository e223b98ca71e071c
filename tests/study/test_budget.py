"""search.max_trial_minutes: the study's trial time, counted from the storage, bounds what starts;
a later run with a larger budget goes on without losing or repeating a plan."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from optuna.trial import FrozenTrial, TrialState

from autocompress import search
from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.record import FinetuneRecord, TrialResult, read_trial
from autocompress.record import attrs as A
from autocompress.study._budget import TimeBudget, time_budget, trial_seconds
from tests.conftest import tiny_experiment
from tests.record.test_result import _result

T0 = datetime(2026, 12, 5, 12, 0, 0)


def _trial(
    number: int,
    state: TrialState,
    start_s: float,
    end_s: float | None,
    result: TrialResult | None = None,
    **attrs,
) -> FrozenTrial:
    user_attrs = dict(attrs)
    if result is not None:
        user_attrs[A.RESULT] = result.to_dict()
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=[0.9, 0.5, 1.0] if state == TrialState.COMPLETE else None,
        datetime_start=T0 + timedelta(seconds=start_s),
        datetime_complete=None if end_s is None else T0 + timedelta(seconds=end_s),
        params={},
        distributions={},
        user_attrs=user_attrs,
        system_attrs={},
        intermediate_values={},
        trial_id=number,
    )


def _tuned(steps: int, seconds: float) -> TrialResult:
    result = _result()
    record = FinetuneRecord(steps, seconds, 0.03, 2.0, 0.5)
    return TrialResult.from_dict({**result.to_dict(), "finetune": record.to_dict()})


def test_the_cost_model_is_the_median_step_time_plus_the_median_overhead() -> None:
    trials = [
        _trial(0, TrialState.COMPLETE, 0, 10, _tuned(60, 6.0)),  # 4 s outside, 0.1 s/step
        _trial(1, TrialState.COMPLETE, 10, 22, _tuned(60, 6.0)),  # 6 s outside
        _trial(2, TrialState.COMPLETE, 22, 27, _tuned(0, 0.0)),  # rung 0: 5 s outside
        _trial(3, TrialState.COMPLETE, 27, 27.5, _tuned(60, 6.0), duplicate_of=0),  # copied
        _trial(4, TrialState.FAIL, 28, 30),
    ]
    budget = time_budget(trials, 1.0, now=T0 + timedelta(seconds=31))
    assert budget is not None
    assert budget.overhead_s == pytest.approx(5.0) and budget.per_step_s == pytest.approx(0.1)
    assert budget.committed_s == pytest.approx(10 + 12 + 5 + 0.5 + 2)  # every finished trial
    assert budget.cost_s(1000) == pytest.approx(105.0)
    assert budget.fits(60) and not budget.fits(1000)  # 29.5 + 11 <= 60 < 29.5 + 105
    assert time_budget(trials, None) is None


def test_a_running_trial_commits_its_expected_duration_or_its_elapsed_time() -> None:
    done = [_trial(0, TrialState.COMPLETE, 0, 10, _tuned(60, 6.0))]  # 4 s + 0.1 s/step
    running = _trial(1, TrialState.RUNNING, 10, None)
    plan = read_trial(done[0]).plan  # none stored: a post-training plan costs the overhead
    assert plan is None
    budget = time_budget([*done, running], 10.0, now=T0 + timedelta(seconds=11))
    assert budget is not None and budget.committed_s == pytest.approx(10 + 4)  # expected
    late = time_budget([*done, running], 10.0, now=T0 + timedelta(seconds=40))
    assert late is not None and late.committed_s == pytest.approx(10 + 30)  # elapsed


def test_a_trial_of_a_dead_driver_counts_until_its_last_heartbeat() -> None:
    beat = (T0 + timedelta(seconds=20)).timestamp()
    dead = _trial(0, TrialState.FAIL, 0, 600, heartbeat=beat)  # recovered 10 min later
    assert trial_seconds(dead) == pytest.approx(20 + 15)  # last beat + one heartbeat period
    assert trial_seconds(_trial(1, TrialState.FAIL, 0, 12)) == pytest.approx(12)


def test_fits_and_after_accumulate() -> None:
    budget = TimeBudget(100.0, 40.0, 5.0, 0.1)
    assert budget.fits(550) and not budget.fits(560)
    assert budget.after(250).committed_s == pytest.approx(70.0)
    assert not budget.after(250).fits(300) and budget.after(250).fits(250)
    assert not TimeBudget(100.0, 100.0).fits(0)  # spent: nothing starts, even at no cost


def _started_within(study, limit_s: float) -> None:
    """Every trial started while the time already spent (trials finished before it) was under
    the limit: the budget is checked before each start."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    for t in trials:
        before = sum(
            trial_seconds(o)
            for o in trials
            if o.datetime_complete is not None and o.datetime_complete <= t.datetime_start
        )
        assert before < limit_s, (t.number, before)


def test_the_budget_stops_sampling_and_a_larger_one_resumes_exactly(tmp_path, capsys) -> None:
    """A tiny ladder with 0.2-0.5 s trials (Xeon, AVX-512): 0.6 s of trial time stops the
    search early with slots left and a one-line reason; the same study with a larger budget
    samples the rest, each plan once, promotions once."""
    keys = {"n_trials": 6, "rungs": [0, 4, 8], "eta": 2, "baselines": ["fp32", "int8"]}
    small = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={**keys, "max_trial_minutes": 0.01})
    )
    study = search(small, progress=True).study
    out = capsys.readouterr().out
    entries = [t for t in study.get_trials(deepcopy=False) if not A.is_promotion(t)]
    left = [t for t in entries if t.state == TrialState.WAITING]
    assert left, "0.6 s of trial time must stop a 6-plan ladder early"
    assert "| 6 trials within 0.01 trial-minutes, sampler random" in out
    assert "trial-time budget spent:" in out and "raise search.max_trial_minutes" in out
    _started_within(study, 0.01 * 60)

    large = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={**keys, "max_trial_minutes": 60})
    )
    study = search(large, progress=False).study
    trials = study.get_trials(deepcopy=False)
    assert not [t for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)]
    entries = [t for t in trials if not A.is_promotion(t)]
    assert sum(t.state == TrialState.COMPLETE for t in entries) == 6  # baselines included
    live = [read_trial(t).rung for t in trials if A.is_promotion(t) and t.state != TrialState.FAIL]
    assert live and max(Counter((r.parent, r.steps) for r in live if r).values()) == 1


def test_max_trial_minutes_must_be_positive(tmp_path) -> None:
    with pytest.raises(ConfigError, match="max_trial_minutes") as err:
        ExperimentConfig.from_dict(tiny_experiment(tmp_path, search={"max_trial_minutes": 0}))
    assert "\n" not in str(err.value)


def test_promotions_are_decided_while_their_expected_durations_fit() -> None:
    from autocompress.record import Promotion
    from autocompress.study._rungs import within_time

    asked = [Promotion(1, 2, 1000), Promotion(2, 1, 60), Promotion(3, 1, 60)]
    budget = TimeBudget(60.0, 40.0, 2.0, 0.1)  # 20 s left; 60 steps cost 8 s, 1000 cost 102 s
    assert within_time(asked, None) == asked
    assert [p.parent for p in within_time(asked, budget)] == [2, 3]
    assert within_time(asked, budget.after(60).after(60)) == []  # 4 s left


def test_a_budget_that_affords_few_fully_trained_plans_says_so() -> None:
    from autocompress.study._budget import per_fully_trained_s, top_rung_note

    budget = TimeBudget(1800.0, 0.0, 10.0, 0.4)  # rung costs: 10 s, 34 s, 410 s
    ladder = [0, 60, 1000]
    assert per_fully_trained_s(budget, ladder, 4) == pytest.approx(16 * 10 + 4 * 34 + 410)
    note = top_rung_note(budget, ladder, 4)  # 1800 s / 706 s: about 2.5 plans
    assert note is not None and "\n" not in note
    assert "a fully trained plan takes 11.8 trial-minutes" in note
    assert "(a 1000-step trial alone 6.8)" in note and "fully trains about 2.5 plans," in note
    assert "fully trains about 2.5 plans (this search: 2)," in (
        top_rung_note(budget, ladder, 4, 2) or ""
    )
    assert "lower the top rung of search.rungs" in note
    assert "search without search.rungs and refine the best members" in note
    assert top_rung_note(replace(budget, limit_s=3 * 706.0), ladder, 4) is None  # three fit
    assert top_rung_note(replace(budget, per_step_s=0.0), ladder, 4) is None  # none measured
    assert top_rung_note(budget, [60], 4) is None  # one rung: every trial is fully trained


def test_the_budget_spent_line_adds_the_note_for_a_ladder_only() -> None:
    from types import SimpleNamespace

    from autocompress.study._driver import budget_left

    trials = [
        _trial(0, TrialState.COMPLETE, 0, 30, _tuned(60, 24.0)),  # 6 s outside, 0.4 s/step
        _trial(1, TrialState.COMPLETE, 30, 36, _tuned(0, 0.0)),  # a rung-0 trial: 6 s
        _trial(2, TrialState.WAITING, 0, None),  # a plan the budget left unsampled
    ]
    study = SimpleNamespace(get_trials=lambda deepcopy=False: trials)

    def setup(rungs: list[int] | None) -> SimpleNamespace:
        search = SimpleNamespace(
            max_trial_minutes=1.0, rungs=rungs, eta=4, ladder=lambda steps: rungs or [steps]
        )
        return SimpleNamespace(
            search=search, task=SimpleNamespace(finetune=SimpleNamespace(steps=60))
        )

    with_ladder = budget_left(study, setup([0, 60, 1000]))
    assert with_ladder is not None and "1 plan(s) not sampled" in with_ladder
    assert "Note: at this study's measured costs a fully trained plan" in with_ladder
    assert "fully trains about 0.1 plans (this search: 0)" in with_ladder
    one_rung = budget_left(study, setup(None))
    assert one_rung is not None and "Note:" not in one_rung


def test_fully_trained_counts_plans_with_a_completed_top_rung_trial() -> None:
    from autocompress.record import Rung
    from autocompress.study._rungs import fully_trained

    def at(number: int, state: TrialState, level: int, parent: int | None) -> FrozenTrial:
        rung = Rung(level, [0, 60, 1000][level], parent).to_dict()
        return _trial(number, state, 0, None if state == TrialState.RUNNING else 1, rung=rung)

    trials = [
        at(0, TrialState.COMPLETE, 0, None),
        at(1, TrialState.COMPLETE, 1, 0),
        at(2, TrialState.COMPLETE, 2, 1),  # fully trained
        at(3, TrialState.COMPLETE, 2, 5),  # another plan, fully trained
        at(4, TrialState.RUNNING, 2, 6),  # not yet
        at(7, TrialState.FAIL, 2, 8),  # failed: not trained
        _trial(9, TrialState.WAITING, 0, None),  # a slot not sampled: no rung
    ]
    assert fully_trained(trials, 2) == 2
    assert fully_trained(trials, 1) == 1


def test_a_running_plan_without_its_own_budget_commits_the_experiments_steps() -> None:
    """A one-rung search's plans carry no step count (the experiment's finetune.steps): a
    running one is expected to fine-tune that many steps, not none."""
    from autocompress.plan import CompressionPlan, DistillPlan

    done = [_trial(0, TrialState.COMPLETE, 0, 10, _tuned(60, 6.0))]  # 4 s + 0.1 s/step
    plan = CompressionPlan({}, DistillPlan()).to_dict()  # distill.steps None
    running = _trial(1, TrialState.RUNNING, 10, None, plan=plan)
    now = T0 + timedelta(seconds=11)
    budget = time_budget([*done, running], 10.0, now=now, default_steps=60)
    assert budget is not None and budget.committed_s == pytest.approx(10 + 4 + 60 * 0.1)
    rung0 = _trial(
        1, TrialState.RUNNING, 10, None, plan=CompressionPlan({}, DistillPlan(steps=0)).to_dict()
    )
    budget = time_budget([*done, rung0], 10.0, now=now, default_steps=60)
    assert budget is not None and budget.committed_s == pytest.approx(10 + 4)  # its own 0
