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

Layers are rounded in the order they run, each on the inputs that the layers rounded before it
produce (GPTQ's sequential form), all in one forward pass over the calibration batches joined
into one: a layer is rounded in its forward pre-hook and then runs rounded. Batches that cannot be
joined (different shapes), models with a shared layer and passes whose activations would pass
``ONE_PASS_BYTES`` take one pass per layer instead, one batch in memory at a time.
Measured on the reference model, 50% pruned, after 60 float steps (test split, 10,000 images):
float 88.17%, 8-bit 88.31%, 4-bit nearest 86.94%, GPTQ on float inputs 87.84%, sequential GPTQ
88.06%.

Layers GPTQ does not cover keep nearest rounding: 7-bit and wider (near lossless already) and
grouped convolutions. At 7 bits GPTQ cost as much as at 4 and did not help: the converged
refnet, uniform 7-bit PTQ, validation 93.82% nearest against 93.72% GPTQ (fp32 93.80%), and
11 s of GPTQ per trial on an AVX2 EPYC core.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from autocompress.backend._quant import (
    Formats,
    WeightFormat,
    _scale,
    _spread,
    qmax,
    scale_groups,
    weight_format,
)
from autocompress.measure import checkpoint

DAMP = 0.01  # fraction of the mean diagonal added to H (GPTQ's default): keeps H invertible
BLOCK = 128  # columns per lazy batch update (GPTQ's default)
GPTQ_BELOW = 7  # bits; 7 is what 8-bit choices become where ORT's int8 saturates
# The most the one pass may hold in activations (largest activation x 3: a layer's input, its
# output and a skip branch), estimated from one sample: the reference model's pass (4 x 128
# Fashion-MNIST images) ~150 MB; torchvision's resnet18 at 224 x 224 (64 x 112 x 112 floats) on
# 4 x 256 images ~10 GB a worker. Past it, one batch at a time (resnet18: 6.6 s more of 22.7).
ONE_PASS_BYTES = 2 << 30


@torch.no_grad()
def gptq_round(
    model: nn.Module, formats: Formats, batches: Iterable[torch.Tensor], n_batches: int
) -> list[str]:
    """Round the weights of ``model``'s layers below 7 bits onto their grid with GPTQ, in place.

    ``model`` must already be in the form that gets quantized (BatchNorm folded). Returns the
    layers rounded this way, in the order they were rounded; the others are left for nearest
    rounding.
    """
    layers = {
        name: module
        for name, module in model.named_modules()
        if name in formats and _covered(module, weight_format(formats[name]).bits)
    }
    if not layers or n_batches <= 0:
        return []
    inputs = list(itertools.islice(iter(batches), n_batches))
    joined = _joined(inputs)
    if joined is None:  # batches of different shapes (a text loader's own padding)
        return _round_layer_by_layer(model, layers, formats, inputs)
    calls, largest = _probe(model, layers, joined[:1])
    if any(n > 1 for n in calls.values()):  # a shared layer: its first calls would run float
        return _round_layer_by_layer(model, layers, formats, inputs)
    if 3 * largest * len(joined) > ONE_PASS_BYTES:  # large inputs: one batch in memory at a time
        return _round_layer_by_layer(model, layers, formats, inputs)
    return _round_in_one_pass(
        model, {n: m for n, m in layers.items() if calls[n]}, formats, joined, len(inputs)
    )


def _joined(inputs: list[torch.Tensor]) -> torch.Tensor | None:
    """The calibration batches as one batch, or None where their shapes differ past the first
    dimension."""
    if not inputs or any(x.shape[1:] != inputs[0].shape[1:] for x in inputs):
        return None
    return inputs[0] if len(inputs) == 1 else torch.cat(inputs)


def _round_in_one_pass(
    model: nn.Module,
    layers: dict[str, nn.Module],
    formats: Formats,
    joined: torch.Tensor,
    chunks: int,
) -> list[str]:
    """Sequential GPTQ in one forward pass over all calibration batches at once, for layers that
    each run once per pass.

    Each layer is rounded in its own forward pre-hook and then runs with the rounded weights, so
    the layers after it see the rounded layers' outputs, as in the layer-by-layer form, at the
    cost of one pass instead of one per layer (that form re-runs the layers before each one: 6.6
    s of 22.7 s on resnet18). The pass holds all batches' activations at once
    (``finetune.gptq_batches`` x ``data.batch_size`` samples; :data:`ONE_PASS_BYTES` bounds it);
    the Hessian is summed a batch's worth of rows at a time, so the im2col copy stays one
    batch's size."""
    done: list[str] = []

    def hook(name: str, module: nn.Module) -> Callable[..., None]:
        def add(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if name in done:
                return  # ran again (the counting pass saw one call): rounded already
            total, rows = None, 0
            for part in args[0].detach().float().chunk(chunks):
                total, rows = _gram(module, part, total, rows)
            assert total is not None
            _round_layer(module, total / rows, formats[name])
            done.append(name)

        return add

    with _pre_hooks(model, [(m, hook(name, m)) for name, m in layers.items()]):
        model(joined)
    return done


def _probe(
    model: nn.Module, layers: dict[str, nn.Module], x: torch.Tensor
) -> tuple[dict[str, int], int]:
    """How many times each layer runs in one forward pass, and the bytes of the largest tensor
    any module takes or gives, on one sample ``x``. A layer that never runs is not rounded; a
    shared one (more than one call) sends the model to the layer-by-layer form, where every
    call of it runs rounded before the layers after it are; the largest tensor sizes the pass."""
    counts = dict.fromkeys(layers, 0)
    largest = _tensor_bytes(x)

    def count(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _args: tuple[torch.Tensor, ...]) -> None:
            counts[name] += 1

        return hook

    def size(_m: nn.Module, _args: tuple[object, ...], out: object) -> None:
        nonlocal largest
        largest = max(largest, _tensor_bytes(out))

    handles = [m.register_forward_hook(size) for m in model.modules()]
    try:
        with _pre_hooks(model, [(m, count(name)) for name, m in layers.items()]):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return counts, largest


def _tensor_bytes(value: object) -> int:
    """The bytes of the largest tensor in ``value`` (a tensor, or a tuple/list/dict of them)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.numel()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return max((_tensor_bytes(v) for v in value), default=0)
    return 0


@contextlib.contextmanager
def _pre_hooks(
    model: nn.Module, hooks: list[tuple[nn.Module, Callable[..., None]]]
) -> Iterator[None]:
    """``hooks`` as forward pre-hooks on their modules, with the model in eval mode; both undone
    on the way out, whatever happens."""
    handles = [module.register_forward_pre_hook(h) for module, h in hooks]
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)


def _round_layer_by_layer(
    model: nn.Module, layers: dict[str, nn.Module], formats: Formats, inputs: list[torch.Tensor]
) -> list[str]:
    """Sequential GPTQ for batches that cannot be joined, a model with a shared layer or a pass
    too large to hold at once: one pass over the batches per layer, in model order, each on the
    inputs that the layers rounded before it produce, one batch's activations at a time."""
    done = []
    for name, module in layers.items():
        hessian = _hessian(model, module, inputs)
        if hessian is None:  # never called on these inputs
            continue
        _round_layer(module, hessian, formats[name])
        done.append(name)
    return done


def _round_layer(module: nn.Module, hessian: torch.Tensor, spec: int | WeightFormat) -> None:
    checkpoint()  # a waiting timer goes first: the whole pass is one busy() section
    fmt, weight = weight_format(spec), module.weight
    assert isinstance(weight, torch.Tensor)
    weight.copy_(_gptq_layer(weight, hessian, fmt.bits, fmt.block_size))


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
        total, rows = _gram(module, args[0].detach().float(), total, rows)
        if stop_after is not None and calls == stop_after:
            raise _Captured

    with _pre_hooks(model, [(module, add)]):
        for i, x in enumerate(batches):
            calls = 0
            with contextlib.suppress(_Captured):
                model(x)
            if i == 0:
                stop_after = calls
    return None if total is None else total / rows


def _gram(
    module: nn.Module, x: torch.Tensor, total: torch.Tensor | None, rows: int
) -> tuple[torch.Tensor, int]:
    """``total`` and ``rows`` with the layer input ``x``'s ``X^T X`` and row count added."""
    cols = _columns(module, x)
    gram = cols.T @ cols
    return (gram if total is None else total + gram), rows + cols.shape[0]


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
    # columns as rows (contiguous), each clamped to its code range (a pinned peak: its code)
    low = torch.where(pinned, peak_codes, -float(limit)).T.contiguous()
    high = torch.where(pinned, peak_codes, float(limit)).T.contiguous()
    w, scale = w.T.contiguous(), scale.T.contiguous()
    codes = torch.zeros_like(w)
    for i1 in range(0, w.shape[0], BLOCK):
        i2 = min(i1 + BLOCK, w.shape[0])
        block, errors = w[i1:i2].clone(), torch.zeros_like(w[i1:i2])
        hb = hinv[i1:i2, i1:i2]
        diagonal = hb.diagonal().tolist()
        for i in range(i2 - i1):
            j = i1 + i
            col, s = block[i], scale[j]
            code = torch.clamp(torch.round(col / s), low[j], high[j])
            codes[j] = code
            err = (col - code * s) / diagonal[i]
            block[i:].addr_(hb[i, i:], err, alpha=-1)
            errors[i] = err
        w[i2:] -= hinv[i1:i2, i2:].T @ errors
    codes, scale = codes.T, scale.T
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
    """The upper Cholesky factor ``U`` of ``H^-1`` (``H^-1 = U^T U``, GPTQ's numerically stable
    form), from one factorization: with ``P`` the reversal, ``P H P = M M^T`` gives
    ``H^-1 = (P M^-1 P)^T (P M^-1 P)``, and ``P M^-1 P`` is upper triangular. One Cholesky and a
    triangular inverse instead of GPTQ's Cholesky, inverse from it, Cholesky again: at n = 4608
    (a 3x3 conv over 512 channels) 1.25 s against 1.73 on one Xeon core."""
    lower, info = torch.linalg.cholesky_ex(h.flip(0, 1))
    if int(info) != 0:
        return None
    return _lower_inverse(lower).flip(0, 1)


def _lower_inverse(m: torch.Tensor) -> torch.Tensor:
    """The inverse of lower-triangular ``m`` by halves, ``[[A, 0], [B, C]]^-1 = [[A^-1, 0],
    [-C^-1 B A^-1, C^-1]]``, so most of the work is matrix products (torch has no ``trtri``; a
    triangular solve against the identity does three times the work)."""
    n = m.shape[0]
    if n <= 256:
        return torch.linalg.solve_triangular(m, torch.eye(n, dtype=m.dtype), upper=False)
    k = n // 2
    a, c = _lower_inverse(m[:k, :k]), _lower_inverse(m[k:, k:])
    out = torch.zeros_like(m)
    out[:k, :k], out[k:, k:] = a, c
    out[k:, :k] = -(c @ (m[k:, :k] @ a))
    return out
