"""Refinement: front members fine-tuned again with a longer budget, as extra trials."""

from __future__ import annotations

import pytest

from autocompress import refine, search
from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.front import refine_candidates
from autocompress.front._refine import optimistic_gains
from autocompress.plan import CompressionPlan
from autocompress.record import attrs
from tests.conftest import tiny_experiment


def _finetuned(study) -> list[int]:
    return [
        t.number
        for t in study.trials
        if t.state.name == "COMPLETE" and (t.user_attrs["plan"] or {}).get("distill")
    ]


def test_refine_reruns_the_plan_with_the_longer_budget_outside_the_search_budget(tmp_path):
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path, search={"n_trials": 4}))
    study = search(config, progress=False).study
    target = _finetuned(study)[0]
    result = refine(config, [target], steps=9, progress=False)

    trials = result.study.trials
    refined = [t for t in trials if t.user_attrs.get(attrs.REFINE)]
    assert len(refined) == 1 and refined[0].state.name == "COMPLETE"
    assert refined[0].user_attrs[attrs.REFINE] == {"of": target, "steps": 9, "lr": None}
    assert refined[0].params == trials[target].params
    plan = CompressionPlan.from_dict(refined[0].user_attrs["plan"])
    original = CompressionPlan.from_dict(trials[target].user_attrs["plan"])
    assert plan.distill.steps == 9 and plan.layers == original.layers
    assert refined[0].user_attrs["result"]["finetune"]["steps"] == 9  # really trained longer
    assert original.distill.steps is None  # the searched trial keeps the experiment's budget
    searched = [
        t for t in trials if t.state.name == "COMPLETE" and not t.user_attrs.get(attrs.REFINE)
    ]
    assert len(searched) == 4  # the budget counted search trials only: no slot was added
    assert not [t for t in trials if t.state.name == "WAITING"]
    member = next((m for m in result.front.members if m.refines == target), None)
    assert member is None or "steps=9" in member.plan.summary()

    again = refine(config, [target], steps=9, progress=False)  # already done: nothing re-run
    assert len(again.study.trials) == len(trials)


def test_refine_refuses_post_training_and_unknown_trials(tmp_path):
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={"n_trials": 2, "baselines": ["fp32", "int8"]})
    )
    study = search(config, progress=False).study
    n = len(study.trials)
    with pytest.raises(ConfigError, match="post-training"):
        refine(config, [0], steps=5, progress=False)
    with pytest.raises(ConfigError, match="not a completed trial"):
        refine(config, [99], steps=5, progress=False)
    assert len(study.trials) == n  # nothing queued


def test_refine_needs_a_stored_search(tmp_path):
    config = ExperimentConfig.from_dict(tiny_experiment(tmp_path))
    with pytest.raises(Exception, match="run the search first"):
        refine(config, [1], steps=5, progress=False)
    assert not (tmp_path / "run" / "study.journal").exists()


def test_search_refines_members_after_its_budget_and_resumes_without_refining_twice(tmp_path):
    config = ExperimentConfig.from_dict(
        tiny_experiment(
            tmp_path,
            search={"n_trials": 5, "baselines": [], "refine_members": 2, "refine_steps": 8},
        )
    )
    study = search(config, progress=False).study
    chosen = study.user_attrs["refine_chosen"]
    refined = [t for t in study.trials if t.user_attrs.get(attrs.REFINE)]
    assert 1 <= len(chosen) <= 2
    assert sorted(t.user_attrs[attrs.REFINE]["of"] for t in refined) == sorted(chosen)
    assert all(t.user_attrs["result"]["finetune"]["steps"] == 8 for t in refined)
    n = len(study.trials)
    assert len(search(config, progress=False).study.trials) == n  # resume: nothing new


def _member(
    n, latency, accuracy, *, distill=True, steps=None, refines=None, key="k", t=None, size=100.0
):
    from types import SimpleNamespace

    d = {"temperature": t or 1.0 + n, "alpha": 0.5, **({"steps": steps} if steps else {})}
    plan = CompressionPlan.from_dict({"layers": {}, "distill": d if distill else None})
    objectives = {"accuracy": accuracy, "latency": latency, "size": size}
    return SimpleNamespace(
        number=n, objectives=objectives, plan=plan, refines=refines, fingerprint_key=key
    )


def _front(members):
    from types import SimpleNamespace

    return SimpleNamespace(
        completed=members, fingerprint_key="k", objectives=["accuracy", "latency", "size"]
    )


def test_refine_candidates_come_from_the_pool_the_slack_allows_by_optimistic_gain():
    curve = [_member(i, 1.0 + i, 0.80 + 0.01 * i) for i in range(10)]  # a trade-off: all optimal
    others = [
        _member(20, 0.5, 0.95, distill=False),  # post-training: nothing to fine-tune
        _member(21, 4.0, 0.90, steps=100, refines=3),  # a refinement (and 3 is done already)
        _member(22, 5.5, 0.70),  # dominated
        _member(23, 0.1, 0.99, key="other"),  # another device's figures
        _member(24, 6.0, 0.85, t=6.0),  # the plan of trial 5 again: one measurement
    ]
    front = _front(curve + others)
    # floor 0.86, slack 3 pt: short-budget accuracy >= 0.83, so trials 4..9 (3 is refined);
    # recovered to the pool's best (0.89), the fastest would add the most
    assert refine_candidates(front, 2, 0.86, 3.0) == [4, 5]
    assert refine_candidates(front, 1, 0.86, 3.0) == [4]
    assert refine_candidates(front, 2, 0.86, 0.0) == [6, 7]  # no slack: only the slow end
    assert refine_candidates(front, 2) == [0, 1]  # no floor: every fine-tuned member
    assert refine_candidates(front, 9, 0.86, 3.0) == [4, 5, 6, 7, 8, 9]
    assert refine_candidates(_front(others[:1]), 2) == []


def test_refinement_gain_spreads_over_the_latency_size_trade_off():
    # fast-but-big, small-but-slow and a middle one, each 2 pt short of the most accurate (3)
    fast = _member(0, 1.0, 0.88, size=400.0)
    small = _member(1, 4.0, 0.88, size=100.0)
    middle = _member(2, 2.5, 0.885, size=250.0)
    accurate = _member(3, 5.0, 0.90, size=500.0)
    pool = [fast, small, middle, accurate]
    gains = optimistic_gains(pool, ["accuracy", "latency", "size"])
    assert gains[3] == 0.0 and min(gains[:3]) > 0  # nothing to recover for the accurate one
    assert refine_candidates(_front(pool), 1) == [2]  # recovered, the middle adds most volume
    assert sorted(refine_candidates(_front(pool), 3)) == [0, 1, 2]
    # hand-computed: only raising the fast one to 0.9 changes the front of two points
    gains = optimistic_gains([_member(0, 1.0, 0.8), _member(1, 2.0, 0.9)], ["accuracy", "latency"])
    assert gains == pytest.approx([0.1, 0.0])
