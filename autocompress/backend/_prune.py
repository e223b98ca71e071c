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
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from autocompress.backend._attention import PROJECTIONS, attention_layers, prune_heads
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

    Attention (the backend's ``Attention``, what ``decompose_attention`` makes of
    ``nn.MultiheadAttention``): q, k and v lose whole heads together, ``round(ratio * heads)``
    of them, at the smallest ratio the plan gives the three (the search space gives them one
    parameter, named after q: ``coupled_layers`` reports them as a group); ``out`` loses the
    matching inputs. An MLP's hidden units (fc1 out, fc2 in) are an ordinary group.

    Groups that run through a LayerNorm, an embedding or a free parameter are left whole: in a
    transformer that is the residual stream, whose width every block, LayerNorm, positional
    embedding and class token share. One ratio would bind them all (the smallest any of them
    gets), and Torch-Pruning would cut the free parameters along a guessed dimension (the last
    non-singleton one); heads and MLP widths are per block and carry most of the compute.

    Args:
        model: the model, pruned in place (channels removed, parameters shrink).
        ratios: layer name -> fraction of output channels (q/k/v: heads) to remove.
        example: an input batch for tracing the dependency graph (int64 token ids work).
        head: the classifier head's name; it is never pruned.
        round_to: kept channel counts are multiples of this (where the layer is wider).
        importance: channel scorer; magnitude (group L2 norm) by default. Heads are scored
            by magnitude.
    """
    if head is not None and ratios.get(head, 0.0) > 0:
        raise ConfigError(f"layer {head!r} is the classifier head and cannot be pruned")
    resolve_layers(model, ratios)  # one-line error for unknown names
    importance = importance or get_importance("magnitude")
    names = {m: n for n, m in model.named_modules()}
    before = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)}
    with torch.no_grad():
        for name, attention in attention_layers(model).items():
            ratio = min(ratios.get(f"{name}.{p}", 0.0) for p in PROJECTIONS)
            if ratio > 0:
                prune_heads(attention, ratio)
    graph = _trace(model, example)
    plans = []
    for group in graph.get_all_groups(
        ignored_layers=_ignored(model, head), root_module_types=COMPRESSIBLE
    ):
        members = _out_members(graph, group, names)
        ratio = min((ratios.get(n, 0.0) for n in members), default=0.0)
        if ratio > 0 and not _shared_stream(group):
            plans.append((group[0].dep.target.module, group[0].dep.handler, ratio))
    with torch.no_grad():
        for root, fn, ratio in plans:
            _prune_group(graph, (root, fn), ratio, round_to, importance, names)
    after = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, COMPRESSIBLE)}
    return {n: 1 - after[n] / before[n] for n in before if after.get(n, before[n]) != before[n]}


def _trace(model: nn.Module, example: torch.Tensor) -> Any:
    try:
        with warnings.catch_warnings():  # "unwrapped parameters": their groups are left whole
            warnings.simplefilter("ignore", UserWarning)
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # tracing failures come in many types from torch internals
        raise UnsupportedPlanError(f"cannot trace the model for pruning: {exc}") from None


def _ignored(model: nn.Module, head: str | None) -> list[nn.Module]:
    """The head, and every attention's q/k/v (their heads are pruned by ``prune_heads``:
    Torch-Pruning would cut single channels across heads)."""
    ignored = [m for n, m in model.named_modules() if n == head]
    for attention in attention_layers(model).values():
        ignored += [getattr(attention, p) for p in PROJECTIONS]
    return ignored


def _shared_stream(group: Any) -> bool:
    """Whether the group runs through a LayerNorm, an embedding or a free parameter."""
    shared = (nn.LayerNorm, nn.GroupNorm, nn.Embedding, nn.Parameter)
    return any(isinstance(dep.target.module, shared) for dep, _ in group)


def coupled_layers(
    model: nn.Module, example: torch.Tensor, *, head: str | None
) -> list[list[str]]:
    """Groups of layers whose output channels are coupled (each in module-definition order).

    Layers that write into one residual stream (or a conv and the depthwise conv it feeds) lose
    the same channels, so a search space gives each group one pruning parameter rather than one
    per layer: with one per layer the realized ratio is the smallest of them, and the sampler
    would spend trials on parameters that change nothing. Only groups of two or more layers are
    returned; the head's group is left out (it is never pruned). Each attention's q, k and v are
    a group (their ratio prunes whole heads of the three). Groups ``prune_channels`` leaves
    whole are not here: see :func:`unprunable_layers`. A model the dependency graph cannot
    trace has no known coupling beyond its attention: its trials then fail with the tracing
    error (and the search's dry run reports it before the first trial).
    """
    return _structure(model, example, head)[0]


def unprunable_layers(model: nn.Module, example: torch.Tensor, *, head: str | None) -> list[str]:
    """Layers whose output channels ``prune_channels`` never removes, whatever the plan says.

    Those writing into a stream that runs through a LayerNorm, an embedding or a free parameter
    (a transformer's residual width, shared by every block, the positional embedding and the cls
    token): a search space gives them no pruning parameter, so the sampler does not spend
    trials on a dimension that changes nothing and no plan claims a ratio it does not get.
    """
    return _structure(model, example, head)[1]


def _structure(
    model: nn.Module, example: torch.Tensor, head: str | None
) -> tuple[list[list[str]], list[str]]:
    """(coupled groups of two or more, layers in groups left whole), from one trace."""
    names = {m: n for n, m in model.named_modules()}
    order = {n: i for i, (n, m) in enumerate(model.named_modules())}
    heads = [[f"{n}.{p}" for p in PROJECTIONS] for n in attention_layers(model)]
    was_training = model.training
    groups: list[list[str]] = []
    frozen: set[str] = set()
    try:
        model.eval()
        graph = _trace(model, example)
        for g in graph.get_all_groups(
            ignored_layers=_ignored(model, head), root_module_types=COMPRESSIBLE
        ):
            members = sorted(set(_out_members(graph, g, names)), key=order.__getitem__)
            if _shared_stream(g):
                frozen.update(members)
            elif len(members) > 1:
                groups.append(members)
    except Exception:  # tracing failures come in many types from torch internals
        pass
    finally:
        model.train(was_training)
    return groups + heads, sorted(frozen, key=order.__getitem__)


def _prune_group(
    graph: Any,
    root: tuple[nn.Module, Callable[..., Any]],
    ratio: float,
    round_to: int,
    importance: Importance,
    names: Mapping[nn.Module, str],
) -> None:
    """Prune one coupled group: the same channels of every member, evenly per channel group.

    The group is fetched again here, not reused from ``get_all_groups``: Torch-Pruning maps a
    concatenation's inputs to the consumer's channels by offsets taken when a group is made, so
    a group made before an earlier concat input lost channels scores and prunes the consumer's
    channels at stale offsets (``IndexError: index 80 is out of bounds for dimension 0 with size
    80`` in the importance, or silently the wrong input channels). Issue #19.
    """
    module, fn = root
    channels = graph.get_out_channels(module)
    group = graph.get_pruning_group(module, fn, list(range(channels)))
    split = _channel_split(graph, group, names)
    per_split = channels // split
    unit = max(1, round_to // math.gcd(round_to, split))  # kept total stays a multiple of round_to
    keep = _kept_channels(per_split, ratio, unit)
    if keep >= per_split:
        return
    scores = importance(group)
    if scores is None or len(scores) != channels:
        raise UnsupportedPlanError(
            f"cannot score the channels of layer {names.get(module, type(module).__name__)!r}; "
            "leave it out of pruning (prune ratio 0 for it in the search space)"
        )
    # the same local channels in every split: a grouped conv keeps each group's inputs together
    local = torch.argsort(scores.view(split, per_split).mean(0))[: per_split - keep].tolist()
    drop = sorted(i + g * per_split for g in range(split) for i in local)
    pruning = graph.get_pruning_group(module, fn, drop)
    if not graph.check_pruning_group(pruning):
        raise UnsupportedPlanError("pruning would remove every channel of a layer")
    pruning.prune()


def _channel_split(graph: Any, group: Any, names: Mapping[nn.Module, str]) -> int:
    """How many equal parts the group's channels fall into (grouped convs among its members).

    A grouped conv (``groups`` > 1, not depthwise) computes output group g from input group g
    only, so it must lose the same number of channels in every group, and on its input side the
    same local positions (Torch-Pruning slices a grouped conv's weight by the first group's kept
    positions). Pruning the same local channels in each of ``lcm(groups)`` parts gives both.
    Depthwise convs (groups == in == out) lose their producer's channels one for one and need
    no split. A grouped conv fed by part of a concatenation sees only some of its groups pruned
    by this group: that cannot be kept even, so it is refused.
    """
    split = 1
    for dep, idxs in group:
        conv = dep.target.module
        if not isinstance(conv, nn.Conv2d) or conv.groups == 1 or _depthwise(conv):
            continue
        out = graph.is_out_channel_pruning_fn(dep.handler)
        width = conv.out_channels if out else conv.in_channels
        if len(idxs) != width:
            raise UnsupportedPlanError(
                f"layer {names.get(conv)!r} is a grouped convolution (groups={conv.groups}) fed "
                f"by part of a concatenation, so its groups cannot lose channels evenly; leave "
                f"the layers feeding it out of pruning (prune ratio 0 for them)"
            )
        split = math.lcm(split, conv.groups)
    channels = graph.get_out_channels(group[0].dep.target.module)
    if channels % split:
        raise UnsupportedPlanError(
            f"{channels} channels of layer {names.get(group[0].dep.target.module)!r} do not "
            f"split into the {split} equal parts its grouped convolutions need; leave it out of "
            "pruning (prune ratio 0 for it)"
        )
    return split


def _kept_channels(channels: int, ratio: float, round_to: int) -> int:
    """Channels kept: ``channels * (1 - ratio)`` rounded to the nearest multiple of round_to."""
    target = channels * (1.0 - ratio)
    if channels <= round_to:
        return max(1, math.ceil(target))
    kept = max(round_to, round(target / round_to) * round_to)
    return min(kept, channels)


def _depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups == conv.in_channels == conv.out_channels


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
