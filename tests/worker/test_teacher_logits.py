"""A distilling run looks its teacher's logits up in a table each worker fills as rows are drawn,
instead of running the teacher each step: the same student comes out, for no teacher forward once
its rows are known."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from autocompress.backend import FinetuneSettings, finetune
from autocompress.data import endless_batches, endless_rows
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.worker import check_feature_term
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
    ctx.__dict__.pop("teacher_table", None)  # the cached context's earlier trials filled rows
    distill = DistillPlan(2.0, alpha=0.9)
    live, filling, known = (copy.deepcopy(ctx.model) for _ in range(3))
    settings = FinetuneSettings(steps=6)
    finetune(live, ctx.teacher, {}, distill, ctx.data.train_stream(32, 7), settings)
    finetune(filling, Refuses(), {}, distill, ctx.finetune_stream(32, 7, distils=True), settings)
    table = ctx.teacher_table
    drawn = table.known.nonzero().squeeze(1)
    assert 0 < len(drawn) <= 6 * 32  # only the rows the run drew were filled
    x, _ = ctx.data.train_tensors
    with torch.no_grad():
        assert torch.allclose(table.table[drawn], ctx.teacher(x[drawn]), atol=1e-5)
    table.teacher = Refuses()  # the same draws again: every row is known, the teacher idles
    finetune(known, Refuses(), {}, distill, ctx.finetune_stream(32, 7, distils=True), settings)
    table.teacher = ctx.teacher
    for a, b, c in zip(live.parameters(), filling.parameters(), known.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5) and torch.equal(b, c)
    plain = ctx.finetune_stream(32, 7, distils=False)  # the plain pipeline draws no logits
    assert len(next(plain)) == 2


def test_trials_of_one_budget_run_the_teacher_only_in_the_first(tiny_task, tmp_path) -> None:
    """With a separate teacher (never copied into the student), count its forwards: the first
    trial runs it for the rows it draws, the next (same fine-tuning seed, same rows) never."""
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
    plan = _pruned(taught, DistillPlan(2.0, alpha=0.9)).to_dict()
    assert run_trial(plan, task.to_dict()).result.accuracy > 0.0
    first = len(calls)
    assert 0 < first <= 12  # at most one partial forward per step
    assert run_trial(plan, task.to_dict()).result.accuracy > 0.0
    assert len(calls) == first


def test_a_plain_trial_never_fills_the_table(tiny_task) -> None:
    ctx = trial_context(tiny_task)
    ctx.__dict__.pop("teacher_table", None)  # the cached context may hold one already
    run_trial(_pruned(ctx, DistillPlan(2.0, alpha=0.0)).to_dict(), tiny_task.to_dict())
    assert "teacher_table" not in ctx.__dict__


def test_the_feature_term_runs_the_reference_live_and_a_foreign_teacher_keeps_the_table(
    tiny_task, tmp_path
) -> None:
    """finetune.feature_weight: with the reference teaching, every BatchNorm is matched and the
    teacher runs each step (hidden outputs are in no table); a teacher of another width matches
    nothing, so its logits still come from the table: no feature term, no extra forwards."""
    from autocompress.config import ModelConfig
    from autocompress.models import build_model

    featured = dataclasses.replace(tiny_task.finetune, steps=6, feature_weight=5.0)
    task = dataclasses.replace(tiny_task, finetune=featured)
    ctx = trial_context(task)
    calls: list[int] = []
    teacher = ctx.teacher  # the reference itself: a student copied from it copies the hook too
    hook = teacher.register_forward_hook(_counter(teacher, calls))
    try:
        plan = _pruned(ctx, DistillPlan(2.0, alpha=0.9)).to_dict()
        record = run_trial(plan, task.to_dict()).result.finetune
    finally:
        hook.remove()
    norms = sum(isinstance(m, torch.nn.BatchNorm2d) for m in ctx.model.modules())
    assert record is not None and record.feature_layers == norms > 0
    assert len(calls) == 6  # live, once a step
    assert record.to_dict()["feature_layers"] == norms

    spec = ModelConfig(name="refnet", kwargs={"width": 4})
    teacher = build_model("refnet", ctx.data.input_shape, ctx.data.num_classes, spec.kwargs)
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": teacher.state_dict(), "meta": {}}, path)
    foreign = dataclasses.replace(featured, teacher=spec)
    task = dataclasses.replace(tiny_task, finetune=foreign, teacher_checkpoint=str(path))
    record = run_trial(plan, task.to_dict()).result.finetune
    assert record is not None and record.feature_layers == 0
    with pytest.raises(ConfigError, match=r"finetune\.feature_weight: no BatchNorm"):
        check_feature_term(task.to_dict())  # what the study's preflight says before any trial
    check_feature_term(dataclasses.replace(tiny_task, finetune=featured).to_dict())


def test_a_fading_feature_term_runs_the_teacher_only_while_it_lasts(tiny_task) -> None:
    """finetune.feature_steps: the feature weight reaches 0 after that many steps; from then the
    logits come from the table, so once its rows are known the teacher runs feature_steps times."""
    featured = dataclasses.replace(
        tiny_task.finetune, steps=6, feature_weight=5.0, feature_steps=3
    )
    task = dataclasses.replace(tiny_task, finetune=featured)
    ctx = trial_context(task)
    plan = _pruned(ctx, DistillPlan(2.0, alpha=0.9)).to_dict()
    run_trial(plan, task.to_dict())  # fills the table's rows for this seed
    calls: list[int] = []
    teacher = ctx.teacher  # the reference itself: a student copied from it copies the hook too
    hook = teacher.register_forward_hook(_counter(teacher, calls))
    try:
        record = run_trial(plan, task.to_dict()).result.finetune
    finally:
        hook.remove()
    assert record is not None and record.feature_layers > 0
    assert len(calls) == 3


def _counter(teacher: torch.nn.Module, calls: list[int]):
    """A forward hook counting the teacher's own forwards (not a copy's; returns None, so the
    output stands)."""

    def hook(module: torch.nn.Module, *_: object) -> None:
        if module is teacher:
            calls.append(1)

    return hook


def _pruned(ctx, distill: DistillPlan) -> CompressionPlan:
    """8-bit, a quarter of each layer's channels pruned (the head kept whole)."""
    return CompressionPlan(
        {
            layer.name: LayerPlan(8, 0.0 if layer.name == ctx.head else 0.25)
            for layer in ctx.layers
        },
        distill,
    )
