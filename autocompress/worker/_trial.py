"""One trial: a plan in, a measured deployable out. A pure function of plain data.

    model    = copy of the fp32 reference              (cached per worker process)
    model    = prune(model, plan)                       channels physically removed: all at
                                                        once, or the first of the cuts of
                                                        gradual pruning (worker/_gradual.py)
    model    = recalibrate BN, early accuracy check     hopeless trials stop here (only with
                                                        search.hopeless_margin: its one use)
    model    = finetune(model, teacher, plan)           KD in float, BatchNorm live; the other
                                                        cuts early in it, BN recalibrated after
                                                        the last
    model    = fold BN into convolutions
    weights  = GPTQ + snap onto the k-bit grid (PTQ)    or QAT for the last ``qat_fraction``
    deploy   = runtime.realize(model, weights, calib)   real kernels (ORT QDQ int8, ...)
    accuracy = deploy on the validation split           the deployable itself, not a simulation
    latency  = measure(deploy, fp32 reference)          same sitting, pinned, machine-wide lock
    size     = packed k-bit bytes + scales + fp32 rest

Every CPU-heavy stage runs inside ``busy()`` so no other trial on the machine times meanwhile.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from autocompress.backend import (
    FinetuneSettings,
    fold_batchnorm,
    packed_size,
    parameter_count,
    prune_channels,
    recalibrate_batchnorm,
    snap_weights,
    weight_formats,
    write_packed,
)
from autocompress.errors import HopelessTrialError, UnsupportedPlanError
from autocompress.measure import (
    Measurement,
    busy,
    time_beside_reference,
    top1_accuracy,
)
from autocompress.plan import CompressionPlan
from autocompress.record import TrialOutput, TrialResult
from autocompress.runtimes import Deployable, compute_precision
from autocompress.worker import _steps as steps_registry
from autocompress.worker._clock import Clock
from autocompress.worker._context import TrialContext, UserObjects, trial_context
from autocompress.worker._gradual import GradualPruning, gradual_pruning, widths
from autocompress.worker._records import finetune_record, layer_records
from autocompress.worker._task import Task

EARLY_EVAL_IMAGES = 1000


def run_trial(
    plan_data: dict[str, Any], task_data: dict[str, Any], *, objects: UserObjects | None = None
) -> TrialOutput:
    """Apply ``plan`` to the task's model, realize it, and measure it.

    Plain data in (so it runs in any process); a typed result out, with the deployable's and
    the packed weights' bytes beside it for the driver to write.
    """
    plan, task = CompressionPlan.from_dict(plan_data), Task.from_dict(task_data)
    clock = Clock(task.trial_timeout_s)
    with clock("load"):
        ctx = trial_context(task, objects)
    _check_schemes(plan, ctx.runtime.name)
    with clock("copy"), busy():  # a large model's copy is memory traffic a timer would feel
        model = copy.deepcopy(ctx.model)
    before = widths(model)
    early_accuracy, gradual = None, None
    steps = _steps(plan, task)
    trains = plan.distill is not None and steps > 0 and not plan.is_fp32
    if plan.pruned_layers:
        with clock("prune"), busy():
            gradual = _gradual_pruning(model, plan, ctx, task) if trains else None
            if gradual is None:  # one shot
                _prune(model, plan, ctx, task)
            else:  # the first of its cuts; the rest come during the float phase
                gradual.cut(model, 0, ctx.example, ctx.head, task.target.round_to)
        if gradual is None or task.hopeless_floor is not None:  # else after the last cut
            with clock("bn_recalibration"), busy():
                recalibrate_batchnorm(model, _inputs(ctx, task), task.finetune.bn_batches)
        if task.hopeless_floor is not None:  # nothing else reads it: 12% of a rung-0 trial
            with clock("early_evaluate"):
                early_accuracy = _torch_accuracy(model, ctx, EARLY_EVAL_IMAGES)
            _check_hopeless(early_accuracy, task, "after pruning and BN recalibration")
    finetune_report = None
    if trains:
        quantized, finetune_report = _finetune(model, plan, ctx, task, clock, gradual)
    else:
        steps = 0
        with clock("fold"), busy():
            fold_batchnorm(model)
        if not _screening(plan, task):
            _gptq(model, plan, ctx, task, clock)
        with clock("snap"), busy():
            quantized = snap_weights(model, weight_formats(plan))
    with clock("realize"), busy():
        deployable = ctx.runtime.realize(model, quantized, ctx.calibration, task.target)
    with clock("evaluate"):
        accuracy = top1_accuracy(deployable.predict, ctx.data.val())
    with clock("measure"):
        latency, where = time_deployable(deployable, ctx, task)
    with clock("pack"), busy():
        size, packed = packed_size(model, quantized), write_packed(model, quantized)
    result = TrialResult(
        accuracy=accuracy,
        latency_ms=latency.candidate.median_ms,
        latency_ratio=latency.ratio,
        reference_latency_ms=None if latency.reference is None else latency.reference.median_ms,
        size_bytes=size,
        deploy_bytes=len(deployable.artifact),
        params=parameter_count(model),
        latency=latency,
        fingerprint=where,
        runtime=deployable.runtime,
        artifact_suffix=deployable.suffix,
        layers=layer_records(plan, before, widths(model), deployable.runtime),
        early_accuracy=early_accuracy,
        finetune=None if finetune_report is None else finetune_record(finetune_report),
        finetune_steps=steps,
        stage_seconds=clock.seconds,
    )
    return TrialOutput(result, deployable.artifact, packed)


def time_deployable(
    deployable: Deployable,
    ctx: TrialContext,
    task: Task,
    usual_reference_ms: float | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """Latency of ``deployable`` beside the fp32 reference, and the device fingerprint.

    Local targets are timed here under the machine-wide lock, a sitting whose fp32 ran slower
    than usual retried (``measure``): ``usual_reference_ms`` where the caller knows it (a
    re-time after the search: the study's own sittings), else this worker's usual. A target
    naming Ray node resources is timed on such a node (``worker/_remote.py``).
    """
    target = task.target
    batch = timing_batch(ctx, target)
    if target.node_resources:
        from autocompress.worker._remote import measure_on_node

        return measure_on_node(
            target.runtime,
            deployable.artifact,
            ctx.reference.artifact,
            batch,
            target,
            task.ray_address,
        )
    with busy():
        candidate = deployable.timer(batch, target.threads)
        reference = ctx.reference.timer(batch, target.threads)
    sitting, where = time_beside_reference(
        candidate,
        reference,
        target,
        versions=ctx.runtime.versions(),
        input_shape=batch.shape[1:],
        precision=compute_precision(target),
        expected_reference_ms=usual_reference_ms or ctx.usual_reference_ms(),
    )
    if sitting.reference is not None:
        ctx.reference_ms.append(sitting.reference.median_ms)
    return sitting, where


def timing_batch(ctx: TrialContext, target: Any) -> np.ndarray:
    """The timed input: real samples, or the target's declared input shape (random data; token
    ids within the calibration data's range when the model takes integers)."""
    shape = list(target.input_shape or ctx.data.input_shape)
    sample = ctx.calibration[0]
    tokens = np.issubdtype(sample.dtype, np.integer)  # token ids keep their integer dtype
    dtype = sample.dtype if tokens else np.dtype(np.float32)
    if shape == list(sample.shape[1:]):
        return np.ascontiguousarray(np.repeat(sample[:1], target.batch_size, axis=0), dtype)
    rng = np.random.default_rng(0)
    if tokens:  # valid ids: within the calibration data's range
        return rng.integers(0, int(sample.max()) + 1, [target.batch_size, *shape], dtype=dtype)
    return rng.standard_normal([target.batch_size, *shape]).astype(np.float32)


def _prune(model: Any, plan: CompressionPlan, ctx: TrialContext, task: Task) -> None:
    prune_channels(
        model, plan.pruned_layers, ctx.example, head=ctx.head, round_to=task.target.round_to
    )


def _gradual_pruning(
    model: Any, plan: CompressionPlan, ctx: TrialContext, task: Task
) -> GradualPruning | None:
    """The cuts of a plan that trains, during its float phase (``worker/_gradual.py``), or
    None: one shot."""
    cfg, steps = task.finetune, _steps(plan, task)
    float_steps = steps - round(steps * _qat_fraction(plan, task))
    settings = (cfg.prune_stages, cfg.prune_span)
    return gradual_pruning(
        model, plan, ctx.example, ctx.head, settings, float_steps, task.target.round_to
    )


def _finetune(
    model: Any,
    plan: CompressionPlan,
    ctx: TrialContext,
    task: Task,
    clock: Clock,
    gradual: GradualPruning | None,
) -> tuple[dict[str, Any], Any]:
    """Fine-tune in two phases of one cosine schedule: float with BatchNorm live, then fold
    BatchNorm and train the last ``qat_fraction`` of the steps quantization-aware (the weights
    the kernel sees). Without a QAT phase (the default) the folded weights are rounded onto their
    grid (GPTQ below 8 bits) and snapped: post-training quantization of a fine-tuned model."""
    from autocompress.backend import finetune, kept_channels, teaches

    cfg = task.finetune
    steps = _steps(plan, task)
    qat_steps = round(steps * _qat_fraction(plan, task))
    base = FinetuneSettings(
        steps=steps,
        optimizer=cfg.optimizer,
        lr=_rate(plan, task),
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        feature_weight=cfg.feature_weight,
        feature_steps=cfg.feature_steps,
        deadline=clock.deadline,
        checkpoint_every=task.checkpoint_every if task.hopeless_floor is not None else 0,
        total=steps,
    )

    def checkpoint(step: int, m: Any) -> None:
        _check_hopeless(_torch_accuracy(m, ctx, EARLY_EVAL_IMAGES), task, f"at step {step}")

    def on_step(offset: int) -> Callable[[int, int], None]:
        """Each phase's steps as steps of the whole budget, for the progress display."""
        return lambda done, _: steps_registry.report(offset + done, steps)

    # a feature term held all along runs the teacher live each step (its hidden outputs are in
    # no table), so its logits need none; one that fades (feature_steps) leaves the rest of the
    # budget to the table, as does a foreign teacher, whose channels match none of the student's
    held = cfg.feature_weight and not cfg.feature_steps and kept_channels(model, ctx.teacher)
    tabled = teaches(plan.distill) and not held
    stream = ctx.finetune_stream(cfg.batch_size, cfg.seed, distils=tabled)
    reports = []
    cuts = (0,) if gradual is None else gradual.steps  # the float phase, split at each cut
    bounds = [*cuts, steps - qat_steps]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        if i > 0 and gradual is not None:  # the next cut; a new optimizer for the new shapes
            with clock("prune"), busy():
                gradual.cut(model, i, ctx.example, ctx.head, task.target.round_to)
            if i == len(cuts) - 1:  # training in between normalises with batch statistics
                with clock("bn_recalibration"), busy():
                    recalibrate_batchnorm(model, _inputs(ctx, task), cfg.bn_batches)
        if b - a <= 0:
            continue
        with clock("finetune"):
            last = i == len(cuts) - 1  # the widths are final: its weights can be averaged
            float_phase = replace(
                base, steps=b - a, offset=a, on_step=on_step(a), ema_steps=cfg.ema_steps * last
            )
            _, report = finetune(
                model, ctx.teacher, {}, plan.distill, stream, float_phase,
                gate=busy, checkpoint=checkpoint,
            )  # fmt: skip
        reports.append(report)
    with clock("fold"), busy():
        fold_batchnorm(model)
    if qat_steps == 0:
        _gptq(model, plan, ctx, task, clock)
        with clock("snap"), busy():
            return snap_weights(model, weight_formats(plan)), _joined(reports)
    with clock("finetune"):
        offset = steps - qat_steps
        qat_phase = replace(base, steps=qat_steps, offset=offset, on_step=on_step(offset))
        quantized, report = finetune(
            model, ctx.teacher, weight_formats(plan), plan.distill, stream, qat_phase,
            gate=busy, checkpoint=checkpoint,
        )  # fmt: skip
    return quantized, _joined([*reports, report])


def _gptq(model: Any, plan: CompressionPlan, ctx: TrialContext, task: Task, clock: Clock) -> None:
    """Round the folded weights below 7 bits onto their grid with GPTQ (``backend/_gptq.py``)
    where no training follows: it keeps each layer's output closer than nearest rounding. Not
    before QAT: started from GPTQ's codes, QAT trained worse than from the float weights (a
    tiny mobilenet_v2 in the conformance suite: 62.8% against 73.7% after 40 steps)."""
    from autocompress.backend import gptq_round

    with clock("gptq"), busy():
        gptq_round(model, weight_formats(plan), _inputs(ctx, task), task.finetune.gptq_batches)


def _screening(plan: CompressionPlan, task: Task) -> bool:
    """A ladder's rung-0 plan under ``search.rung0_gptq: false``: its accuracy only ranks it
    for promotion (a promoted plan starts afresh), so nearest rounding spares GPTQ's time."""
    return task.screen_nearest and plan.distill is not None and plan.distill.steps == 0


def _rate(plan: CompressionPlan, task: Task) -> float:
    """The plan's own rate (a refinement's), else ``finetune.plain_lr`` for plans without a
    teacher term (the plain baselines: a user's own rate), else ``finetune.lr``."""
    distill, cfg = plan.distill, task.finetune
    if distill is not None and distill.lr is not None:
        return distill.lr
    if distill is not None and distill.alpha == 0.0 and cfg.plain_lr is not None:
        return cfg.plain_lr
    return cfg.lr


def _qat_fraction(plan: CompressionPlan, task: Task) -> float:
    """The plan's own share of QAT steps (the plain baselines: none) or the experiment's."""
    if plan.distill is not None and plan.distill.qat_fraction is not None:
        return plan.distill.qat_fraction
    return task.finetune.qat_fraction


def _joined(reports: list[Any]) -> Any:
    """One report for the phases: steps and seconds added, losses in order."""
    first = reports[0]
    for later in reports[1:]:
        first.steps += later.steps
        first.seconds += later.seconds
        first.losses.extend(later.losses)
        first.last_loss = later.last_loss
        first.feature_layers = max(first.feature_layers, later.feature_layers)
    return first


def _steps(plan: CompressionPlan, task: Task) -> int:
    """The plan's own budget (a rung's) or the experiment's."""
    if plan.distill is not None and plan.distill.steps is not None:
        return plan.distill.steps
    return task.finetune.steps


def _inputs(ctx: TrialContext, task: Task) -> Iterator[Any]:
    return (x for x, _ in ctx.data.train_stream(task.data.batch_size, task.finetune.seed + 1))


def _torch_accuracy(model: Any, ctx: TrialContext, limit: int) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return top1_accuracy(model, ctx.data.val(), limit=limit)


def _check_hopeless(accuracy: float, task: Task, when: str) -> None:
    floor = task.hopeless_floor
    if floor is not None and accuracy < floor:
        raise HopelessTrialError(
            f"accuracy {accuracy:.2%} {when} is below the early-stop floor {floor:.2%}", accuracy
        )


def _check_schemes(plan: CompressionPlan, runtime: str) -> None:
    """Linear schemes are ONNX Runtime kernels; another runtime would ignore them silently."""
    if plan.layer_schemes and runtime != "onnxruntime":
        layer = next(iter(plan.layer_schemes))
        raise UnsupportedPlanError(
            f"layer {layer!r} asks for scheme {plan.layer_schemes[layer][0]!r}, which only "
            f"runtime onnxruntime runs, not {runtime}; drop the scheme or use onnxruntime"
        )
