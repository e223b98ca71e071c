"""Unpack an autocompress ``model.acpk`` (packed k-bit weights) with numpy alone.

Shipped beside every export; it imports nothing of autocompress, so the packed size in the
manifest (``measured.packed_bytes``) is a size you can really ship: send ``model.acpk`` and this
file, rebuild the weights where they are needed.

    python unpack.py model.acpk weights.npz          # float32 tensors (k-bit codes * scales)
    python unpack.py model.acpk codes.npz --codes    # integer codes and per-channel scales

Format (``ACPK1``): the line ``ACPK1``, a little-endian uint32 header length, a JSON header
{tensor name: {bits, shape, offset, nbytes}}, then the payloads. A tensor of 32 bits is float32
little-endian; a k-bit one is its signed (two's complement) k-bit codes packed back to back,
most significant bit first, then one float32 scale per output channel: weight = code * scale.
"""

from __future__ import annotations

import json
import struct
import sys

import numpy as np

MAGIC = b"ACPK1\n"


def read_header(blob: bytes) -> tuple[dict, memoryview]:
    if not blob.startswith(MAGIC):
        raise ValueError("not an autocompress packed artifact (no ACPK1 header)")
    (n,) = struct.unpack("<I", blob[len(MAGIC) : len(MAGIC) + 4])
    start = len(MAGIC) + 4
    return json.loads(blob[start : start + n]), memoryview(blob)[start + n :]


def unpack_codes(data: bytes, bits: int, count: int) -> np.ndarray:
    """``count`` signed ``bits``-bit integers packed MSB first, as int8."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.int32)
    unsigned = flat.reshape(count, bits).astype(np.int32) @ weights
    return np.where(unsigned >= 2 ** (bits - 1), unsigned - 2**bits, unsigned).astype(np.int8)


def unpack(blob: bytes, codes: bool = False) -> dict[str, np.ndarray]:
    """Every tensor as float32; ``codes``: k-bit ones as ``name.codes`` and ``name.scale``."""
    header, data = read_header(blob)
    out = {}
    for name, e in header.items():
        chunk = bytes(data[e["offset"] : e["offset"] + e["nbytes"]])
        shape, count = e["shape"], int(np.prod(e["shape"]))
        if e["bits"] == 32:
            out[name] = np.frombuffer(chunk, dtype="<f4").reshape(shape)
            continue
        channels = shape[0]
        q = unpack_codes(chunk[: len(chunk) - 4 * channels], e["bits"], count).reshape(shape)
        scale = np.frombuffer(chunk[len(chunk) - 4 * channels :], dtype="<f4")
        if codes:
            out[name + ".codes"], out[name + ".scale"] = q, scale
        else:
            out[name] = q.astype(np.float32) * scale.reshape(-1, *([1] * (len(shape) - 1)))
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    with open(argv[0], "rb") as f:
        tensors = unpack(f.read(), codes="--codes" in argv[2:])
    np.savez(argv[1], **tensors)  # type: ignore[arg-type]  # names are tensor names
    print(f"{len(tensors)} tensors -> {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
