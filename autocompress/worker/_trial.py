"""One trial: a plan in, a measured deployable out. A pure function of plain data.

    model    = copy of the fp32 reference              (cached per worker process)
    model    = prune(model, plan)                       channels physically removed
    model    = recalibrate BN, early accuracy check     hopeless trials stop here
    model    = fold BN into convolutions
    weights  = finetune(model, teacher, plan)  or  snap to the k-bit grid (PTQ)
    deploy   = runtime.realize(model, weights, calib)   real kernels (ORT QDQ int8, ...)
    accuracy = deploy on the validation split           the deployable itself, not a simulation
    latency  = measure(deploy, fp32 reference)          same sitting, pinned, machine-wide lock
    size     = packed k-bit bytes + scales + fp32 rest

Every CPU-heavy stage runs inside ``busy()`` so no other trial on the machine times meanwhile.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from autocompress import _faults as faults
from autocompress.backend import (
    FinetuneSettings,
    fold_batchnorm,
    packed_size,
    parameter_count,
    recalibrate_batchnorm,
    snap_weights,
    write_packed,
)
from autocompress.backend._layers import COMPRESSIBLE
from autocompress.errors import HopelessTrialError, TrialTimeoutError
from autocompress.measure import busy, default_cores, fingerprint, measure
from autocompress.plan import CompressionPlan
from autocompress.runtimes import Deployable, compute_precision
from autocompress.worker._context import TrialContext, UserObjects, trial_context
from autocompress.worker._task import Task

EARLY_EVAL_IMAGES = 1000


def run_trial(
    plan_data: dict[str, Any], task_data: dict[str, Any], *, objects: UserObjects | None = None
) -> dict[str, Any]:
    """Apply ``plan`` to the task's model, realize it, and measure it. Returns plain data."""
    plan, task = CompressionPlan.from_dict(plan_data), Task.from_dict(task_data)
    clock = _Clock(task.trial_timeout_s)
    with clock("load"):
        ctx = trial_context(task, objects)
    model = copy.deepcopy(ctx.teacher)
    before = _channels(model)
    early_accuracy = None
    if plan.pruned_layers:
        with clock("prune"), busy():
            _prune(model, plan, ctx, task)
        with clock("bn_recalibration"), busy():
            recalibrate_batchnorm(model, _inputs(ctx, task), task.finetune.bn_batches)
        early_accuracy = _torch_accuracy(model, ctx, EARLY_EVAL_IMAGES)
        _check_hopeless(early_accuracy, task, "after pruning and BN recalibration")
    with clock("fold"), busy():
        fold_batchnorm(model)
    finetune_report = None
    if plan.distill is not None and _steps(plan, task) > 0 and not plan.is_fp32:
        with clock("finetune"):
            quantized, finetune_report = _finetune(model, plan, ctx, task, clock.deadline)
    else:
        with busy():
            quantized = snap_weights(model, plan.quantized_layers)
    with clock("realize"), busy():
        deployable = ctx.runtime.realize(model, quantized, ctx.calibration, task.target)
    with clock("evaluate"):
        accuracy = deployable_accuracy(deployable, ctx.data.val())
    with clock("measure"):
        timing = time_deployable(deployable, ctx, task)
    return {
        "accuracy": accuracy,
        "latency_ms": timing["candidate"]["median_ms"],
        "latency_ratio": timing["ratio"],
        "reference_latency_ms": timing["reference"]["median_ms"],
        "size_bytes": packed_size(model, quantized),
        "deploy_bytes": len(deployable.artifact),
        "params": parameter_count(model),
        "early_accuracy": early_accuracy,
        "layers": _layer_record(plan, before, _channels(model)),
        "latency": timing,
        "fingerprint": timing["fingerprint"],
        "finetune": None if finetune_report is None else vars(finetune_report),
        "stage_seconds": clock.seconds,
        "runtime": deployable.runtime,
        "artifact": deployable.artifact,
        "artifact_suffix": deployable.suffix,
        "packed": write_packed(model, quantized),
    }


def deployable_accuracy(deployable: Deployable, batches: Iterator[Any]) -> float:
    """Top-1 accuracy of the deployable itself on (x, y) batches."""
    correct = total = 0
    for x, y in batches:
        with busy():
            logits = deployable.predict(np.asarray(x))
        correct += int((logits.argmax(1) == np.asarray(y)).sum())
        total += len(y)
    return correct / max(1, total)


def time_deployable(deployable: Deployable, ctx: TrialContext, task: Task) -> dict[str, Any]:
    """Latency of ``deployable`` beside the fp32 reference, with the device fingerprint.

    Local targets are timed here under the machine-wide lock; a target naming Ray node
    resources is timed on such a node (``measure/_remote.py``).
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
    result = measure(candidate, reference, target.measure, target.cores).to_dict()
    result["fingerprint"] = fingerprint(
        device=target.device,
        runtime=target.runtime,
        versions=ctx.runtime.versions(),
        threads=target.threads,
        cores=target.cores or default_cores(),
        batch_size=target.batch_size,
        input_shape=list(batch.shape[1:]),
        precision=compute_precision(target),
    )
    return result


def timing_batch(ctx: TrialContext, target: Any) -> np.ndarray:
    """The timed input: real images, or the target's declared input shape (random data)."""
    shape = list(target.input_shape or ctx.data.input_shape)
    if shape == list(ctx.calibration[0].shape[1:]):
        sample = ctx.calibration[0][:1]
        return np.ascontiguousarray(np.repeat(sample, target.batch_size, axis=0), np.float32)
    rng = np.random.default_rng(0)
    return rng.standard_normal([target.batch_size, *shape]).astype(np.float32)


def _prune(model: Any, plan: CompressionPlan, ctx: TrialContext, task: Task) -> None:
    from autocompress.backend import prune_channels

    prune_channels(
        model, plan.pruned_layers, ctx.example, head=ctx.head, round_to=task.target.round_to
    )


def _finetune(
    model: Any, plan: CompressionPlan, ctx: TrialContext, task: Task, deadline: float | None
) -> Any:
    from autocompress.backend import finetune

    cfg = task.finetune
    settings = FinetuneSettings(
        steps=_steps(plan, task),
        lr=cfg.lr if plan.distill is None or plan.distill.lr is None else plan.distill.lr,
        momentum=cfg.momentum,
        deadline=deadline,
        checkpoint_every=task.checkpoint_every if task.hopeless_floor is not None else 0,
    )

    def checkpoint(step: int, m: Any) -> None:
        _check_hopeless(_torch_accuracy(m, ctx, EARLY_EVAL_IMAGES), task, f"at step {step}")

    stream = ctx.data.train_stream(cfg.batch_size, cfg.seed)
    return finetune(
        model,
        ctx.teacher,
        plan.quantized_layers,
        plan.distill,
        stream,
        settings,
        gate=busy,
        checkpoint=checkpoint,
    )


def _steps(plan: CompressionPlan, task: Task) -> int:
    """The plan's own budget (a refinement) or the experiment's."""
    if plan.distill is not None and plan.distill.steps is not None:
        return plan.distill.steps
    return task.finetune.steps


def _inputs(ctx: TrialContext, task: Task) -> Iterator[Any]:
    return (x for x, _ in ctx.data.train_stream(task.data.batch_size, task.finetune.seed + 1))


def _torch_accuracy(model: Any, ctx: TrialContext, limit: int) -> float:
    import torch

    correct = total = 0
    model.eval()
    with torch.no_grad():
        for x, y in ctx.data.val():
            with busy():
                correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
            if total >= limit:
                break
    return correct / max(1, total)


def _check_hopeless(accuracy: float, task: Task, when: str) -> None:
    floor = task.hopeless_floor
    if floor is not None and accuracy < floor:
        raise HopelessTrialError(
            f"accuracy {accuracy:.2%} {when} is below the early-stop floor {floor:.2%}", accuracy
        )


def _channels(model: Any) -> dict[str, int]:
    return {
        n: (m.out_channels if hasattr(m, "out_channels") else m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    }


def _layer_record(
    plan: CompressionPlan, before: dict[str, int], after: dict[str, int]
) -> dict[str, dict[str, Any]]:
    out = {}
    for name, n0 in before.items():
        layer = plan.layers.get(name)
        out[name] = {
            "bits": None if layer is None else layer.weight_bits,
            "prune_ratio": 0.0 if layer is None else layer.prune_ratio,
            "channels_before": n0,
            "channels": after.get(name, n0),
            "realized_ratio": 1.0 - after.get(name, n0) / n0,
        }
    return out


class _Clock:
    """Seconds per stage, and the trial's deadline."""

    def __init__(self, timeout_s: float | None) -> None:
        self.seconds: dict[str, float] = {}
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TrialTimeoutError(f"trial ran past its time budget before stage {stage!r}")
        faults.point(f"trial.{stage}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
