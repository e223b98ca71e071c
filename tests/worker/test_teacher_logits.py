"""A distilling run looks its teacher's logits up in a table computed once per worker, instead of
running the teacher each step: the same student comes out, for no teacher forward per step."""

from __future__ import annotations

import copy
import dataclasses

import torch

from autocompress.backend import FinetuneSettings, finetune
from autocompress.data import endless_batches, endless_rows
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.worker._context import trial_context
from autocompress.worker._trial import run_trial


class Refuses(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the teacher ran although its logits were looked up")


def test_rows_come_in_the_order_endless_batches_gives_with_every_tensor_aligned() -> None:
    x = torch.arange(10.0).reshape(10, 1)
    y, z = torch.arange(10), torch.arange(10) * 7
    plain = endless_batches(x, y, 4, seed=3)
    rows = endless_rows((x, y, z), 4, seed=3)
    for _ in range(6):  # two permutations of 2 full batches each, and the start of a third
        (bx, by), (rx, ry, rz) = next(plain), next(rows)
        assert torch.equal(bx, rx) and torch.equal(by, ry) and torch.equal(rz, ry * 7)


def test_looked_up_logits_train_the_student_the_live_teacher_does(tiny_task) -> None:
    ctx = trial_context(tiny_task)
    x, _ = ctx.data.train_tensors
    with torch.no_grad():
        assert torch.allclose(ctx.teacher_logits, ctx.teacher(x), atol=1e-5)
    distill = DistillPlan(2.0, alpha=0.9)
    live, looked_up = copy.deepcopy(ctx.model), copy.deepcopy(ctx.model)
    settings = FinetuneSettings(steps=6)
    finetune(live, ctx.teacher, {}, distill, ctx.data.train_stream(32, 7), settings)
    stream = ctx.finetune_stream(32, 7, distils=True)
    finetune(looked_up, Refuses(), {}, distill, stream, settings)
    for a, b in zip(live.parameters(), looked_up.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    plain = ctx.finetune_stream(32, 7, distils=False)  # the plain pipeline needs no table
    assert len(next(plain)) == 2


def test_a_distilling_trial_runs_its_teacher_only_to_fill_the_table(tiny_task, tmp_path) -> None:
    """With a separate teacher (never copied into the student), count its forwards: one pass
    over the training split in chunks for the table, then none however many steps trials run."""
    from autocompress.config import ModelConfig
    from autocompress.models import build_model

    ctx = trial_context(tiny_task)
    spec = ModelConfig(name="refnet", kwargs={"width": 4})
    teacher = build_model("refnet", ctx.data.input_shape, ctx.data.num_classes, spec.kwargs)
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": teacher.state_dict(), "meta": {}}, path)
    finetune_cfg = dataclasses.replace(tiny_task.finetune, steps=12, teacher=spec)
    task = dataclasses.replace(tiny_task, finetune=finetune_cfg, teacher_checkpoint=str(path))
    calls = []
    taught = trial_context(task)
    taught.teacher.register_forward_hook(lambda *_: calls.append(1))
    plan = _pruned(taught, DistillPlan(2.0, alpha=0.9))
    for _ in range(2):
        assert run_trial(plan.to_dict(), task.to_dict()).result.accuracy > 0.0
    chunks = -(-len(taught.data.train_tensors[0]) // 500)
    assert len(calls) == chunks, f"{len(calls)} teacher forwards, {chunks} expected"


def test_a_plain_trial_never_fills_the_table(tiny_task) -> None:
    ctx = trial_context(tiny_task)
    ctx.__dict__.pop("teacher_logits", None)  # the cached context may hold one already
    run_trial(_pruned(ctx, DistillPlan(2.0, alpha=0.0)).to_dict(), tiny_task.to_dict())
    assert "teacher_logits" not in ctx.__dict__


def _pruned(ctx, distill: DistillPlan) -> CompressionPlan:
    """8-bit, a quarter of each layer's channels pruned (the head kept whole)."""
    return CompressionPlan(
        {
            layer.name: LayerPlan(8, 0.0 if layer.name == ctx.head else 0.25)
            for layer in ctx.layers
        },
        distill,
    )
