"""Refinement: front members fine-tuned again with a longer budget, as extra trials."""

from __future__ import annotations

import pytest

from autocompress.config import ExperimentConfig
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan
from autocompress.study import refine, search
from autocompress.study._driver import REFINE, refine_candidates
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
    refined = [t for t in trials if t.user_attrs.get(REFINE)]
    assert len(refined) == 1 and refined[0].state.name == "COMPLETE"
    assert refined[0].user_attrs[REFINE] == {"of": target, "steps": 9, "lr": None}
    assert refined[0].params == trials[target].params
    plan = CompressionPlan.from_dict(refined[0].user_attrs["plan"])
    original = CompressionPlan.from_dict(trials[target].user_attrs["plan"])
    assert plan.distill.steps == 9 and plan.layers == original.layers
    assert refined[0].user_attrs["result"]["finetune"]["steps"] == 9  # really trained longer
    assert original.distill.steps is None  # the searched trial keeps the experiment's budget
    searched = [t for t in trials if t.state.name == "COMPLETE" and not t.user_attrs.get(REFINE)]
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
    refined = [t for t in study.trials if t.user_attrs.get(REFINE)]
    assert 1 <= len(chosen) <= 2
    assert sorted(t.user_attrs[REFINE]["of"] for t in refined) == sorted(chosen)
    assert all(t.user_attrs["result"]["finetune"]["steps"] == 8 for t in refined)
    n = len(study.trials)
    assert len(search(config, progress=False).study.trials) == n  # resume: nothing new


def test_refine_candidates_skip_the_ends_of_the_front():
    from types import SimpleNamespace

    def member(n, latency, distill=True, steps=None):
        d = {"temperature": 1.0, "alpha": 0.5, **({"steps": steps} if steps else {})}
        plan = CompressionPlan.from_dict({"layers": {}, "distill": d if distill else None})
        return SimpleNamespace(number=n, objectives={"latency": latency}, plan=plan, feasible=True)

    front = SimpleNamespace(
        members=[member(i, float(i)) for i in range(10)]
        + [member(20, 0.5, distill=False), member(21, 0.7, steps=100)]
    )
    assert refine_candidates(front, 2) == [2, 7]
    assert refine_candidates(front, 1) == [5]
    assert refine_candidates(SimpleNamespace(members=front.members[:2]), 3) == [0, 1]
