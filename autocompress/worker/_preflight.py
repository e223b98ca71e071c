"""A dry run of a plan: prune, fold, snap, realize and run one batch; no fine-tuning, no timing.

A failure that recurs on every plan (a layer the exporter cannot map, a reshape that hard-codes a
channel count, a concatenation the pruner mishandles) used to cost eight failed trials before the
driver stopped. Run on the space's most compressed plan before the study exists, it costs seconds
and names the stage and, where it can, the layer.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import numpy as np

from autocompress.backend import fold_batchnorm, kept_channels, snap_weights
from autocompress.errors import ConfigError, UnsupportedPlanError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.worker._context import TrialContext, UserObjects, trial_context
from autocompress.worker._task import Task
from autocompress.worker._trial import _prune

MAX_BISECT_LAYERS = 48  # per-layer retries after a failure; beyond that, the stage is named


def dry_run(
    plan_data: dict[str, Any], task_data: dict[str, Any], *, objects: UserObjects | None = None
) -> None:
    """Raise :class:`UnsupportedPlanError` if ``plan`` cannot be made into a working deployable.

    The message says which stage failed (pruning or quantization) and the first layer, in
    forward order, whose plan alone reproduces the failure.
    """
    plan, task = CompressionPlan.from_dict(plan_data), Task.from_dict(task_data)
    ctx = trial_context(task, objects)
    error = _attempt(plan, ctx, task)
    if error is None:
        return
    stage, culprit = _locate(plan, ctx, task)
    where = f" at layer {culprit!r}" if culprit else ""
    raise UnsupportedPlanError(f"{stage}{where} fails: {error}")


def check_feature_term(task_data: dict[str, Any], *, objects: UserObjects | None = None) -> None:
    """Raise :class:`ConfigError` if ``finetune.feature_weight`` is set but no BatchNorm of the
    model matches its teacher's channel for channel (no BatchNorm, as in a transformer, or a
    ``finetune.teacher`` that is another model): the term would silently do nothing."""
    task = Task.from_dict(task_data)
    if task.finetune.feature_weight == 0.0:
        return
    ctx = trial_context(task, objects)
    if not kept_channels(ctx.model, ctx.teacher):
        raise ConfigError(
            "finetune.feature_weight: no BatchNorm of the model matches the teacher's channel for "
            "channel (the model has none, or finetune.teacher is another model), so the feature "
            "term would do nothing; set finetune.feature_weight: 0 or let the reference teach"
        )


def _attempt(plan: CompressionPlan, ctx: TrialContext, task: Task) -> str | None:
    """None if the plan realizes and predicts finite logits of the right shape, else why not."""
    try:
        model = copy.deepcopy(ctx.model)
        if plan.pruned_layers:
            _prune(model, plan, ctx, task)
        fold_batchnorm(model)
        quantized = snap_weights(model, plan.quantized_layers)
        deployable = ctx.runtime.realize(model, quantized, ctx.calibration[:1], task.target)
        logits = np.asarray(deployable.predict(ctx.calibration[0][:2]))
    except Exception as exc:  # torch, the pruner and the exporter raise many types
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0][:240]}" if text else type(exc).__name__
    if logits.shape != (min(2, len(ctx.calibration[0])), ctx.data.num_classes):
        return f"the deployable returns shape {logits.shape}, not (batch, classes)"
    if not np.isfinite(logits).all():
        return "the deployable returns non-finite logits"
    return None


def _locate(plan: CompressionPlan, ctx: TrialContext, task: Task) -> tuple[str, str | None]:
    """The failing stage, and the first layer whose part of the plan alone fails."""
    pruning = _only(plan, bits=False)
    stage_plan, stage = (
        (pruning, "pruning")
        if plan.pruned_layers and _attempt(pruning, ctx, task)
        else (_only(plan, bits=True), "quantization")
    )
    if _attempt(stage_plan, ctx, task) is None:
        return "pruning and quantization together", None
    for name in list(stage_plan.layers)[:MAX_BISECT_LAYERS]:
        single = CompressionPlan({name: stage_plan.layers[name]}, distill=None)
        if single.layers[name] != LayerPlan() and _attempt(single, ctx, task) is not None:
            return stage, name
    return stage, None


def _only(plan: CompressionPlan, *, bits: bool) -> CompressionPlan:
    """The plan's quantization alone (``bits``) or its pruning alone."""
    layers = {
        n: replace(p, prune_ratio=0.0) if bits else LayerPlan(None, p.prune_ratio)
        for n, p in plan.layers.items()
    }
    return CompressionPlan(layers, distill=None)
