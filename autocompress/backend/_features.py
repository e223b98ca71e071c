"""Feature distillation on the channels a pruned student kept from its teacher.

Structured pruning removes channels but keeps the rest as they were, so every BatchNorm the
student still has is a subset of its teacher's, channel for channel. That gives distillation a
signal logits alone do not: each kept channel's pre-activation (the BatchNorm output, before
the ReLU, as in Heo et al. 2019, "A Comprehensive Overhaul of Feature Distillation") can be
pulled toward the teacher's value for the same channel, with no learned adapter in between.

Which teacher channel a student channel is: BatchNorm's affine pair (gamma, beta) is copied by
pruning and untouched by BN recalibration (which resets running statistics only), so at the
start of fine-tuning each student pair equals exactly one teacher pair. A BatchNorm whose pairs
do not all match (trained already, or not a pruned copy) is left out rather than guessed.

The loss per matched layer is the squared error relative to the teacher's mean square (so wide
and narrow layers, large and small activations weigh alike), averaged over the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
Norm = nn.BatchNorm1d | nn.BatchNorm2d | nn.BatchNorm3d


def kept_channels(student: nn.Module, teacher: nn.Module) -> dict[str, torch.Tensor]:
    """Per BatchNorm the student shares (by name) with the teacher: the teacher's index of each
    student channel. Layers whose channels cannot all be matched one to one are left out."""
    theirs = dict(teacher.named_modules())
    out = {}
    for name, norm in student.named_modules():
        other = theirs.get(name)
        if not isinstance(norm, _NORMS) or not isinstance(other, _NORMS) or not norm.affine:
            continue
        index = _match(norm, other)
        if index is not None:
            out[name] = index
    return out


def _match(student: Norm, teacher: Norm) -> torch.Tensor | None:
    theirs = _pairs(teacher)
    where = {pair: i for i, pair in enumerate(theirs)}
    index = [where.get(pair) for pair in _pairs(student)]
    if None in index or len(set(index)) != len(index) or len(where) != len(theirs):
        return None
    return torch.tensor(index, dtype=torch.long)


def _pairs(norm: Norm) -> list[tuple[float, float]]:
    """Each channel's (gamma, beta)."""
    return list(zip(norm.weight.tolist(), norm.bias.tolist(), strict=True))


class FeatureMatch:
    """Captures the matched BatchNorm outputs of a student and its teacher during a forward each,
    and scores how far the student's are from the teacher's kept channels."""

    def __init__(self, student: nn.Module, teacher: nn.Module) -> None:
        self.index = kept_channels(student, teacher)
        self._modules = (dict(student.named_modules()), dict(teacher.named_modules()))
        self._seen: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] = ({}, {})

    def __bool__(self) -> bool:
        return bool(self.index)

    @contextmanager
    def hooked(self) -> Iterator[None]:
        """Record the matched outputs of both models while the block runs."""
        handles = []
        for side, modules in enumerate(self._modules):
            seen = self._seen[side]
            for name in self.index:
                handles.append(modules[name].register_forward_hook(_store(seen, name)))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def loss(self) -> torch.Tensor:
        """Mean over matched layers of ||s - t[kept]||^2 / ||t[kept]||^2 (the last forwards)."""
        mine, theirs = self._seen
        terms = []
        for name, index in self.index.items():
            target = theirs[name].index_select(1, index)
            error = (mine[name] - target).pow(2).mean()
            terms.append(error / target.pow(2).mean().clamp_min(1e-8))
        return torch.stack(terms).mean()


def _store(seen: dict[str, torch.Tensor], name: str) -> Callable[..., None]:
    """A forward hook keeping ``name``'s output (with its graph: the student's loss needs it)."""

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        seen[name] = output

    return hook
