"""Where each torch layer's weight is in an exported ONNX graph (the onnx side of ``_onnxrt``).

The exporter does not keep names we can rely on: an ``nn.Linear`` on a 2-D input becomes a
``Gemm`` (``transB=1``) reading ``{layer}.weight``, but on a 3-D input (tokens x features) it
becomes a ``MatMul`` reading a constant-folded *transposed* copy under a generated name
(``onnx::MatMul_123``) plus an ``Add`` for the bias; a weight shared by two modules reaches its
second user through an ``Identity`` (FINDINGS: every ViT trial failed on the name lookup). So a
layer's weight is found by *value*: we export the very tensors we quantized, so the initializer
equals the k-bit weight ``W`` (Conv, Gemm with ``transB=1``) or ``W^T`` (MatMul, Gemm without
``transB``) exactly. The name (``{layer}.weight``) and the node's scope (``/{layer}/...``) only
break ties between layers whose weights are equal.

Split from ``_onnxrt.py`` for its size; the two are one adapter for the onnx library.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import onnx
import onnx.numpy_helper

from autocompress.backend import QuantizedWeight
from autocompress.errors import UnsupportedPlanError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


class WeightSite(NamedTuple):
    """A layer's weight initializer in the graph and the nodes reading it."""

    initializer: str
    transposed: bool  # the initializer is W^T ([in, out]): per-channel axis 1
    nodes: tuple[onnx.NodeProto, ...]

    @property
    def axis(self) -> int:
        return 1 if self.transposed else 0


def drop_weight_identities(model: onnx.ModelProto) -> None:
    """Let every node read a weight initializer directly instead of through an ``Identity``.

    torch exports a parameter shared by two modules as one initializer plus an Identity copy;
    ORT's quantizer sees the copy as an activation (quantized per tensor, uncalibrated scale).
    Rewired, the quantizer quantizes the initializer once, for both users.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {
        n.output[0]: n.input[0]
        for n in graph.node
        if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs
    }
    if not alias:
        return
    keep = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in keep:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del graph.node[:]
    graph.node.extend(keep)


def weight_sites(
    graph: onnx.GraphProto, weights: Mapping[str, QuantizedWeight]
) -> dict[str, WeightSite]:
    """Each layer's weight initializer, found by value (see the module docstring).

    Layers sharing one parameter map to the same initializer. Raises ``UnsupportedPlanError``
    naming the layer when no initializer equals its weight, or several do and neither the name
    nor the node scope tells which.
    """
    readers = _readers(graph)
    arrays = {
        i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer if i.name in readers
    }
    out = {}
    for layer, qw in weights.items():
        w = qw.dequantize().numpy().astype(np.float32)
        found = [
            WeightSite(name, transposed, tuple(readers[name]))
            for name, value in arrays.items()
            for transposed in (False, True)
            if _reads_as(readers[name], transposed) and _equal(value, w.T if transposed else w)
        ]
        out[layer] = _one_site(layer, found)
    return out


def weight_readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Weight initializer name -> the Conv/Gemm/MatMul nodes reading it as their weight."""
    return _readers(graph)


def _readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    inits = {i.name for i in graph.initializer}
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in inits:
            out.setdefault(node.input[1], []).append(node)
    return out


def _reads_as(nodes: list[onnx.NodeProto], transposed: bool) -> bool:
    """Whether the nodes read their weight as ``W^T`` (``[in, out]``) or as ``W``."""
    return all(_transposed_reader(n) == transposed for n in nodes)


def _transposed_reader(node: onnx.NodeProto) -> bool:
    if node.op_type == "MatMul":
        return True
    if node.op_type == "Gemm":
        return not any(a.name == "transB" and a.i == 1 for a in node.attribute)
    return False


def _equal(value: np.ndarray, w: np.ndarray) -> bool:
    return value.shape == w.shape and value.dtype == w.dtype and np.array_equal(value, w)


def _one_site(layer: str, found: list[WeightSite]) -> WeightSite:
    if len(found) == 1:
        return found[0]
    if not found:
        raise UnsupportedPlanError(
            f"layer {layer!r}: no ONNX initializer equals its weight or its transpose; the "
            "exporter changed it (a reshape or fused op), so its bits cannot be pinned; "
            "leave the layer out of the space (bits none)"
        )
    scope = f"/{layer.replace('.', '/')}/"
    named = [s for s in found if s.initializer == f"{layer}.weight"]
    scoped = [s for s in found if any(n.name.startswith(scope) for n in s.nodes)]
    for choice in (named, scoped):
        if len(choice) == 1:
            return choice[0]
    raise UnsupportedPlanError(
        f"layer {layer!r}: {len(found)} ONNX initializers equal its weight "
        f"({', '.join(s.initializer for s in found)}) and none is named after it; "
        "give equal weights distinct values (e.g. train before compressing)"
    )


def is_bias_add(users: list[onnx.NodeProto], inits: set[str]) -> bool:
    """A MatMul's only user is an Add of an initializer: the Linear's bias."""
    only = users[0] if len(users) == 1 else None
    return only is not None and only.op_type == "Add" and any(i in inits for i in only.input)


ACCURACY_LEVEL = 4  # MatMulNBits: int8 compute where MLAS has a kernel (else it falls back)


def rewrite_linears(
    model: onnx.ModelProto, layers: list[tuple[WeightSite, QuantizedWeight]]
) -> set[str]:
    """Replace each site's MatMul/Gemm by its scheme's nodes, written from OUR codes and scales
    (never re-quantized by ORT); returns the new nodes' names (static QDQ must leave them).

    ``nbits``: one ``com.microsoft.MatMulNBits`` (weight-only, block-wise; the bias folded in);
    ``dynamic``: ``DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul(x_scale * w_scale)``
    (+ bias ``Add``), the pattern ORT's ``quantize_dynamic`` writes and its optimizer fuses.
    """
    graph = model.graph
    inits = {i.name for i in graph.initializer}
    replace: dict[str, list[onnx.NodeProto]] = {}
    dropped: set[str] = set()
    for site, qw in layers:
        for node in (n for n in site.nodes if n.name not in replace):  # shared: once
            users = [n for n in graph.node if node.output[0] in n.input]
            bias, out = _bias(node, users, inits)
            if node.op_type == "MatMul" and bias is not None:
                dropped.add(users[0].name)
            writer = _nbits_nodes if qw.scheme == "nbits" else _dynamic_nodes
            replace[node.name] = writer(graph, node, qw, bias, out)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name not in dropped:
            nodes.extend(replace.get(node.name, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if any(qw.scheme == "nbits" for _, qw in layers):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    return {n.name for ns in replace.values() for n in ns}


def _bias(
    node: onnx.NodeProto, users: list[onnx.NodeProto], inits: set[str]
) -> tuple[str | None, str]:
    """(bias initializer or None, the tensor the layer's result must be written to)."""
    if node.op_type == "Gemm":
        return (node.input[2] if len(node.input) > 2 else None), node.output[0]
    if is_bias_add(users, inits):
        add = users[0]
        return next(i for i in add.input if i in inits), add.output[0]
    return None, node.output[0]


def _nbits_nodes(
    graph: onnx.GraphProto, node: onnx.NodeProto, qw: QuantizedWeight, bias: str | None, out: str
) -> list[onnx.NodeProto]:
    assert qw.block_size is not None
    n, k = qw.q.shape
    name = f"{node.name}_nbits"
    blob = pack_nbits(qw.q.numpy(), qw.bits, qw.block_size)
    scales = qw.scale.numpy().astype(np.float32).reshape(-1)
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(blob, f"{name}.weight_codes"),
            onnx.numpy_helper.from_array(scales, f"{name}.weight_scales"),
        ]
    )
    inputs = [node.input[0], f"{name}.weight_codes", f"{name}.weight_scales"]
    inputs += ["", "", bias] if bias is not None else []
    return [
        onnx.helper.make_node(
            "MatMulNBits", inputs, [out], name=name, domain="com.microsoft", K=k, N=n,
            bits=qw.bits, block_size=qw.block_size, accuracy_level=ACCURACY_LEVEL,
        )
    ]  # fmt: skip


def pack_nbits(q: np.ndarray, bits: int, block_size: int) -> np.ndarray:
    """Signed codes ``[N, K]`` in MatMulNBits' layout ``[N, blocks, block_size * bits / 8]``:
    unsigned ``q + 2**(bits-1)`` (the default zero point), K zero-padded to whole blocks,
    packed little end first (element ``j`` of a byte at bit ``j * bits``), as
    ``matmul_nbits_quantizer.py`` packs (``pack_on_row_fast_248bit``)."""
    n, k = q.shape
    zero = 1 << (bits - 1)
    padded = np.full((n, -(-k // block_size) * block_size), zero, dtype=np.uint8)
    padded[:, :k] = (q.astype(np.int16) + zero).astype(np.uint8)
    per_byte = 8 // bits
    groups = padded.reshape(n, -1, per_byte)
    packed = np.zeros(groups.shape[:2], dtype=np.uint8)
    for j in range(per_byte):
        packed |= (groups[:, :, j] << (j * bits)).astype(np.uint8)
    return packed.reshape(n, -1, block_size * bits // 8)


def _dynamic_nodes(
    graph: onnx.GraphProto, node: onnx.NodeProto, qw: QuantizedWeight, bias: str | None, out: str
) -> list[onnx.NodeProto]:
    name = f"{node.name}_dynamic"
    codes = np.ascontiguousarray(qw.q.numpy().T)  # [K, N]: MatMulInteger's B
    scales = qw.scale.numpy().astype(np.float32)
    graph.initializer.extend(
        [
            onnx.numpy_helper.from_array(codes, f"{name}.weight_quantized"),
            onnx.numpy_helper.from_array(scales, f"{name}.weight_scale"),
        ]
    )
    x = [f"{name}.x_q", f"{name}.x_scale", f"{name}.x_zero_point"]
    scaled = out if bias is None else f"{name}.scaled"
    make = onnx.helper.make_node
    nodes = [
        make("DynamicQuantizeLinear", [node.input[0]], x, name=f"{name}.quantize"),
        make(
            "MatMulInteger", [x[0], f"{name}.weight_quantized", x[2]], [f"{name}.int32"],
            name=f"{name}.matmul",
        ),
        make("Cast", [f"{name}.int32"], [f"{name}.float"], name=f"{name}.cast", to=1),
        make("Mul", [x[1], f"{name}.weight_scale"], [f"{name}.scale"], name=f"{name}.scale"),
        make("Mul", [f"{name}.float", f"{name}.scale"], [scaled], name=f"{name}.rescale"),
    ]  # fmt: skip
    if bias is not None:
        nodes.append(make("Add", [scaled, bias], [out], name=f"{name}.bias"))
    return nodes


class Skeleton(NamedTuple):
    """A QDQ model with its k-bit weights taken out (see :func:`make_skeleton`)."""

    artifact: bytes  # the model, each emptied initializer's raw_data b"" (name, dtype, dims kept)
    # packed tensor name -> the initializer it fills, or {"initializer": name, "transpose": true}
    # where the initializer holds the codes transposed (a Linear on tokens: MatMul reads W^T)
    packed_to_onnx: dict[str, Any]
    kept: dict[str, str]  # initializer left in the skeleton -> why


def make_skeleton(artifact: bytes, codes: Mapping[str, np.ndarray]) -> Skeleton:
    """Empty the int8 weight initializers of ``artifact`` that the packed codes rebuild exactly.

    A quantized weight is the int8 initializer a DequantizeLinear feeds into a Conv/Gemm/MatMul.
    Its packed tensor is the one ORT named it after (``{weight}_quantized``), else the one packed
    tensor of its shape (or of its transposed shape: a MatMul's ``W^T``) with the same codes;
    it is emptied only if the codes equal its int8 values exactly (the k-bit scale is the int8
    scale, so they should). Scales, zero points, biases and fp32 layers stay in the skeleton.
    """
    model = onnx.load_from_string(artifact)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    mapping: dict[str, Any] = {}
    done: set[str] = set()
    kept: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "MatMulInteger":  # a dynamic int8 layer reads its codes directly
            init = inits.get(node.input[1])
        else:
            dq = producers.get(node.input[1]) if len(node.input) > 1 else None
            if node.op_type not in WEIGHTED_OPS or dq is None or dq.op_type != "DequantizeLinear":
                continue
            init = inits.get(dq.input[0])
        if init is None or init.name in done or init.name in kept:
            continue
        name, transposed, why = _packed_match(init, codes, set(mapping))
        if name is None:
            kept[init.name] = why
            continue
        mapping[name] = {"initializer": init.name, "transpose": True} if transposed else init.name
        done.add(init.name)
        init.raw_data = b""
    return Skeleton(model.SerializeToString(), mapping, kept)


def _packed_match(
    init: onnx.TensorProto, codes: Mapping[str, np.ndarray], taken: set[str]
) -> tuple[str | None, bool, str]:
    """(packed tensor, transposed?, why not) for one int8 weight initializer."""
    if init.data_type != onnx.TensorProto.INT8 or not init.HasField("raw_data"):
        return None, False, "not an int8 tensor stored as raw bytes"
    values = onnx.numpy_helper.to_array(init)
    named = init.name.removesuffix("_quantized")
    candidates = [named] if named in codes else []
    candidates += [n for n in codes if n != named]
    for name in candidates:
        if name in taken:
            continue
        if np.array_equal(codes[name], values):
            return name, False, ""
        c = codes[name]
        if c.ndim == 2 and c.T.shape == values.shape and np.array_equal(c.T, values):
            return name, True, ""
    if named in codes:
        return None, False, f"its int8 values differ from the packed codes of {named}"
    return None, False, "no packed tensor holds its int8 values"
