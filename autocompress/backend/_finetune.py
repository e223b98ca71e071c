"""Fine-tuning with knowledge distillation from the fp32 reference, float or quantization-aware.

A trial calls :func:`finetune` twice on one cosine schedule (``FinetuneSettings.offset`` /
``total``): first in float with BatchNorm live (``bits`` empty), then, after BatchNorm is folded,
quantization-aware for the last ``qat_fraction`` of the steps (see ``worker/_trial.py``).

Loss: ``alpha * T**2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE``.

Learning-rate rule: the gradient of the distillation term with respect to the student's logits
is ``alpha * T * (p_student_T - p_teacher_T)``, bounded by ``alpha * T`` instead of 1 for
cross-entropy. With the rate unchanged, T=4 and T=8 diverged on the reference model (FINDINGS).
We therefore run SGD at ``lr / max(1, alpha * T + (1 - alpha))``, which bounds the logit
gradient's scale by the same constant for every temperature, plus a cosine decay and
gradient-norm clipping as a safety net. AdamW (``optimizer="adamw"``, for transformers) keeps
``lr``: its update is invariant to the gradient's scale, so dividing the rate would only slow it.

The loop is lean on purpose (it is the search's main cost): in-memory batches, teacher logits
looked up in a per-worker table filled as rows are first drawn (for a user's loaders, under
``no_grad`` once per batch), no evaluation inside the loop except the optional ``checkpoint``
callback (and ``FinetuneSettings.on_step``, called after each step with ``(steps done, steps in
this call)``: the progress display's hook, as cheap, no tensor work), and each step runs inside
``gate()``, the measurement lock's "busy" side, so latency is never timed while this trial trains
(see autocompress.measure).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.backend._features import FeatureMatch
from autocompress.backend._quant import Formats, QuantizedWeight, attach_fake_quant
from autocompress.errors import DivergedError, TrialTimeoutError
from autocompress.plan import DistillPlan

Gate = Callable[[], AbstractContextManager[object]]
Checkpoint = Callable[[int, nn.Module], None]
OnStep = Callable[[int, int], None]


@dataclass(frozen=True)
class FinetuneSettings:
    """The fixed budget and optimiser settings (from the experiment's ``finetune`` section)."""

    steps: int
    optimizer: str = "sgd"  # "sgd" (momentum) or "adamw" (decay on matrices only)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    # weight of the feature term on the channels a pruned student kept (backend/_features.py)
    feature_weight: float = 0.0
    # the feature term's weight fades linearly to 0 over this many steps of the schedule (0: held
    # for the whole budget): features guide the start, logits alone the end (FitNets' hints,
    # then distillation, in one run)
    feature_steps: int = 0
    # where these steps sit in one cosine schedule over a budget split into phases (float with
    # BatchNorm live, then QAT): the schedule runs over ``total`` steps from ``offset``
    offset: int = 0
    total: int | None = None
    # average the weights (and BatchNorm statistics) over about this many steps and end on the
    # average (an exponential moving average, decay 1 - 1/ema_steps; 0: end on the last step's
    # weights). Applies to float steps only; see ``WeightAverage``
    ema_steps: int = 0
    checkpoint_every: int = 0  # call ``checkpoint`` every N steps (0: never)
    deadline: float | None = None  # time.monotonic() after which the trial is abandoned
    # called after each optimizer step with (steps done, ``steps``): the progress display's hook
    on_step: OnStep | None = field(default=None, compare=False)


@dataclass
class FinetuneReport:
    """What the loop did, for the trial record."""

    steps: int = 0
    seconds: float = 0.0
    lr: float = 0.0
    first_loss: float = float("nan")
    last_loss: float = float("nan")
    losses: list[float] = field(default_factory=list)  # every 10th step
    feature_layers: int = 0  # BatchNorm outputs the feature term matched (0: logits only)

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps if self.steps else 0.0


def effective_lr(lr: float, distill: DistillPlan | None, optimizer: str = "sgd") -> float:
    """The rate actually used at this temperature (see the module docstring)."""
    if distill is None or optimizer == "adamw":
        return lr
    scale = distill.alpha * distill.temperature + (1.0 - distill.alpha)
    return lr / max(1.0, scale)


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor | None,
    labels: torch.Tensor,
    distill: DistillPlan | None,
) -> torch.Tensor:
    """KD loss with T**2 scaling; plain cross-entropy when there is no teacher term."""
    ce = F.cross_entropy(student, labels)
    if distill is None or not teaches(distill) or teacher is None:
        return ce
    t = distill.temperature
    kl = F.kl_div(
        F.log_softmax(student / t, dim=1),
        F.log_softmax(teacher / t, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return distill.alpha * t * t * kl + (1.0 - distill.alpha) * ce


def teaches(distill: DistillPlan | None) -> bool:
    """Whether the loss has a teacher term (alpha 0: cross-entropy alone, the plain pipeline)."""
    return distill is not None and distill.alpha != 0.0


def _logits(
    teacher: nn.Module, x: torch.Tensor, distill: DistillPlan | None
) -> torch.Tensor | None:
    """The teacher's logits, only where the loss has a teacher term: a plain plan (alpha 0)
    pays no teacher forward, which matters once the teacher is larger than the student."""
    if not teaches(distill):
        return None
    with torch.no_grad():
        return teacher(x)


def finetune(
    model: nn.Module,
    teacher: nn.Module,
    bits: Formats,
    distill: DistillPlan | None,
    stream: Iterator[tuple[torch.Tensor, ...]],
    settings: FinetuneSettings,
    *,
    gate: Gate | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[dict[str, QuantizedWeight], FinetuneReport]:
    """QAT (k-bit weights, 8-bit activations) with KD; returns the baked k-bit weights.

    The model must have BatchNorm folded already when ``bits`` is not empty (the quantized
    weights are the folded ones the kernel sees). Layers absent from ``bits`` train in fp32;
    with ``bits`` empty this is plain float fine-tuning (BatchNorm may be live). A batch of
    ``stream`` is ``(x, y)``, or ``(x, y, teacher logits)`` looked up in the worker's table
    (``TrialContext.teacher_table``): then ``teacher`` is not run.
    """
    gate = gate or contextlib.nullcontext
    handle = attach_fake_quant(model, bits)
    report = FinetuneReport(lr=effective_lr(settings.lr, distill, settings.optimizer))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(params, settings, report.lr)
    teacher.eval()
    match = _feature_match(model, teacher, bits, distill, settings)
    report.feature_layers = len(match.index) if match else 0
    total = settings.total or settings.steps
    average = WeightAverage(model, settings.ema_steps) if settings.ema_steps and not bits else None
    start = time.perf_counter()
    for step in range(settings.steps):
        _check_deadline(settings.deadline, step)
        x, y, *known = next(stream)
        with gate():
            at = (settings.offset + step) / total
            _set_lr(opt, report.lr * 0.5 * (1 + math.cos(math.pi * at)))
            model.train()
            weight = _feature_weight(settings, settings.offset + step)
            term = match if weight > 0.0 else None  # faded out: logits alone, from the table
            loss = _loss(model, teacher, (term, weight), (x, y, *known), distill)
            if not torch.isfinite(loss):
                raise DivergedError(
                    f"fine-tuning loss became {float(loss.detach())} at step {step}; "
                    "lower finetune.lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.clip_norm)
            opt.step()
            if average is not None:
                average.update()
        if step % 10 == 0 or step == settings.steps - 1:
            report.losses.append(float(loss.detach()))
        if (
            checkpoint
            and settings.checkpoint_every
            and (step + 1) % settings.checkpoint_every == 0
        ):
            model.eval()
            checkpoint(step + 1, model)
        report.steps = step + 1
        if settings.on_step is not None:
            settings.on_step(step + 1, settings.steps)
    if average is not None:
        average.copy_to_model()
    report.seconds = time.perf_counter() - start
    if report.losses:
        report.first_loss, report.last_loss = report.losses[0], report.losses[-1]
    model.eval()
    handle.set_observing(False)
    return handle.remove(), report


class WeightAverage:
    """An exponential moving average of a model's float parameters and buffers (BatchNorm's
    running statistics averaged with the weights they normalise, as timm's ``ModelEmaV2`` does).

    Why: with a short budget the last step's weights carry the noise of the last batches; their
    average over the last few hundred steps sits nearer the middle of the basin (Polyak
    averaging; SWA). The decay ramps up from 0 as ``(1 + t) / (10 + t)`` until it reaches
    ``1 - 1/steps``, so the start of the run does not dominate a short one. Shapes must stay put
    while averaging: gradual pruning's cuts end the float segment it averages over.
    """

    def __init__(self, model: nn.Module, steps: int) -> None:
        self.decay = 1.0 - 1.0 / max(1, steps)
        self.updates = 0
        self.live = [t for t in _state(model) if t.is_floating_point()]
        self.shadow = [t.detach().clone() for t in self.live]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current weights into the average (after each optimizer step)."""
        self.updates += 1
        decay = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_(self.shadow, [t.detach() for t in self.live], 1.0 - decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """End on the average: the model's tensors take the averaged values in place."""
        for live, avg in zip(self.live, self.shadow, strict=True):
            live.copy_(avg)


def _state(model: nn.Module) -> list[torch.Tensor]:
    return [*model.parameters(), *model.buffers()]


def _feature_match(
    model: nn.Module,
    teacher: nn.Module,
    bits: Formats,
    distill: DistillPlan | None,
    settings: FinetuneSettings,
) -> FeatureMatch | None:
    """The kept-channel feature term, where it is asked for and applies: a teacher term, float
    weights with BatchNorm live (the QAT phase has BatchNorm folded), channels that match."""
    if settings.feature_weight == 0.0 or bits or not teaches(distill):
        return None
    match = FeatureMatch(model, teacher)
    return match if match else None


def _feature_weight(settings: FinetuneSettings, step: int) -> float:
    """The feature term's weight at ``step`` of the schedule (see ``feature_steps``)."""
    if settings.feature_steps <= 0:
        return settings.feature_weight
    return settings.feature_weight * max(0.0, 1.0 - step / settings.feature_steps)


def _loss(
    model: nn.Module,
    teacher: nn.Module,
    features: tuple[FeatureMatch | None, float],
    batch: tuple[torch.Tensor, ...],
    distill: DistillPlan | None,
) -> torch.Tensor:
    """One step's loss. With the feature term the teacher runs live (its hidden outputs are not
    in the logit table); otherwise its logits come from the table or a forward."""
    x, y, *known = batch
    match, weight = features
    if match is None:
        logits = known[0] if known else _logits(teacher, x, distill)
        return distillation_loss(model(x), logits, y, distill)
    with match.hooked():
        with torch.no_grad():
            logits = teacher(x)
        out = model(x)
    return distillation_loss(out, logits, y, distill) + weight * match.loss()


def _optimizer(
    params: list[nn.Parameter], settings: FinetuneSettings, lr: float
) -> torch.optim.Optimizer:
    """Momentum SGD (the CNNs' recipe), or ``adamw`` (the transformers')."""
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    if settings.optimizer != "adamw":
        raise ValueError(f"finetune optimizer {settings.optimizer!r}: use 'sgd' or 'adamw'")
    return adamw(params, lr, settings.weight_decay)


def adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and kernels only (biases, norms' and embeddings'
    vectors undecayed): how the transformers train, for the reference and for fine-tuning."""
    params = list(params)
    groups: list[dict[str, Any]] = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _check_deadline(deadline: float | None, step: int) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise TrialTimeoutError(f"trial ran past its time budget during fine-tuning (step {step})")
