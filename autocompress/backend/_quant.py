"""Quantization numerics: k-bit symmetric per-channel weights and 8-bit affine activations.

The numerics are chosen so the deployable computes what was trained:

- weights of a k-bit layer live on the grid ``s_c * n`` with integer ``|n| <= 2**(k-1) - 1``
  and one scale ``s_c = max|w_c| / (2**(k-1) - 1)`` per output channel. Every such weight is
  exactly representable on the int8 grid with the same scale, so the int8 kernel runs the
  k-bit model's exact weights (the realizer hands these scales to the runtime, which would
  otherwise recompute them);
- activations entering a quantized layer are 8-bit unsigned affine, with ranges observed on data.

A Linear layer may run another scheme (``LayerPlan.scheme``): ``dynamic`` keeps the per-channel
k-bit weights and quantizes its input per batch at run time (ORT's DynamicQuantizeLinear: one
8-bit range over the whole tensor, so QAT quantizes the input the same way, no observer);
``nbits`` is weight-only and block-wise, the MatMulNBits format: one scale per block of
``block_size`` weights along the input dimension of each output row, symmetric codes with the
implicit zero point ``2**(bits-1)``. We write those codes into the deployable ourselves, so the
weights trained are the weights run.

During QAT the weight is a parametrization: the optimizer updates latent fp32 weights, the forward
pass sees their k-bit projection, and the gradient passes straight through (straight-through
estimator; the max-abs scale means nothing is clipped, so no clipping mask is needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.nn.utils import parametrize

from autocompress.backend._layers import resolve_layers
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan

EPS = 1e-12


QParams = tuple[float, int]  # (scale, zero point) of an 8-bit unsigned affine tensor


@dataclass(frozen=True)
class QuantizedWeight:
    """A layer's weight on its k-bit grid (``weight = scale[c] * q[c, ...]``), and, after QAT,
    the 8-bit ranges its input and fused output were trained with (None: calibrate later)."""

    q: torch.Tensor  # int8, values in [-(2**(bits-1) - 1), 2**(bits-1) - 1]
    scale: torch.Tensor  # float32, one per output channel ([out, blocks] for nbits)
    bits: int
    input_qparams: QParams | None = None
    output_qparams: QParams | None = None
    scheme: str | None = None  # None: static int8 QDQ; "dynamic"; "nbits" (LayerPlan.scheme)
    block_size: int | None = None  # nbits: weights per scale along the input dimension

    def dequantize(self) -> torch.Tensor:
        if self.block_size is not None:
            return self.q.float() * _per_weight(self.scale, self.block_size, self.q.shape[1])
        return self.q.float() * self.scale.view(-1, *([1] * (self.q.dim() - 1)))


@dataclass(frozen=True)
class WeightFormat:
    """A layer's weight format beyond its bits: a Linear scheme (``LayerPlan.scheme``)."""

    bits: int
    scheme: str | None = None
    block_size: int | None = None


Formats = Mapping[str, "int | WeightFormat"]  # layer -> bits (static) or its full format


def weight_format(spec: int | WeightFormat) -> WeightFormat:
    return spec if isinstance(spec, WeightFormat) else WeightFormat(int(spec))


def weight_formats(plan: CompressionPlan) -> dict[str, int | WeightFormat]:
    """The plan's quantized layers: bits for static int8 ones, a WeightFormat for the rest."""
    schemes = plan.layer_schemes
    return {
        name: bits if name not in schemes else WeightFormat(bits, *schemes[name])
        for name, bits in plan.quantized_layers.items()
    }


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def _per_weight(scale: torch.Tensor, block_size: int, columns: int) -> torch.Tensor:
    """Block scales ``[out, blocks]`` spread to one per weight ``[out, in]``."""
    return scale.repeat_interleave(block_size, dim=1)[:, :columns]


def _scale(w: torch.Tensor, bits: int, block_size: int | None) -> torch.Tensor:
    """max|w| / qmax per output channel, or per block of ``block_size`` inputs (zero-padded)."""
    if block_size is None:
        return (w.abs().reshape(w.shape[0], -1).amax(1) / qmax(bits)).clamp_min(EPS)
    return (scale_groups(w.abs(), block_size).amax(2) / qmax(bits)).clamp_min(EPS)


def scale_groups(w: torch.Tensor, block_size: int | None) -> torch.Tensor:
    """A 2-D weight ``[out, in]`` as its scale groups ``[out, groups, size]``: one group per row,
    or blocks of ``block_size`` inputs (the last zero-padded)."""
    size = w.shape[1] if block_size is None else block_size
    pad = -w.shape[1] % size
    return nn.functional.pad(w, (0, pad)).reshape(w.shape[0], -1, size)


def _spread(w: torch.Tensor, scale: torch.Tensor, block_size: int | None) -> torch.Tensor:
    if block_size is None:
        return scale.view(-1, *([1] * (w.dim() - 1)))
    return _per_weight(scale, block_size, w.shape[1])


def quantize_weight(
    w: torch.Tensor, bits: int, fmt: WeightFormat | None = None
) -> QuantizedWeight:
    """Symmetric quantization of ``w`` to ``bits`` bits, per output channel or, for nbits,
    per block of ``fmt.block_size`` inputs of each output row."""
    fmt = fmt or WeightFormat(bits)
    w = w.detach().float()
    scale = _scale(w, bits, fmt.block_size)
    q = torch.round(w / _spread(w, scale, fmt.block_size))
    q = torch.clamp(q, -qmax(bits), qmax(bits)).to(torch.int8)
    return QuantizedWeight(
        q=q, scale=scale, bits=bits, scheme=fmt.scheme, block_size=fmt.block_size
    )


def fake_quantize_weight(
    w: torch.Tensor, bits: int, block_size: int | None = None
) -> torch.Tensor:
    """``w`` projected onto its k-bit grid, with a straight-through gradient."""
    shaped = _spread(w, _scale(w.detach(), bits, block_size), block_size)
    projected = torch.clamp(torch.round(w / shaped), -qmax(bits), qmax(bits)) * shaped
    return w + (projected - w).detach()


def fake_quantize_dynamic(x: torch.Tensor) -> torch.Tensor:
    """ORT's DynamicQuantizeLinear on ``x``: uint8, one range over the whole tensor (including
    zero), zero point rounded; the straight-through gradient of fake quantization."""
    lo = torch.clamp(x.detach().min(), max=0.0)
    hi = torch.clamp(x.detach().max(), min=0.0)
    scale = torch.clamp((hi - lo) / 255.0, min=1e-8).float()
    zero_point = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
    return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)


class WeightFakeQuant(nn.Module):
    """Parametrization that shows the forward pass the k-bit weight."""

    def __init__(self, bits: int, block_size: int | None = None) -> None:
        super().__init__()
        self.bits = bits
        self.block_size = block_size

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(w, self.bits, self.block_size)


class ActivationFakeQuant(nn.Module):
    """8-bit unsigned affine fake quantization with a running min/max observer.

    The observer follows the data with an exponential moving average while ``observing`` is on
    (calibration and QAT); the range always includes zero so that zero is exact.
    """

    lo: torch.Tensor  # buffers, registered in __init__
    hi: torch.Tensor

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.observing = True
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._observe(x.detach())
        scale, zero_point = self.qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, 0, 255)

    def qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.clamp(self.lo, max=0.0)
        hi = torch.clamp(self.hi, min=0.0)
        scale = torch.clamp((hi - lo) / 255.0, min=1e-8).float()
        zero_point = torch.clamp(torch.round(-lo / scale), 0, 255).to(torch.int32)
        return scale, zero_point

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = x.min(), x.max()
        if torch.isinf(self.lo):
            self.lo.copy_(lo)
            self.hi.copy_(hi)
        else:
            self.lo.lerp_(lo, self.momentum)
            self.hi.lerp_(hi, self.momentum)


class QatHandle:
    """What :func:`attach_fake_quant` added, so it can be observed, frozen and removed."""

    def __init__(self, model: nn.Module, bits: Formats) -> None:
        self.model = model
        self.formats = {name: weight_format(spec) for name, spec in bits.items()}
        self.activations: dict[str, ActivationFakeQuant] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []

    def set_observing(self, on: bool) -> None:
        for fq in self.activations.values():
            fq.observing = on

    def activation_qparams(self, layer: str) -> tuple[QParams | None, QParams | None]:
        """The (input, output) ranges this layer's activations were observed with."""

        def read(key: str) -> QParams | None:
            fq = self.activations.get(key)
            if fq is None or torch.isinf(fq.lo):
                return None
            scale, zero_point = fq.qparams()
            return float(scale), int(zero_point)

        return read(layer), read(f"{layer}:out")

    def remove(self) -> dict[str, QuantizedWeight]:
        """Bake the k-bit weights into the model and return them with the trained activation
        ranges; drop the hooks."""
        for h in self._hooks:
            h.remove()
        out = {}
        for name, module in resolve_layers(self.model, self.formats).items():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            fmt = self.formats[name]
            qw = quantize_weight(module.weight, fmt.bits, fmt)
            inp, outp = self.activation_qparams(name)
            out[name] = replace(qw, input_qparams=inp, output_qparams=outp)
            with torch.no_grad():
                module.weight.copy_(qw.dequantize())
        return out


def attach_fake_quant(model: nn.Module, bits: Formats) -> QatHandle:
    """Make ``model`` simulate the int8 deployable for the named layers.

    Mirrors where ONNX Runtime's QDQ quantizer puts 8-bit activations: the input of every
    quantized layer, and its output after any BN/activation that the kernel fuses (so the
    tensors entering residual adds and pooling are quantized too). Weights are k-bit. A
    ``dynamic`` layer's input is quantized per batch instead; ``nbits`` is weight-only.
    """
    handle = QatHandle(model, bits)
    modules = dict(model.named_modules())
    static = {n: f for n, f in handle.formats.items() if f.scheme is None}
    ends = _fused_ends(model, static)
    for name, module in _resolve(model, handle.formats).items():
        fmt = handle.formats[name]
        weight_fq = WeightFakeQuant(fmt.bits, fmt.block_size)
        parametrize.register_parametrization(module, "weight", weight_fq)
        if fmt.scheme == "dynamic":
            handle._hooks.append(
                module.register_forward_pre_hook(
                    lambda _m, args: (fake_quantize_dynamic(args[0]),)
                )
            )
        if fmt.scheme is not None:
            continue
        fq_in = ActivationFakeQuant().to(module.weight.device)
        handle.activations[name] = fq_in
        handle._hooks.append(
            module.register_forward_pre_hook(lambda _m, args, fq=fq_in: (fq(args[0]),))
        )
        end = ends.get(name)
        if end is None:
            continue
        fq_out = ActivationFakeQuant().to(module.weight.device)
        handle.activations[f"{name}:out"] = fq_out
        handle._hooks.append(
            modules[end].register_forward_hook(lambda _m, _a, out, fq=fq_out: fq(out))
        )
    return handle


_FUSABLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity, nn.ReLU, nn.ReLU6, nn.Hardtanh)


def _fused_ends(model: nn.Module, names: Mapping[str, object]) -> dict[str, str]:
    """For each named layer, the last module of its conv -> (BN|Identity)* -> activation? chain.

    That module's output is the tensor the int8 kernel writes (quantized in the deployable).
    Found with torch.fx; a model fx cannot trace gets input quantization only.
    """
    import torch.fx as fx

    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # untraceable control flow: fall back to inputs only
        return {}
    modules = dict(model.named_modules())
    out = {}
    for node in graph.nodes:
        if node.op != "call_module" or node.target not in names:
            continue
        end = node
        while len(end.users) == 1:
            (user,) = end.users
            if user.op != "call_module" or not isinstance(modules.get(user.target), _FUSABLE):
                break
            end = user
            if isinstance(modules[user.target], (nn.ReLU, nn.ReLU6, nn.Hardtanh)):
                break
        out[str(node.target)] = str(end.target)
    return out


def _resolve(model: nn.Module, bits: Formats) -> dict[str, nn.Conv2d | nn.Linear]:
    """The named layers; a Linear scheme on a convolution is refused (no CPU kernel runs one)."""
    modules = resolve_layers(model, bits)
    for name, module in modules.items():
        scheme = weight_format(bits[name]).scheme
        if scheme is not None and not isinstance(module, nn.Linear):
            raise ConfigError(
                f"layer {name!r} is a {type(module).__name__}: scheme {scheme!r} is for Linear "
                "layers only; convolutions run static int8 (drop the scheme for this layer)"
            )
    return modules


@torch.no_grad()
def snap_weights(model: nn.Module, bits: Formats) -> dict[str, QuantizedWeight]:
    """Post-training: put each named layer's weight on its k-bit grid, in place."""
    out = {}
    for name, module in _resolve(model, bits).items():
        fmt = weight_format(bits[name])
        out[name] = quantize_weight(module.weight, fmt.bits, fmt)
        module.weight.copy_(out[name].dequantize())
    return out
