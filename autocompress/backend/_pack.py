"""k-bit packing and the size objective.

A k-bit weight tensor is stored as two's-complement k-bit fields packed back to back
(``ceil(numel * k / 8)`` bytes) plus one fp32 scale per output channel; everything not quantized
(biases, fp32 layers, norms) is stored as fp32. :func:`packed_size` is the size objective: the
bytes of that representation, computed from the same packing that :func:`write_packed` writes.
Packing round-trips exactly (tested for every k).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from autocompress.backend._quant import QuantizedWeight

MAGIC = b"ACPK1\n"


def pack_bits(q: np.ndarray, bits: int) -> bytes:
    """Pack signed integers that fit in ``bits`` bits (two's complement) into bytes."""
    flat = np.asarray(q, dtype=np.int16).reshape(-1)
    lim = 2 ** (bits - 1)
    if flat.size and (flat.min() < -lim or flat.max() > lim - 1):
        raise ValueError(f"values outside the signed {bits}-bit range")
    unsigned = (flat & ((1 << bits) - 1)).astype(np.uint16)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint16)
    bit_matrix = ((unsigned[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bit_matrix.reshape(-1)).tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` signed integers as int8."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int32)
    unsigned = flat.reshape(count, bits).astype(np.int32) @ weights
    signed = np.where(unsigned >= 2 ** (bits - 1), unsigned - 2**bits, unsigned)
    return signed.astype(np.int8)


def packed_size(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> int:
    """Bytes of the model with quantized weights packed at their bit widths plus scales."""
    quantized_params = {f"{name}.weight" for name in quantized}
    total = 0
    for qw in quantized.values():
        total += (qw.q.numel() * qw.bits + 7) // 8 + 4 * qw.scale.numel()
    for name, tensor in _stored_tensors(model).items():
        if name not in quantized_params:
            total += 4 * tensor.numel()
    return total


def write_packed(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> bytes:
    """The packed artifact: a JSON header then the payloads (fp32 little-endian, packed ints)."""
    header: dict[str, dict[str, object]] = {}
    payload = io.BytesIO()
    for name, tensor in _stored_tensors(model).items():
        layer = name[: -len(".weight")] if name.endswith(".weight") else None
        qw = quantized.get(layer) if layer else None
        start = payload.tell()
        if qw is not None:
            payload.write(pack_bits(qw.q.numpy(), qw.bits))
            payload.write(qw.scale.numpy().astype("<f4").tobytes())
            entry: dict[str, object] = {"bits": qw.bits}
            if qw.block_size is not None:  # nbits: one scale per block of inputs per row
                entry["block_size"] = qw.block_size
        else:
            payload.write(tensor.detach().float().numpy().astype("<f4").tobytes())
            entry = {"bits": 32}
        entry.update(shape=list(tensor.shape), offset=start, nbytes=payload.tell() - start)
        header[name] = entry
    head = json.dumps(header, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(head)) + head + payload.getvalue()


def read_packed(blob: bytes) -> dict[str, np.ndarray]:
    """Unpack :func:`write_packed` output to float32 arrays (dequantized)."""
    out = {}
    for name, e, chunk in _entries(blob):
        shape = e["shape"]
        if e["bits"] == 32:
            out[name] = np.frombuffer(chunk, dtype="<f4").reshape(shape)
            continue
        q, scale = _codes_and_scale(chunk, e)
        out[name] = q.astype(np.float32) * _scales_per_weight(scale, e)
    return out


def _scales_per_weight(scale: np.ndarray, e: dict[str, Any]) -> np.ndarray:
    shape, block = e["shape"], e.get("block_size")
    if block is None:
        return scale.reshape(-1, *([1] * (len(shape) - 1)))
    return np.repeat(scale.reshape(shape[0], -1), block, axis=1)[:, : shape[1]]


def read_packed_codes(blob: bytes) -> dict[str, np.ndarray]:
    """The k-bit tensors of :func:`write_packed` output as their integer codes (int8, their
    shape), without the scales; fp32 tensors are left out."""
    return {
        name: _codes_and_scale(chunk, e)[0] for name, e, chunk in _entries(blob) if e["bits"] < 32
    }


def _entries(blob: bytes) -> list[tuple[str, dict[str, Any], bytes]]:
    if not blob.startswith(MAGIC):
        raise ValueError("not a packed autocompress artifact")
    (n,) = struct.unpack("<I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    header = json.loads(blob[start : start + n])
    data = memoryview(blob)[start + n :]
    return [
        (name, e, bytes(data[e["offset"] : e["offset"] + e["nbytes"]]))
        for name, e in header.items()
    ]


def _codes_and_scale(chunk: bytes, e: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    shape, block = e["shape"], e.get("block_size")
    channels = shape[0] if block is None else shape[0] * -(-shape[1] // block)
    count = int(np.prod(shape))
    q = unpack_bits(chunk[: len(chunk) - 4 * channels], e["bits"], count).reshape(shape)
    return q, np.frombuffer(chunk[len(chunk) - 4 * channels :], dtype="<f4")


def _stored_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and the buffers a deployable needs (BN statistics), not observer state."""
    out: dict[str, torch.Tensor] = dict(model.named_parameters())
    for name, buf in model.named_buffers():
        if name.endswith(("running_mean", "running_var")):
            out[name] = buf
    return out
