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
per channel. Linear layers whose plan names another scheme (``dynamic``, ``nbits``) are rewritten
first, from our codes (``_onnxrt_weights.rewrite_linears``), and left out of the static pass.
Latency is that of ORT's int8 kernels for any k <= 8: there is no faster sub-8-bit
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
from autocompress.runtimes._onnxrt_weights import (
    drop_weight_identities,
    is_bias_add,
    rewrite_linears,
    weight_readers,
    weight_sites,
)

OPSET = 17
INPUT, OUTPUT = "input", "logits"
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
        return self._session.run(None, {INPUT: _feed(self._session, x)})[0]

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        session = make_session(self.artifact, threads=threads)
        feed = {INPUT: _feed(session, batch)}
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
        _check_shared(model, quantized)
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
    """Static QDQ quantization with the given k-bit weight scales (see the module docstring).

    Each layer's weight initializer is found by value (``_onnxrt_weights``), so a Linear on
    tokens (MatMul reading ``W^T`` under a generated name) gets its scales on axis 1. A MatMul's
    output is not requantized before its bias ``Add`` (which stays float), so the pinned output
    range applies after the bias, as in training.
    """
    model = onnx.load_from_string(fp32)
    drop_weight_identities(model)
    graph = model.graph
    sites = weight_sites(graph, quantized)
    static = {layer: qw for layer, qw in quantized.items() if qw.scheme is None}
    overrides: dict[str, list[dict[str, object]]] = {}
    excluded: list[str] = []
    for layer, qw in static.items():
        site = sites[layer]
        overrides[site.initializer] = _channel_overrides(qw, site.axis)
        for node in site.nodes:
            pins, bias_add = _activation_overrides(graph, node, qw)
            overrides.update(pins)
            excluded += [bias_add] if bias_add else []
    others = [(sites[layer], qw) for layer, qw in quantized.items() if qw.scheme is not None]
    excluded += rewrite_linears(model, others)
    if not static:
        return model.SerializeToString()
    pinned = {sites[layer].initializer for layer in static}
    excluded += [n.name for w, ns in weight_readers(graph).items() if w not in pinned for n in ns]
    excluded += _activation_matmuls(graph)
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(model.SerializeToString())
        quantize_static(
            str(src),
            str(dst),
            _Batches(calibration, _input_dtype(graph)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            op_types_to_quantize=_op_types(graph),
            extra_options={
                "TensorQuantOverrides": overrides,
                "WeightSymmetric": True,
                "ActivationSymmetric": False,
                "QDQDisableWeightAdjustForInt32Bias": True,
                "OpTypesToExcludeOutputQuantization": ["MatMul"],
            },
        )
        return dst.read_bytes()


_WEIGHTED_ONLY = ["Conv", "Gemm", "MatMul"]


def _op_types(graph: onnx.GraphProto) -> list[str] | None:
    """Which ops ORT may quantize: all it can (None) in a CNN, where QLinearAdd/-Pool keep the
    residual stream in int8 and fuse; only the weighted layers in a transformer (a graph with
    LayerNormalization), where QDQ on the residual Add and the GELU's Mul breaks ORT's Gelu and
    LayerNorm fusions and costs more than int8 saves (a 4-block ViT at batch 1: uniform static
    int8 0.243 ms vs fp32 0.215; QAT does not simulate those ops either)."""
    if any(n.op_type == "LayerNormalization" for n in graph.node):
        return list(_WEIGHTED_ONLY)
    return None


def _activation_matmuls(graph: onnx.GraphProto) -> list[str]:
    """MatMuls of two activations (attention's ``q @ k^T`` and ``p @ v``) and the Softmax between
    them stay float: QAT does not quantize them, so an int8 kernel there would compute something
    never trained (and ORT 1.32 fails on a Softmax whose float consumer it did not calibrate:
    "Only an existing tensor can be modified, '.../Softmax_output_0'")."""
    inits = {i.name for i in graph.initializer}
    return [
        n.name
        for n in graph.node
        if (n.op_type == "MatMul" and not any(i in inits for i in n.input))
        or n.op_type == "Softmax"
    ]


def _check_shared(model: nn.Module, quantized: Mapping[str, QuantizedWeight]) -> None:
    """Layers sharing one parameter must ask for the same grid: one initializer, one scale."""
    modules = dict(model.named_modules())
    first: dict[int, tuple[str, QuantizedWeight]] = {}
    for layer, qw in quantized.items():
        other, seen = first.setdefault(id(modules[layer].weight), (layer, qw))
        if other != layer and (seen.bits != qw.bits or not torch.equal(seen.scale, qw.scale)):
            raise UnsupportedPlanError(
                f"layers {other!r} and {layer!r} share one weight but the plan gives them "
                "different bits; give layers that share a weight the same bits"
            )


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


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _feed(session: ort.InferenceSession, x: np.ndarray | torch.Tensor) -> np.ndarray:
    """``x`` in the dtype the graph's input declares (int64 token ids are never made float)."""
    declared = session.get_inputs()[0].type
    if declared not in _ORT_DTYPES:
        raise UnsupportedPlanError(
            f"the model's input is {declared}; feed float32, int64 or int32 inputs"
        )
    return np.ascontiguousarray(x, dtype=_ORT_DTYPES[declared])


def make_session(artifact: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(artifact, opts, providers=["CPUExecutionProvider"])


def _activation_overrides(
    graph: onnx.GraphProto, node: onnx.NodeProto, qw: QuantizedWeight
) -> tuple[dict[str, list[dict[str, object]]], str | None]:
    """The trained 8-bit ranges of a layer's input and fused output, keyed by ONNX tensor, and
    the name of the MatMul's bias ``Add`` (kept float), if any.

    The output tensor is the one after the bias Add (a Linear on tokens) and a directly
    following Relu/Clip (which the int8 kernel fuses), else the node's own output.
    """
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    out: dict[str, list[dict[str, object]]] = {}
    if qw.input_qparams is not None:
        tensor = node.input[0]
        out[tensor] = [_qparams(qw.input_qparams)]
        # ORT gives a pass-through op (Flatten, Reshape...) its input's scale: pin that too
        while tensor in producers and producers[tensor].op_type in _PASS_THROUGH:
            tensor = producers[tensor].input[0]
            out[tensor] = [_qparams(qw.input_qparams)]
    tensor, bias_add = node.output[0], None
    users = [n for n in graph.node if tensor in n.input]
    if node.op_type == "MatMul" and is_bias_add(users, inits):
        bias_add, tensor = users[0].name, users[0].output[0]
        users = [n for n in graph.node if tensor in n.input]
    if len(users) == 1 and users[0].op_type in ("Relu", "Clip"):
        tensor = users[0].output[0]
    if qw.output_qparams is not None:
        out[tensor] = [_qparams(qw.output_qparams)]
    return out, bias_add


def _input_dtype(graph: onnx.GraphProto) -> np.dtype:
    """The numpy dtype of the graph's first input: token ids stay int64, images float32."""
    elem = graph.input[0].type.tensor_type.elem_type
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))


def _qparams(qparams: tuple[float, int]) -> dict[str, object]:
    return {
        "scale": np.array(qparams[0], dtype=np.float32),
        "zero_point": np.array(qparams[1], dtype=np.uint8),
    }


def _channel_overrides(qw: QuantizedWeight, axis: int) -> list[dict[str, object]]:
    """One (scale, 0) per output channel; ``axis`` is where the channels lie in the initializer
    (0 for Conv/Gemm's ``W``, 1 for a MatMul's ``W^T``); ORT reads it from the first entry."""
    scales = qw.scale.numpy().astype(np.float32)
    return [
        {"scale": np.float32(s), "zero_point": np.int8(0), **({"axis": axis} if i == 0 else {})}
        for i, s in enumerate(scales)
    ]


class _Batches(CalibrationDataReader):
    def __init__(self, batches: list[np.ndarray], dtype: np.dtype) -> None:
        self._it = iter(batches)
        self._dtype = dtype

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {INPUT: np.ascontiguousarray(batch, dtype=self._dtype)}
