"""Gradual pruning: the plan's widths reached in cuts, so latency and size stay the plan's."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import autocompress.backend as backend
from autocompress.models import build_model
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.worker import _trial as trial_module
from autocompress.worker._context import trial_context
from autocompress.worker._gradual import gradual_pruning, schedule, widths
from autocompress.worker._trial import run_trial


def test_the_schedule_cuts_most_early_and_ends_at_the_plan() -> None:
    steps, shares = schedule(4, 100)
    assert steps == (0, 25, 50, 75)
    assert shares[0] == pytest.approx(1 - 0.75**3) and shares[-1] == 1.0
    assert list(shares) == sorted(shares)
    assert schedule(8, 3)[0] == (0, 1, 2)  # never more cuts than steps


@pytest.fixture
def counted(monkeypatch) -> list[dict[str, float]]:
    """Every prune_channels call's ratios, in order."""
    calls: list[dict[str, float]] = []
    real = backend.prune_channels

    def spy(model, ratios, *args, **kwargs):
        calls.append(dict(ratios))
        return real(model, ratios, *args, **kwargs)

    monkeypatch.setattr(backend, "prune_channels", spy)  # where worker/_gradual.py looks
    monkeypatch.setattr(trial_module, "prune_channels", spy)  # the one-shot path's name
    return calls


def _task(tiny_task, stages: int):
    finetune = dataclasses.replace(tiny_task.finetune, prune_stages=stages, prune_span=1.0)
    target = dataclasses.replace(tiny_task.target, round_to=1)  # room for in-between widths
    return dataclasses.replace(tiny_task, finetune=finetune, target=target)


def test_a_gradual_trial_ends_at_the_one_shot_widths_and_size(tiny_task, counted) -> None:
    names = [layer.name for layer in trial_context(tiny_task).layers]
    layers = {n: LayerPlan(8, 0.0 if n == "fc" else 0.5) for n in names}
    plan = CompressionPlan(layers=layers, distill=DistillPlan()).to_dict()
    once = run_trial(plan, _task(tiny_task, 1).to_dict()).result
    assert len(counted) == 1
    gradual = run_trial(plan, _task(tiny_task, 3).to_dict()).result
    assert len(counted) == 1 + 1 + 3  # the one-shot trial; the copy that finds the widths; cuts
    first_cut = counted[2]
    assert all(0 < r < 0.5 for r in first_cut.values())  # part of the way, not the plan
    assert {n: r.channels for n, r in gradual.layers.items()} == {
        n: r.channels for n, r in once.layers.items()
    }
    assert (gradual.size_bytes, gradual.params) == (once.size_bytes, once.params)
    assert gradual.finetune is not None and gradual.finetune.steps == tiny_task.finetune.steps


def test_the_plain_pipeline_and_untrained_plans_prune_in_one_shot(tiny_task, counted) -> None:
    """The plain baselines stand for a user's one-shot torch-pruning run; rung 0 has no steps
    to spread cuts over."""
    names = [layer.name for layer in trial_context(tiny_task).layers]
    plan = CompressionPlan({n: LayerPlan(8, 0.0 if n == "fc" else 0.5) for n in names})
    task = _task(tiny_task, 3).to_dict()
    run_trial(plan.plain().to_dict(), task)
    run_trial(dataclasses.replace(plan, distill=DistillPlan(steps=0)).to_dict(), task)
    assert len(counted) == 2


def test_cuts_reach_whole_heads_and_mlp_units_of_a_transformer() -> None:
    torch.manual_seed(0)
    model = build_model("vit", [1, 8, 8], 10, {"dim": 32, "heads": 4, "patch": 2}).eval()
    x = torch.randn(2, 1, 8, 8)
    block = "encoder.blocks.0"
    ratios = {f"{block}.attn.{p}": 0.75 for p in "qkv"} | {f"{block}.fc1": 0.5}
    layers = {n: LayerPlan(8, r) for n, r in ratios.items()}
    plan = CompressionPlan(layers=layers, distill=DistillPlan())
    target = copy.deepcopy(model)
    backend.prune_channels(target, ratios, x, head="encoder.head", round_to=8)
    cuts = gradual_pruning(model, plan, x, "encoder.head", (3, 1.0), 30, 8)
    assert cuts is not None and cuts.final == widths(target)
    seen = []
    for i in range(len(cuts.steps)):
        cuts.cut(model, i, x, "encoder.head", 8)
        seen.append(model.encoder.blocks[0].attn.num_heads)
    assert seen[0] in (2, 3) and seen[-1] == 1  # part of the way first, the plan's one head last
    assert widths(model) == widths(target)
    assert model(x).shape == (2, 10)


def test_weights_are_averaged_after_the_last_cut_only(tiny_task, monkeypatch) -> None:
    """finetune.ema_steps with gradual pruning: one average, over the segment after the last cut
    (the widths change at each cut, so earlier weights have no place in it), at final widths."""
    import autocompress.backend._finetune as finetune_module

    made: list[dict[str, int]] = []
    real = finetune_module.WeightAverage

    class Spy(real):  # type: ignore[misc, valid-type]
        def __init__(self, model, steps):
            made.append(widths(model))
            super().__init__(model, steps)

    monkeypatch.setattr(finetune_module, "WeightAverage", Spy)
    names = [layer.name for layer in trial_context(tiny_task).layers]
    plan = CompressionPlan({n: LayerPlan(8, 0.0 if n == "fc" else 0.5) for n in names})
    plan = dataclasses.replace(plan, distill=DistillPlan())
    task = _task(tiny_task, 3)
    task = dataclasses.replace(task, finetune=dataclasses.replace(task.finetune, ema_steps=5))
    result = run_trial(plan.to_dict(), task.to_dict()).result
    assert made == [{n: r.channels for n, r in result.layers.items()}]
