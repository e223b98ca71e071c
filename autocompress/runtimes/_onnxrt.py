"""ONNX Runtime: static QDQ int8 on CPU, the default target (only this module imports onnxruntime).

Realization: export the folded model to ONNX (fp32), then let ONNX Runtime's static quantizer place
QuantizeLinear/DequantizeLinear pairs where its kernels fuse them (QLinearConv, QGemm, QLinearAdd,
QLinearGlobalAveragePool...), with two changes that make the int8 model compute the trained one:

- every quantized layer's weight scale is *given* (``TensorQuantOverrides``): its k-bit scale,
  so the int8 weights are exactly the k-bit integers (ORT would otherwise recompute a scale from
  min/max and re-round: FINDINGS); weight-scale adjustment for int32 biases is turned off for the
  same reason;
- layers whose plan says ``none`` are excluded (``nodes_to_exclude``) and stay fp32.

Activations are unsigned 8-bit, calibrated (min/max) on training batches; weights signed 8-bit
per channel. Latency is that of ORT's int8 kernels for any k <= 8: there is no faster sub-8-bit
convolution kernel on CPU, and we do not pretend otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from torch import nn

from autocompress.backend import QuantizedWeight
from autocompress.config import TargetConfig
from autocompress.errors import UnsupportedPlanError

OPSET = 17
INPUT, OUTPUT = "input", "logits"
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
_PASS_THROUGH = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity")


class OnnxDeployable:
    """An ONNX model (fp32 or QDQ int8) run by ONNX Runtime's CPU execution provider."""

    runtime = "onnxruntime"
    suffix = ".onnx"

    def __init__(self, artifact: bytes) -> None:
        self.artifact = artifact
        self._session: ort.InferenceSession | None = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self._session is None:
            self._session = make_session(self.artifact, threads=torch.get_num_threads())
        return self._session.run(None, {INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        session = make_session(self.artifact, threads=threads)
        feed = {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}
        return lambda: session.run(None, feed)

    def op_types(self) -> set[str]:
        """Operator types in the graph as ORT optimises it (QLinearConv means real int8)."""
        with tempfile.TemporaryDirectory() as tmp:
            opts = ort.SessionOptions()
            opts.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
            opts.log_severity_level = 3
            ort.InferenceSession(self.artifact, opts, providers=["CPUExecutionProvider"])
            return {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}


class OnnxRuntime:
    """The ``onnxruntime`` runtime."""

    name = "onnxruntime"

    def realize(
        self,
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        target: TargetConfig,
    ) -> OnnxDeployable:
        if target.device != "cpu":
            raise UnsupportedPlanError(
                f"runtime onnxruntime times on cpu here, not {target.device}; use runtime cuda"
            )
        fp32 = export_onnx(model, torch.from_numpy(calibration[0][:1]))
        if not quantized:
            return OnnxDeployable(fp32)
        return OnnxDeployable(quantize_qdq(fp32, quantized, calibration))

    def load(self, artifact: bytes, target: TargetConfig) -> OnnxDeployable:
        return OnnxDeployable(artifact)

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": ort.__version__, "onnx": onnx.__version__}


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """Export to ONNX with a dynamic batch axis; initializers keep their parameter names."""
    buf = io.BytesIO()
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                # dynamo=False writes to a file object; torch's annotation lists paths only
                buf,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
                do_constant_folding=True,
            )
    except Exception as exc:  # the exporter raises many types; the message is what matters
        raise UnsupportedPlanError(f"cannot export the model to ONNX: {exc}") from None
    return buf.getvalue()


def quantize_qdq(
    fp32: bytes, quantized: Mapping[str, QuantizedWeight], calibration: list[np.ndarray]
) -> bytes:
    """Static QDQ quantization with the given k-bit weight scales (see the module docstring)."""
    graph = onnx.load_from_string(fp32).graph
    weight_nodes = _weight_nodes(graph)
    overrides: dict[str, list[dict[str, object]]] = {}
    for layer, qw in quantized.items():
        if f"{layer}.weight" not in weight_nodes:
            raise UnsupportedPlanError(
                f"layer {layer!r} has no weight initializer '{layer}.weight' in the ONNX graph; "
                "the exporter renamed or transposed it, so its bits cannot be pinned"
            )
        overrides[f"{layer}.weight"] = _channel_overrides(qw)
        overrides.update(_activation_overrides(graph, f"{layer}.weight", qw))
    excluded = [
        n
        for w, nodes in weight_nodes.items()
        for n in nodes
        if w.removesuffix(".weight") not in quantized
    ]
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(fp32)
        quantize_static(
            str(src),
            str(dst),
            _Batches(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            extra_options={
                "TensorQuantOverrides": overrides,
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "QDQDisableWeightAdjustForInt32Bias": True,
            },
        )
        return dst.read_bytes()


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ORT's quantizer logs a pre-processing hint on the root logger for every model; we fold BN
    and export shapes ourselves, so the hint is noise in a search log."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def graph_input(artifact: bytes) -> tuple[str, list[int | str]]:
    """Name and shape of an ONNX model's first input (symbolic dims by name, else "N")."""
    first = onnx.load_from_string(artifact).graph.input[0]
    dims = first.type.tensor_type.shape.dim
    return first.name, [d.dim_value if d.dim_value else d.dim_param or "N" for d in dims]


class Skeleton(NamedTuple):
    """A QDQ model with its k-bit weights taken out (see :func:`make_skeleton`)."""

    artifact: bytes  # the model, each emptied initializer's raw_data b"" (name, dtype, dims kept)
    packed_to_onnx: dict[str, str]  # packed tensor name -> the initializer it fills
    kept: dict[str, str]  # initializer left in the skeleton -> why


def make_skeleton(artifact: bytes, codes: Mapping[str, np.ndarray]) -> Skeleton:
    """Empty the int8 weight initializers of ``artifact`` that the packed codes rebuild exactly.

    A quantized weight is the int8 initializer a DequantizeLinear feeds into a Conv/Gemm/MatMul.
    Its packed tensor is the one ORT named it after (``{weight}_quantized``), else the one packed
    tensor of its shape with the same codes; it is emptied only if the codes equal its int8
    values exactly (the k-bit scale is the int8 scale, so they should). Scales, zero points,
    biases and fp32 layers stay in the skeleton.
    """
    model = onnx.load_from_string(artifact)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    mapping: dict[str, str] = {}
    kept: dict[str, str] = {}
    for node in graph.node:
        dq = producers.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type not in _WEIGHTED_OPS or dq is None or dq.op_type != "DequantizeLinear":
            continue
        init = inits.get(dq.input[0])
        if init is None or init.name in mapping.values() or init.name in kept:
            continue
        name, why = _packed_match(init, codes, set(mapping))
        if name is None:
            kept[init.name] = why
            continue
        mapping[name] = init.name
        init.raw_data = b""
    return Skeleton(model.SerializeToString(), mapping, kept)


def _packed_match(
    init: onnx.TensorProto, codes: Mapping[str, np.ndarray], taken: set[str]
) -> tuple[str | None, str]:
    if init.data_type != onnx.TensorProto.INT8 or not init.HasField("raw_data"):
        return None, "not an int8 tensor stored as raw bytes"
    values = onnx.numpy_helper.to_array(init)
    named = init.name.removesuffix("_quantized")
    candidates = [named] if named in codes else []
    candidates += [n for n, c in codes.items() if n != named and c.shape == values.shape]
    for name in candidates:
        if name not in taken and np.array_equal(codes[name], values):
            return name, ""
    if named in codes:
        return None, f"its int8 values differ from the packed codes of {named}"
    return None, "no packed tensor holds its int8 values"


def make_session(artifact: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(artifact, opts, providers=["CPUExecutionProvider"])


def _weight_nodes(graph: onnx.GraphProto) -> dict[str, list[str]]:
    """Weight initializer name -> names of the Conv/Gemm/MatMul nodes consuming it."""
    inits = {i.name for i in graph.initializer}
    out: dict[str, list[str]] = {}
    for node in graph.node:
        if node.op_type in _WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in inits:
            out.setdefault(node.input[1], []).append(node.name)
    return out


def _activation_overrides(
    graph: onnx.GraphProto, weight: str, qw: QuantizedWeight
) -> dict[str, list[dict[str, object]]]:
    """The trained 8-bit ranges of a layer's input and fused output, keyed by ONNX tensor.

    The layer's node is the one consuming its weight initializer; its output tensor is the one
    after a directly following Relu/Clip (which the int8 kernel fuses), else its own output.
    """
    node = next(n for n in graph.node if len(n.input) > 1 and n.input[1] == weight)
    producers = {o: n for n in graph.node for o in n.output}
    out: dict[str, list[dict[str, object]]] = {}
    if qw.input_qparams is not None:
        tensor = node.input[0]
        out[tensor] = [_qparams(qw.input_qparams)]
        # ORT gives a pass-through op (Flatten, Reshape...) its input's scale: pin that too
        while tensor in producers and producers[tensor].op_type in _PASS_THROUGH:
            tensor = producers[tensor].input[0]
            out[tensor] = [_qparams(qw.input_qparams)]
    if qw.output_qparams is not None:
        tensor = node.output[0]
        users = [n for n in graph.node if tensor in n.input]
        if len(users) == 1 and users[0].op_type in ("Relu", "Clip"):
            tensor = users[0].output[0]
        out[tensor] = [_qparams(qw.output_qparams)]
    return out


def _qparams(qparams: tuple[float, int]) -> dict[str, object]:
    return {
        "scale": np.array(qparams[0], dtype=np.float32),
        "zero_point": np.array(qparams[1], dtype=np.uint8),
    }


def _channel_overrides(qw: QuantizedWeight) -> list[dict[str, object]]:
    scales = qw.scale.numpy().astype(np.float32)
    return [
        {"scale": np.float32(s), "zero_point": np.int8(0), **({"axis": 0} if i == 0 else {})}
        for i, s in enumerate(scales)
    ]


class _Batches(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray]) -> None:
        self._it = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT: np.ascontiguousarray(batch, dtype=np.float32)}
