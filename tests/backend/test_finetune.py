"""QAT + knowledge distillation: stable for every temperature, lean, baked k-bit weights."""

from __future__ import annotations

import copy

import pytest
import torch

from autocompress.backend import (
    FinetuneSettings,
    distillation_loss,
    effective_lr,
    finetune,
    fold_batchnorm,
)
from autocompress.data import endless_batches
from autocompress.errors import TrialTimeoutError
from autocompress.plan import DistillPlan


def student(teacher: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(teacher)
    fold_batchnorm(model)
    with torch.no_grad():  # start far from the teacher so there is something to learn
        for p in model.parameters():
            p.mul_(0.5)
    return model


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 8.0])
def test_kd_loss_falls_at_every_temperature(setting, temperature: float) -> None:
    splits, teacher = setting
    model = student(teacher)
    bits = {
        n: 4 for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    }
    distill = DistillPlan(temperature=temperature, alpha=0.9)
    stream = endless_batches(splits.train_x, splits.train_y, 64, seed=3)
    _, report = finetune(
        model, teacher, bits, distill, stream, FinetuneSettings(steps=60, lr=0.05)
    )
    first = sum(report.losses[:2]) / 2
    last = sum(report.losses[-2:]) / 2
    assert all(torch.isfinite(torch.tensor(report.losses)))
    assert last < 0.7 * first, (temperature, report.losses)


def test_lr_rule_scales_with_temperature() -> None:
    assert effective_lr(0.01, None) == 0.01
    assert effective_lr(0.01, DistillPlan(1.0, 0.5)) == 0.01
    assert effective_lr(0.01, DistillPlan(8.0, 1.0)) == pytest.approx(0.01 / 8)


def test_loss_is_t2_scaled_kl_plus_ce() -> None:
    torch.manual_seed(0)
    s, t, y = torch.randn(16, 10), torch.randn(16, 10), torch.randint(0, 10, (16,))
    d = DistillPlan(temperature=4.0, alpha=0.7)
    kl = torch.nn.functional.kl_div(
        torch.log_softmax(s / 4, 1), torch.softmax(t / 4, 1), reduction="batchmean"
    )
    ce = torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(distillation_loss(s, t, y, d), 0.7 * 16 * kl + 0.3 * ce, atol=1e-5)


def test_a_plan_without_a_teacher_term_never_runs_the_teacher(setting) -> None:
    """The plain baselines (alpha 0) pay no teacher forward: with a teacher larger than the
    student it would be most of their step time, for a term the loss drops."""
    splits, teacher = setting

    class Refuses(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise AssertionError("the teacher ran for a plan without a teacher term")

    stream = endless_batches(splits.train_x, splits.train_y, 32)
    for distill in (None, DistillPlan(2.0, 0.0)):
        _, report = finetune(
            student(teacher), Refuses(), {}, distill, stream, FinetuneSettings(steps=2)
        )
        assert report.steps == 2
    with pytest.raises(AssertionError, match="the teacher ran"):
        finetune(
            student(teacher), Refuses(), {}, DistillPlan(2.0, 0.5), stream,
            FinetuneSettings(steps=1),
        )  # fmt: skip


def test_finetune_bakes_weights_on_the_kbit_grid(setting) -> None:
    splits, teacher = setting
    model = student(teacher)
    bits = {"layer2.0.conv1": 3, "fc": 8}
    quantized, _ = finetune(
        model,
        teacher,
        bits,
        DistillPlan(2.0, 0.5),
        endless_batches(splits.train_x, splits.train_y, 32),
        FinetuneSettings(steps=5),
    )
    modules = dict(model.named_modules())
    for name, qw in quantized.items():
        assert torch.equal(modules[name].weight, qw.dequantize())
        assert int(qw.q.abs().max()) <= 2 ** (bits[name] - 1) - 1
    assert not any("parametrizations" in n for n, _ in model.named_parameters())


def test_deadline_stops_the_loop(setting) -> None:
    splits, teacher = setting
    with pytest.raises(TrialTimeoutError):
        finetune(
            student(teacher),
            teacher,
            {},
            None,
            endless_batches(splits.train_x, splits.train_y, 32),
            FinetuneSettings(steps=50, deadline=0.0),
        )


def test_adamw_keeps_its_rate_and_learns(setting) -> None:
    """AdamW's update ignores the gradient's scale: the temperature rule leaves its rate alone,
    and distillation still pulls the student toward the teacher."""
    assert effective_lr(5e-4, DistillPlan(8.0, 1.0), "adamw") == 5e-4
    splits, teacher = setting
    _, report = finetune(
        student(teacher),
        teacher,
        {},
        DistillPlan(temperature=2.0, alpha=0.9),
        endless_batches(splits.train_x, splits.train_y, 64, seed=3),
        FinetuneSettings(steps=60, optimizer="adamw", lr=3e-3, weight_decay=0.05),
    )
    assert report.lr == 3e-3
    assert sum(report.losses[-2:]) < 0.7 * sum(report.losses[:2]), report.losses


def test_adamw_decays_matrices_only(setting) -> None:
    """Weight decay on weight matrices and kernels, never on biases or norms' vectors."""
    from autocompress.backend._finetune import _optimizer

    model = student(setting[1])
    params = list(model.parameters())
    opt = _optimizer(params, FinetuneSettings(steps=1, optimizer="adamw", weight_decay=0.1), 1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decay == {id(p) for p in params if p.dim() >= 2}
    sgd = _optimizer(params, FinetuneSettings(steps=1), 1e-2)
    assert isinstance(sgd, torch.optim.SGD)


def _weights_after_each_step(setting, ema_steps: int, steps: int = 6):
    """A live-BatchNorm student fine-tuned ``steps`` steps: its tensors at the start, after each
    step (as the optimizer left them) and at the end."""
    splits, teacher = setting
    model = copy.deepcopy(teacher)  # BatchNorm live: its running statistics are averaged too
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    start = [t.detach().clone() for t in model.state_dict().values()]
    seen: list[list[torch.Tensor]] = []

    def snapshot(done: int, total: int) -> None:
        seen.append([t.detach().clone() for t in model.state_dict().values()])

    settings = FinetuneSettings(steps=steps, lr=0.05, ema_steps=ema_steps, on_step=snapshot)
    stream = endless_batches(splits.train_x, splits.train_y, 32, seed=5)
    finetune(model, teacher, {}, DistillPlan(2.0, 0.9), stream, settings)
    return start, seen, list(model.state_dict().values())


def test_ema_ends_on_the_moving_average_of_the_steps(setting) -> None:
    """finetune.ema_steps: the model ends on the exponential average of its weights and
    BatchNorm statistics from the start on, the decay ramping up as (1 + t) / (10 + t) to
    1 - 1/ema_steps; integer buffers (BatchNorm's batch count) are the last step's."""
    start, seen, final = _weights_after_each_step(setting, ema_steps=4)
    floats = [i for i, t in enumerate(start) if t.is_floating_point()]
    ints = [i for i, t in enumerate(start) if not t.is_floating_point()]
    assert ints and all(torch.equal(final[i], seen[-1][i]) for i in ints)
    assert any(not torch.allclose(final[i], seen[-1][i]) for i in floats)  # not the last step
    for i in floats:
        average = start[i].clone()
        for t, weights in enumerate(seen, start=1):
            decay = min(1 - 1 / 4, (1 + t) / (10 + t))
            average = decay * average + (1 - decay) * weights[i]
        assert torch.allclose(final[i], average, atol=1e-6), i


def test_without_ema_the_model_ends_on_its_last_step(setting) -> None:
    _, seen, final = _weights_after_each_step(setting, ema_steps=0)
    assert all(torch.equal(a, b) for a, b in zip(final, seen[-1], strict=True))
