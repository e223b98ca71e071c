"""k-bit packing round-trips exactly, and the size objective counts what is stored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autocompress.backend import pack_bits, packed_size, quantize_weight, read_packed, unpack_bits
from autocompress.backend._pack import write_packed


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_round_trip_every_width(bits: int) -> None:
    rng = np.random.default_rng(bits)
    lim = 2 ** (bits - 1)
    q = rng.integers(-lim, lim, size=1001).astype(np.int8)
    data = pack_bits(q, bits)
    assert len(data) == (q.size * bits + 7) // 8
    assert np.array_equal(unpack_bits(data, bits, q.size), q)


def test_pack_refuses_values_out_of_range() -> None:
    with pytest.raises(ValueError):
        pack_bits(np.array([8], dtype=np.int8), 4)


def test_packed_size_and_artifact_agree() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 36, 10)
    )
    quantized = {"0": quantize_weight(model[0].weight, 4)}
    with torch.no_grad():
        model[0].weight.copy_(quantized["0"].dequantize())
    size = packed_size(model, quantized)
    expected = (72 * 4 + 7) // 8 + 4 * 8 + 4 * (8 + 8 * 36 * 10 + 10)
    assert size == expected
    restored = read_packed(write_packed(model, quantized))
    for name, tensor in model.state_dict().items():
        assert np.array_equal(restored[name], tensor.numpy()), name


def test_nbits_block_scales_pack_and_unpack_exactly() -> None:
    """An nbits layer stores one scale per block of inputs; both readers spread them back."""
    from torch import nn

    from autocompress.backend import WeightFormat, snap_weights
    from autocompress.deploy.unpack import unpack

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 6), nn.ReLU(), nn.Linear(6, 3))
    quantized = snap_weights(model, {"0": WeightFormat(4, "nbits", 16), "2": 8})
    blob = write_packed(model, quantized)
    for weights in (read_packed(blob), unpack(blob)):
        assert np.array_equal(weights["0.weight"], model[0].weight.detach().numpy())
        assert np.array_equal(weights["2.weight"], model[2].weight.detach().numpy())
    codes = unpack(blob, codes=True)
    assert np.array_equal(codes["0.weight.codes"], quantized["0"].q.numpy())
    assert codes["0.weight.scale"].shape == (6 * 3,)  # 40 inputs: 3 blocks of 16 per row
