"""Structured pruning that physically removes channels (the only module importing torch_pruning).

Torch-Pruning's dependency graph finds the *coupled* channels: the outputs of every layer that
writes into one residual stream, a depthwise conv and the conv feeding it, a linear layer and the
next one's inputs. Such a group loses the same channels everywhere, so it takes one ratio; we use
the *smallest* ratio the plan gives any layer of the group (a layer is never pruned more than its
plan asks; a layer absent from the plan counts as 0). The realized per-layer ratios are returned so
the trial records what really happened.

Kept apart, as in Torch-Pruning: coupling (the graph), importance (a pluggable criterion, magnitude
by default), mechanics (``group.prune``) and the per-group channel count (ratio, rounded to a
multiple of ``round_to`` so kernels stay vectorised).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from autocompress.backend._layers import COMPRESSIBLE, resolve_layers
from autocompress.errors import ConfigError, UnsupportedPlanError

Importance = Callable[[Any], torch.Tensor]

IMPORTANCES: dict[str, Callable[[], Importance]] = {
    "magnitude": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "random": lambda: tp.importance.RandomImportance(),
}


def get_importance(name: str) -> Importance:
    if name not in IMPORTANCES:
        raise ConfigError(
            f"prune importance {name!r} is unknown; use one of {sorted(IMPORTANCES)}"
        )
    return IMPORTANCES[name]()


def prune_channels(
    model: nn.Module,
    ratios: Mapping[str, float],
    example: torch.Tensor,
    *,
    head: str | None,
    round_to: int = 8,
    importance: Importance | None = None,
) -> dict[str, float]:
    """Remove output channels in place; return the realized ratio of every pruned layer.

    Args:
        model: the model, pruned in place (channels removed, parameters shrink).
        ratios: layer name -> fraction of output channels to remove.
        example: an input batch for tracing the dependency graph.
        head: the classifier head's name; it is never pruned.
        round_to: kept channel counts are multiples of this (where the layer is wider).
        importance: channel scorer; magnitude (group L2 norm) by default.
    """
    if head is not None and ratios.get(head, 0.0) > 0:
        raise ConfigError(f"layer {head!r} is the classifier head and cannot be pruned")
    resolve_layers(model, ratios)  # one-line error for unknown names
    importance = importance or get_importance("magnitude")
    names = {m: n for n, m in model.named_modules()}
    ignored = [m for n, m in model.named_modules() if n == head]
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing failures come in many types from torch internals
        raise UnsupportedPlanError(f"cannot trace the model for pruning: {exc}") from None
    before = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)}
    plans = []
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=COMPRESSIBLE):
        members = _out_members(graph, group, names)
        ratio = min((ratios.get(n, 0.0) for n in members), default=0.0)
        if ratio > 0:
            plans.append((group, ratio))
    with torch.no_grad():
        for group, ratio in plans:
            _prune_group(graph, group, ratio, round_to, importance)
    after = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)}
    return {n: 1 - after[n] / before[n] for n in before if after.get(n, before[n]) != before[n]}


def coupled_layers(
    model: nn.Module, example: torch.Tensor, *, head: str | None
) -> list[list[str]]:
    """Groups of layers whose output channels are coupled (each in module-definition order).

    Layers that write into one residual stream (or a conv and the depthwise conv it feeds) lose
    the same channels, so a search space gives each group one pruning parameter rather than one
    per layer: with one per layer the realized ratio is the smallest of them, and the sampler
    would spend trials on parameters that change nothing. Only groups of two or more layers are
    returned; the head's group is left out (it is never pruned). A model the dependency graph
    cannot trace has no known coupling: ``[]`` (its trials then fail with the tracing error).
    """
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, (n, m) in enumerate(model.named_modules())}
    ignored = [m for n, m in model.named_modules() if n == head]
    was_training = model.training
    try:
        model.eval()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
        groups = graph.get_all_groups(ignored_layers=ignored, root_module_types=COMPRESSIBLE)
        out = [sorted(set(_out_members(graph, g, names)), key=order.__getitem__) for g in groups]
    except Exception:  # tracing failures come in many types from torch internals
        return []
    finally:
        model.train(was_training)
    return [g for g in out if len(g) > 1]


def _prune_group(
    graph: Any, group: Any, ratio: float, round_to: int, importance: Importance
) -> None:
    root = group[0].dep.target.module
    fn = group[0].dep.handler
    channels = graph.get_out_channels(root)
    keep = _kept_channels(channels, ratio, round_to)
    if keep >= channels:
        return
    scores = importance(group)
    if scores is None or len(scores) != channels:
        raise UnsupportedPlanError(
            f"cannot score channels of layer {type(root).__name__} (grouped channels?)"
        )
    drop = torch.argsort(scores)[: channels - keep].tolist()
    pruning = graph.get_pruning_group(root, fn, sorted(drop))
    if not graph.check_pruning_group(pruning):
        raise UnsupportedPlanError("pruning would remove every channel of a layer")
    pruning.prune()


def _kept_channels(channels: int, ratio: float, round_to: int) -> int:
    """Channels kept: ``channels * (1 - ratio)`` rounded to the nearest multiple of round_to."""
    target = channels * (1.0 - ratio)
    if channels <= round_to:
        return max(1, math.ceil(target))
    kept = max(round_to, round(target / round_to) * round_to)
    return min(kept, channels)


def _out_members(graph: Any, group: Any, names: Mapping[nn.Module, str]) -> list[str]:
    """Names of the compressible layers whose OUTPUT channels this group removes."""
    out = []
    for item in group:
        module = item.dep.target.module
        if isinstance(module, COMPRESSIBLE) and graph.is_out_channel_pruning_fn(item.dep.handler):
            out.append(names[module])
    return out


def _out_channels(m: nn.Conv2d | nn.Linear) -> int:
    return m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
