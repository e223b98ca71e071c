"""Quantization numerics: the k-bit grid, the straight-through estimator, activation ranges."""

from __future__ import annotations

import pytest
import torch

from autocompress.backend import ActivationFakeQuant, fake_quantize_weight, quantize_weight


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_kbit_grid_is_symmetric_per_channel(bits: int) -> None:
    w = torch.randn(16, 4, 3, 3)
    qw = quantize_weight(w, bits)
    qmax = 2 ** (bits - 1) - 1
    assert qw.q.dtype == torch.int8
    assert int(qw.q.abs().max()) == qmax
    assert torch.all(qw.q.reshape(16, -1).abs().amax(1) == qmax)  # every channel uses its range
    err = (qw.dequantize() - w).abs().reshape(16, -1).amax(1)
    assert torch.all(err <= qw.scale / 2 + 1e-6)


def test_fake_quant_equals_dequantized_grid_and_passes_gradient() -> None:
    w = torch.randn(8, 5, requires_grad=True)
    out = fake_quantize_weight(w, 4)
    assert torch.allclose(out, quantize_weight(w, 4).dequantize(), atol=1e-6)
    out.sum().backward()
    assert torch.allclose(w.grad, torch.ones_like(w))


def test_activation_fake_quant_is_8bit_affine_with_exact_zero() -> None:
    fq = ActivationFakeQuant()
    x = torch.linspace(-1.0, 3.0, 1000)
    y = fq(x)
    scale, zp = fq.qparams()
    levels = torch.unique(torch.round((y / scale) + zp))
    assert len(levels) <= 256
    assert fq(torch.zeros(3)).abs().max() == 0
