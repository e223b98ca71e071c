"""Quantization numerics: k-bit symmetric per-channel weights and 8-bit affine activations.

The numerics are chosen so the deployable computes what was trained:

- weights of a k-bit layer live on the grid ``s_c * n`` with integer ``|n| <= 2**(k-1) - 1``
  and one scale ``s_c = max|w_c| / (2**(k-1) - 1)`` per output channel. Every such weight is
  exactly representable on the int8 grid with the same scale, so the int8 kernel runs the
  k-bit model's exact weights (the realizer hands these scales to the runtime, which would
  otherwise recompute them);
- activations entering a quantized layer are 8-bit unsigned affine, with ranges observed on data.

During QAT the weight is a parametrization: the optimizer updates latent fp32 weights, the forward
pass sees their k-bit projection, and the gradient passes straight through (straight-through
estimator; the max-abs scale means nothing is clipped, so no clipping mask is needed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from autocompress.backend._layers import resolve_layers

EPS = 1e-12


QParams = tuple[float, int]  # (scale, zero point) of an 8-bit unsigned affine tensor


@dataclass(frozen=True)
class QuantizedWeight:
    """A layer's weight on its k-bit grid (``weight = scale[c] * q[c, ...]``), and, after QAT,
    the 8-bit ranges its input and fused output were trained with (None: calibrate later)."""

    q: torch.Tensor  # int8, values in [-(2**(bits-1) - 1), 2**(bits-1) - 1]
    scale: torch.Tensor  # float32, one per output channel
    bits: int
    input_qparams: QParams | None = None
    output_qparams: QParams | None = None

    def dequantize(self) -> torch.Tensor:
        return self.q.float() * self.scale.view(-1, *([1] * (self.q.dim() - 1)))


def qmax(bits: int) -> int:
    return 2 ** (bits - 1) - 1


def quantize_weight(w: torch.Tensor, bits: int) -> QuantizedWeight:
    """Symmetric per-output-channel quantization of ``w`` to ``bits`` bits."""
    w = w.detach().float()
    scale = (w.abs().reshape(w.shape[0], -1).amax(1) / qmax(bits)).clamp_min(EPS)
    shaped = scale.view(-1, *([1] * (w.dim() - 1)))
    q = torch.clamp(torch.round(w / shaped), -qmax(bits), qmax(bits)).to(torch.int8)
    return QuantizedWeight(q=q, scale=scale, bits=bits)


def fake_quantize_weight(w: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` projected onto its k-bit grid, with a straight-through gradient."""
    scale = (w.detach().abs().reshape(w.shape[0], -1).amax(1) / qmax(bits)).clamp_min(EPS)
    shaped = scale.view(-1, *([1] * (w.dim() - 1)))
    projected = torch.clamp(torch.round(w / shaped), -qmax(bits), qmax(bits)) * shaped
    return w + (projected - w).detach()


class WeightFakeQuant(nn.Module):
    """Parametrization that shows the forward pass the k-bit weight."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(w, self.bits)


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

    def __init__(self, model: nn.Module, bits: Mapping[str, int]) -> None:
        self.model = model
        self.bits = dict(bits)
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
        for name, module in resolve_layers(self.model, self.bits).items():
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            qw = quantize_weight(module.weight, self.bits[name])
            inp, outp = self.activation_qparams(name)
            out[name] = QuantizedWeight(qw.q, qw.scale, qw.bits, inp, outp)
            with torch.no_grad():
                module.weight.copy_(qw.dequantize())
        return out


def attach_fake_quant(model: nn.Module, bits: Mapping[str, int]) -> QatHandle:
    """Make ``model`` simulate the int8 deployable for the named layers.

    Mirrors where ONNX Runtime's QDQ quantizer puts 8-bit activations: the input of every
    quantized layer, and its output after any BN/activation that the kernel fuses (so the
    tensors entering residual adds and pooling are quantized too). Weights are k-bit.
    """
    handle = QatHandle(model, bits)
    modules = dict(model.named_modules())
    ends = _fused_ends(model, bits)
    for name, module in resolve_layers(model, bits).items():
        parametrize.register_parametrization(module, "weight", WeightFakeQuant(bits[name]))
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


def _fused_ends(model: nn.Module, names: Mapping[str, int]) -> dict[str, str]:
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


@torch.no_grad()
def snap_weights(model: nn.Module, bits: Mapping[str, int]) -> dict[str, QuantizedWeight]:
    """Post-training: put each named layer's weight on its k-bit grid, in place."""
    out = {}
    for name, module in resolve_layers(model, bits).items():
        out[name] = quantize_weight(module.weight, bits[name])
        module.weight.copy_(out[name].dequantize())
    return out
