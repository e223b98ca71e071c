"""Which layers a plan can name: the model's convolutions and linear layers, in forward order.

Plans and search spaces address layers by fully qualified module name; this module is where those
names are resolved to modules (and where a name that matches nothing is caught). The classifier
head is the last conv/linear layer called in a forward pass: it may be quantized, never pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from autocompress.errors import ConfigError

COMPRESSIBLE = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerInfo:
    """One compressible layer as seen in a forward pass."""

    name: str
    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    groups: int
    params: int


def layer_inventory(model: nn.Module, example: torch.Tensor) -> list[LayerInfo]:
    """The model's conv/linear layers in the order a forward pass calls them."""
    names = {m: n for n, m in model.named_modules()}
    order: list[nn.Module] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, _: order.append(mod))
        for m in model.modules()
        if isinstance(m, COMPRESSIBLE)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    seen: dict[nn.Module, None] = dict.fromkeys(order)
    return [_info(names[m], m) for m in seen]


def head_name(layers: list[LayerInfo]) -> str | None:
    return layers[-1].name if layers else None


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Conv2d | nn.Linear]:
    """Module objects for plan names; a one-line error for a name the model does not have."""
    modules = dict(model.named_modules())
    out: dict[str, nn.Conv2d | nn.Linear] = {}
    for name in names:
        module = modules.get(name)
        if module is None or not isinstance(module, COMPRESSIBLE):
            known = [n for n, m in modules.items() if isinstance(m, COMPRESSIBLE)]
            raise ConfigError(
                f"plan names layer {name!r}, which is not a conv/linear layer of this model; "
                f"layers are {known[:6]}{'...' if len(known) > 6 else ''}"
            )
        out[name] = module
    return out


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def channel_counts(model: nn.Module, names: Iterable[str]) -> Mapping[str, int]:
    """Output channels per named layer (after pruning, the realized widths)."""
    modules = resolve_layers(model, names)
    return {n: _info(n, m).out_channels for n, m in modules.items()}


FOLDED = (nn.BatchNorm1d, nn.BatchNorm2d)  # folded into the conv before them at deployment


def uncovered_parameters(model: nn.Module, example: torch.Tensor) -> list[tuple[str, int, str]]:
    """Parameters no plan covers: (name, element count, why), for "left out (stays fp32)".

    A plan quantizes and prunes the conv/linear layers a forward pass calls; everything else
    ships in fp32 and counts at full size. Listing it up front says how much of the model the
    search cannot touch (before #19, 46% of a tiny ViT: nn.MultiheadAttention's projections).
    BatchNorm is not listed: it is folded into the conv before it.
    """
    called = {layer.name for layer in layer_inventory(model, example)}
    out = []
    for module_name, module in model.named_modules():
        if module_name in called or isinstance(module, FOLDED):
            continue
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            out.append((full, p.numel(), _why_uncovered(module)))
    return out


def _why_uncovered(module: nn.Module) -> str:
    if isinstance(module, nn.MultiheadAttention):
        return "packed attention projection (decompose_attention makes it Linear layers)"
    if isinstance(module, COMPRESSIBLE):
        return "a conv/linear layer never called as a module in the forward pass"
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return "normalisation"
    if isinstance(module, nn.Embedding):
        return "embedding table"
    if type(module).__module__.startswith("torch.nn"):
        return f"{type(module).__name__} is not a conv/linear layer"
    return f"free parameter of {type(module).__name__} (e.g. positional embedding, class token)"


def _info(name: str, m: nn.Module) -> LayerInfo:
    if isinstance(m, nn.Conv2d):
        return LayerInfo(name, "conv", m.in_channels, m.out_channels, m.groups, m.weight.numel())
    assert isinstance(m, nn.Linear)
    return LayerInfo(name, "linear", m.in_features, m.out_features, 1, m.weight.numel())
