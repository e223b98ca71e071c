"""Per-layer sensitivity, for warm-starting a search (``search.warm_start: [sensitivity]``).

For each bits parameter of the space, quantize only its layers to their lowest allowed bit width
(post-training, weights only, everything else fp32) and measure the validation accuracy lost.
That costs one evaluation per parameter, seconds in all. The driver then enqueues a few plans
that give low bits to the least sensitive layers first (25%, 50%, 75% of the parameters) and 8
bits to the rest, so the sampler starts next to the accuracy/size knee instead of at random.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch

from autocompress.backend import fold_batchnorm, snap_weights
from autocompress.data import model_input
from autocompress.measure import top1_accuracy
from autocompress.study._space import BoundSpace

EVAL_IMAGES = 2000


def layer_sensitivity(
    model: torch.nn.Module, space: BoundSpace, val: Callable[[], Iterable[Any]]
) -> dict[str, float]:
    """bits parameter -> accuracy drop (fraction) when its layers alone take their lowest bits."""
    base = copy.deepcopy(model).eval()
    fold_batchnorm(base)
    reference = _accuracy(base, val)
    drops = {}
    for param, layers in _bits_params(space).items():
        lowest = _lowest_bits(space, layers[0])
        if lowest is None:
            continue
        trial = copy.deepcopy(base)
        snap_weights(trial, dict.fromkeys(layers, lowest))
        drops[param] = reference - _accuracy(trial, val)
    return drops


def warm_start_params(space: BoundSpace, drops: dict[str, float]) -> list[dict[str, Any]]:
    """Bits for the least sensitive 25/50/75% of parameters at their lowest width, the rest at 8
    (or their widest integer choice); pruning and distillation are left to the sampler."""
    order = sorted(drops, key=lambda p: drops[p])
    groups = _bits_params(space)
    out = []
    for share in (0.25, 0.5, 0.75):
        low = set(order[: max(1, round(share * len(order)))])
        params: dict[str, Any] = {}
        for param, layers in groups.items():
            allowed = space.rule_of(layers[0]).bit_choices
            choices = [b for b in allowed if isinstance(b, int)]
            if not choices or len(allowed) < 2:
                continue  # a fixed parameter is not a parameter of the study
            params[param] = min(choices) if param in low else (8 if 8 in choices else max(choices))
        params = space.encode(params)
        if params and params not in out:
            out.append(params)
    return out


def _bits_params(space: BoundSpace) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in space.slots:
        out.setdefault(slot.bits_param, []).append(slot.layer)
    return out


def _lowest_bits(space: BoundSpace, layer: str) -> int | None:
    ints = [b for b in space.rule_of(layer).bit_choices if isinstance(b, int)]
    return min(ints) if ints else None


@torch.no_grad()
def _accuracy(model: torch.nn.Module, val: Callable[[], Iterable[Any]]) -> float:
    return top1_accuracy(lambda x: model(model_input(x)), val(), limit=EVAL_IMAGES)
