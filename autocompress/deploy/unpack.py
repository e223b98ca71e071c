"""Unpack an autocompress ``model.acpk`` (packed k-bit weights) with numpy alone.

Shipped beside every export; it imports nothing of autocompress (nor onnx), so the packed size in
the manifest (``measured.shipped_bytes``) is a size you can really ship: send
``model.skeleton.onnx``, ``model.acpk``, ``manifest.json`` and this file, rebuild the exact
``model.onnx`` where it runs.

    python unpack.py                                 # model.onnx, byte for byte (sha256 checked)
    python unpack.py --onnx out.onnx                 # the same, written elsewhere
    python unpack.py model.acpk weights.npz          # float32 tensors (k-bit codes * scales)
    python unpack.py model.acpk codes.npz --codes    # integer codes and per-channel scales

``model.skeleton.onnx`` is ``model.onnx`` with the int8 weight initializers that the packed codes
equal emptied (name, dtype, dims kept; ``raw_data`` empty); the manifest's ``packed_to_onnx``
maps each packed tensor to its initializer (or to ``{"initializer": name, "transpose": true}``
where the graph holds the codes transposed: a Linear on tokens runs as MatMul on ``W^T``).
Rebuilding writes each tensor's codes (int8, row major) back into its ``raw_data`` at the
protobuf wire level, so the result is the exported file itself, whatever onnx or protobuf
version is installed.

Format (``ACPK1``): the line ``ACPK1``, a little-endian uint32 header length, a JSON header
{tensor name: {bits, shape, offset, nbytes}}, then the payloads. A tensor of 32 bits is float32
little-endian; a k-bit one is its signed (two's complement) k-bit codes packed back to back,
most significant bit first, then one float32 scale per output channel: weight = code * scale
(with ``block_size`` in its entry: one scale per block of ``block_size`` inputs of each row, the
MatMulNBits layout).
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from collections.abc import Callable

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
        block = e.get("block_size")
        channels = shape[0] if block is None else shape[0] * -(-shape[1] // block)
        q = unpack_codes(chunk[: len(chunk) - 4 * channels], e["bits"], count).reshape(shape)
        scale = np.frombuffer(chunk[len(chunk) - 4 * channels :], dtype="<f4")
        if codes:
            out[name + ".codes"], out[name + ".scale"] = q, scale
        elif block is None:
            out[name] = q.astype(np.float32) * scale.reshape(-1, *([1] * (len(shape) - 1)))
        else:
            per_weight = np.repeat(scale.reshape(shape[0], -1), block, axis=1)[:, : shape[1]]
            out[name] = q.astype(np.float32) * per_weight
    return out


def rebuild_onnx(skeleton: bytes, packed: bytes, packed_to_onnx: dict) -> bytes:
    """``model.onnx`` from its skeleton: each mapped initializer's raw_data is its packed codes."""
    codes, raw = unpack(packed, codes=True), {}
    for name, to in packed_to_onnx.items():
        q = codes[f"{name}.codes"]
        if isinstance(to, dict):
            q, to = (q.T if to.get("transpose") else q), to["initializer"]
        raw[to] = np.ascontiguousarray(q).astype("<i1").tobytes()
    out = _splice(skeleton, {7: lambda graph: _splice(graph, {5: lambda t: _fill(t, raw)})})
    if raw:
        raise ValueError(f"initializers missing from the skeleton: {sorted(raw)}")
    return out


# --- protobuf wire format: ModelProto.graph = 7, GraphProto.initializer = 5,
# TensorProto.name = 8, TensorProto.raw_data = 9 (onnx.proto field numbers)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _fields(buf: bytes) -> list[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its value, end) of each field."""
    out, i = [], 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, end = _varint(buf, i)
        elif wire == 1:
            end = i + 8
        elif wire == 5:
            end = i + 4
        elif wire == 2:
            size, i = _varint(buf, i)
            end = i + size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, start, i, end))
        i = end
    return out


def _splice(buf: bytes, edit: dict[int, Callable[[bytes], bytes]]) -> bytes:
    """``buf`` with the length-delimited fields named in ``edit`` replaced by edit(value)."""
    out = bytearray()
    for number, wire, start, value, end in _fields(buf):
        if wire == 2 and number in edit:
            new = edit[number](buf[value:end])
            out += _encode_varint((number << 3) | 2) + _encode_varint(len(new)) + new
        else:
            out += buf[start:end]
    return bytes(out)


def _fill(tensor: bytes, raw: dict[str, bytes]) -> bytes:
    fields = _fields(tensor)
    name = next((tensor[v:e].decode() for n, w, _, v, e in fields if n == 8 and w == 2), None)
    if name not in raw:
        return tensor
    if not any(n == 9 and w == 2 and v == e for n, w, _, v, e in fields):
        raise ValueError(f"initializer {name} has no empty raw_data in the skeleton")
    data = raw.pop(name)
    return _splice(tensor, {9: lambda _: data})


def _rebuild_main(argv: list[str]) -> int:
    try:
        with open("manifest.json") as f:
            manifest = json.load(f)
    except OSError:
        manifest = {}
    if "skeleton_file" not in manifest:
        print("run this in an export directory that has model.skeleton.onnx\n" + (__doc__ or ""))
        return 2
    with open(manifest["skeleton_file"], "rb") as f:
        skeleton = f.read()
    with open(manifest["packed_file"], "rb") as f:
        packed = f.read()
    model = rebuild_onnx(skeleton, packed, manifest["packed_to_onnx"])
    target = argv[1] if len(argv) > 1 else manifest["model_file"]
    digest = hashlib.sha256(model).hexdigest()
    if digest != manifest["sha256"]:
        print(f"rebuilt model's sha256 {digest} is not the manifest's {manifest['sha256']}")
        return 1
    with open(target, "wb") as f:
        f.write(model)
    print(f"{target}: {len(model)} bytes, sha256 {digest} (the exported file, byte for byte)")
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "--onnx":
        return _rebuild_main(argv)
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
