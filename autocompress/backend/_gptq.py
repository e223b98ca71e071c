"""GPTQ rounding: put sub-8-bit weights on their grid with the error compensated, not just rounded.

Rounding each weight to the nearest grid point (what :func:`snap_weights` does) is near lossless
at 8 bits and costly below: on the reference model a 4-bit, 50%-pruned plan lost ~0.7 pt more
than its 8-bit twin after a 60-step budget (docs/benchmarks/recipe-fmnist-60.md), and the 15 QAT
steps at the end of that budget did not undo the rounding error. GPTQ (Frantar et al., 2023)
quantizes a layer one input column at a time and spreads each column's rounding error over the
columns not yet quantized, weighted by the inverse Hessian ``H = X^T X`` of the layer's inputs
``X``: the layer's *output* on real inputs stays close to the float one, which is what accuracy
depends on.

Only the rounding changes, never the format: the grid is the one :mod:`_quant` defines (one
max-abs scale per output channel, or per block for ``nbits``), computed from the float weights
before GPTQ runs. The result is written back into the layer as float values *on that grid*, so
everything downstream is unchanged: :func:`snap_weights` (and QAT's fake quantization) reproduce
exactly these codes (each scale group keeps its largest weight at ``±qmax``, so recomputing the
max-abs scale gives the same scale), and the deployable runs what was trained.

Layers are rounded in model order, each on the inputs that the layers rounded before it produce
(GPTQ's sequential form: one pass over a few calibration batches per layer). Measured on the
reference model, 50% pruned, after 60 float steps (test split, 10,000 images): float 88.17%,
8-bit 88.31%, 4-bit nearest 86.94%, GPTQ on float inputs 87.84%, sequential GPTQ 88.06%.

Layers GPTQ does not cover keep nearest rounding: 7-bit and wider (near lossless already) and
grouped convolutions. At 7 bits GPTQ cost as much as at 4 and did not help: the converged
refnet, uniform 7-bit PTQ, validation 93.82% nearest against 93.72% GPTQ (fp32 93.80%), and
11 s of GPTQ per trial on an AVX2 EPYC core.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.backend._quant import (
    Formats,
    _scale,
    _spread,
    qmax,
    scale_groups,
    weight_format,
)

DAMP = 0.01  # fraction of the mean diagonal added to H (GPTQ's default): keeps H invertible
BLOCK = 128  # columns per lazy batch update (GPTQ's default)
GPTQ_BELOW = 7  # bits; 7 is what 8-bit choices become where ORT's int8 saturates


@torch.no_grad()
def gptq_round(
    model: nn.Module, formats: Formats, batches: Iterable[torch.Tensor], n_batches: int
) -> list[str]:
    """Round the weights of ``model``'s layers below 7 bits onto their grid with GPTQ, in place.

    ``model`` must already be in the form that gets quantized (BatchNorm folded). Returns the
    layers rounded this way; the others are left for nearest rounding.
    """
    layers = {
        name: module
        for name, module in model.named_modules()
        if name in formats and _covered(module, weight_format(formats[name]).bits)
    }
    if not layers or n_batches <= 0:
        return []
    inputs = list(itertools.islice(iter(batches), n_batches))
    done = []
    for name, module in layers.items():  # in model order: inputs from the layers rounded before
        hessian = _hessian(model, module, inputs)
        if hessian is None:  # never called on these inputs
            continue
        fmt = weight_format(formats[name])
        module.weight.copy_(_gptq_layer(module.weight, hessian, fmt.bits, fmt.block_size))
        done.append(name)
    return done


def _covered(module: nn.Module, bits: int) -> bool:
    if bits >= GPTQ_BELOW:
        return False
    if isinstance(module, nn.Conv2d):
        return module.groups == 1
    return isinstance(module, nn.Linear)


class _Captured(BaseException):
    """Raised by the hook once a batch has given the layer all its inputs: the rest of the
    forward pass is not needed. A ``BaseException``: a model's ``except Exception`` lets it by."""


def _hessian(
    model: nn.Module, module: nn.Module, batches: list[torch.Tensor]
) -> torch.Tensor | None:
    """``X^T X / n`` of ``module``'s inputs ``X`` on ``batches`` (im2col rows for a conv).

    The first batch runs the whole model and counts the layer's calls; later batches stop the
    forward pass right after the last of them (the layers after it cost as much again: ~25% of
    GPTQ's time on the reference model), so the figure is the full passes' exactly."""
    total: torch.Tensor | None = None
    rows = calls = 0
    stop_after: int | None = None

    def add(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        nonlocal total, rows, calls
        calls += 1
        if stop_after is not None and calls > stop_after:
            return  # a model that swallowed the stop ran on: these inputs were counted once
        x = _columns(module, args[0].detach().float())
        total = x.T @ x if total is None else total + x.T @ x
        rows += x.shape[0]
        if stop_after is not None and calls == stop_after:
            raise _Captured

    handle = module.register_forward_pre_hook(add)
    was_training = model.training
    model.eval()
    try:
        for i, x in enumerate(batches):
            calls = 0
            with contextlib.suppress(_Captured):
                model(x)
            if i == 0:
                stop_after = calls
    finally:
        handle.remove()
        model.train(was_training)
    return None if total is None else total / rows


def _columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows of what each output multiplies: [rows, in_features]."""
    if isinstance(module, nn.Conv2d):
        padding = module.padding
        if isinstance(padding, str):  # "valid" or "same" (stride 1)
            padding = _same_padding(module) if padding == "same" else (0, 0)
        if module.padding_mode != "zeros":  # reflect, replicate, circular: pad as the conv does
            ph, pw = padding
            x, padding = F.pad(x, (pw, pw, ph, ph), mode=module.padding_mode), (0, 0)
        cols = F.unfold(
            x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride
        )  # [batch, in * kh * kw, positions]
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def _same_padding(module: nn.Conv2d) -> tuple[int, int]:
    k, d = module.kernel_size, module.dilation
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def _gptq_layer(
    weight: torch.Tensor, hessian: torch.Tensor, bits: int, block_size: int | None
) -> torch.Tensor:
    """GPTQ on one weight (rows = output channels), columns in descending Hessian order.

    The grid is fixed before rounding (max-abs scales of the float weight), and each scale
    group's largest weight keeps its code ``±qmax``: the scale recomputed from the rounded
    weight is then the one they were rounded with, so rounding them again (QAT's forward, the
    snap before realizing) changes nothing. Like any other rounding error, the pinned weight's is
    compensated by the columns after it. Inputs that are zero on every calibration batch get no
    compensation and keep nearest rounding (they may not be zero on other data).
    """
    shape = weight.shape
    w = weight.detach().float().reshape(shape[0], -1).clone()
    limit = qmax(bits)
    scale = _spread(w, _scale(w, bits, block_size), block_size).expand_as(w).clone()
    pinned = _group_peaks(w, block_size)
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    order = torch.argsort(torch.diag(h), descending=True)
    w, scale, pinned, h = w[:, order], scale[:, order], pinned[:, order], h[order][:, order]
    peak_codes = torch.where(w < 0, -1.0, 1.0) * limit
    h += DAMP * torch.mean(torch.diag(h)) * torch.eye(h.shape[0])
    hinv = _upper_inverse_cholesky(h)
    if hinv is None:  # not positive definite even damped: nearest rounding
        return weight
    codes = torch.zeros_like(w)
    for i1 in range(0, w.shape[1], BLOCK):
        i2 = min(i1 + BLOCK, w.shape[1])
        block, errors = w[:, i1:i2].clone(), torch.zeros_like(w[:, i1:i2])
        hb = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            col, s = block[:, i], scale[:, j]
            code = torch.clamp(torch.round(col / s), -limit, limit)
            code = torch.where(pinned[:, j], peak_codes[:, j], code)
            codes[:, j] = code
            err = (col - code * s) / hb[i, i]
            block[:, i:] -= err.unsqueeze(1) @ hb[i, i:].unsqueeze(0)
            errors[:, i] = err
        w[:, i2:] -= errors @ hinv[i1:i2, i2:]
    inverse = torch.argsort(order)
    return (codes[:, inverse] * scale[:, inverse]).reshape(shape).to(weight.dtype)


def _group_peaks(w: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """A mask of each scale group's largest weight by magnitude (groups that are all zero have
    none): the weight that sets the group's max-abs scale."""
    rows, cols = w.shape
    grouped = scale_groups(w.abs(), block_size)
    peaks = torch.zeros_like(grouped, dtype=torch.bool)
    top = grouped.argmax(2, keepdim=True)
    peaks.scatter_(2, top, grouped.gather(2, top) > 0)
    return peaks.reshape(rows, -1)[:, :cols]


def _upper_inverse_cholesky(h: torch.Tensor) -> torch.Tensor | None:
    """The upper Cholesky factor of ``H^-1`` (GPTQ's numerically stable form)."""
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        return None
    return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
