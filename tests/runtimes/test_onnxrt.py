"""ONNX Runtime deployables compute the k-bit model: exact weights, real int8 kernels."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from autocompress.backend import attach_fake_quant, fold_batchnorm, snap_weights
from autocompress.measure import top1_accuracy
from autocompress.runtimes import get_runtime
from autocompress.worker._context import trial_context


@pytest.fixture(scope="module")
def ctx(tiny_task):
    return trial_context(tiny_task)


def realized(ctx, task, bits_by_layer):
    model = copy.deepcopy(ctx.model)
    fold_batchnorm(model)
    quantized = snap_weights(model, bits_by_layer)
    deployable = get_runtime("onnxruntime").realize(model, quantized, ctx.calibration, task.target)
    return model, quantized, deployable


def test_int8_weights_are_exactly_the_kbit_integers(ctx, tiny_task) -> None:
    bits = {layer.name: 4 for layer in ctx.layers}
    _, quantized, deployable = realized(ctx, tiny_task, bits)
    inits = {
        i.name: onnx.numpy_helper.to_array(i)
        for i in onnx.load_from_string(deployable.artifact).graph.initializer
    }
    for name, qw in quantized.items():
        assert np.array_equal(inits[f"{name}.weight_quantized"], qw.q.numpy()), name
        assert np.allclose(inits[f"{name}.weight_scale"], qw.scale.numpy()), name
    ops = deployable.op_types()
    assert "QLinearConv" in ops  # real int8 kernels, not dequantize + fp32 conv


def test_fp32_layers_stay_fp32(ctx, tiny_task) -> None:
    bits = {layer.name: 8 for layer in ctx.layers[1:]}
    _, _, deployable = realized(ctx, tiny_task, bits)
    names = {i.name for i in onnx.load_from_string(deployable.artifact).graph.initializer}
    first = ctx.layers[0].name
    assert f"{first}.weight" in names and f"{first}.weight_quantized" not in names


@pytest.mark.parametrize("bits", [8, 4])
def test_deployable_accuracy_matches_torch_kbit_reference(ctx, tiny_task, bits: int) -> None:
    """Same k-bit weights, same 8-bit activation quantization: within 0.5 pt."""
    layer_bits = {layer.name: bits for layer in ctx.layers}
    model, _, deployable = realized(ctx, tiny_task, layer_bits)
    handle = attach_fake_quant(model, layer_bits)  # weights already on the grid: a no-op there
    with torch.no_grad():
        for batch in ctx.calibration:
            model(torch.from_numpy(batch))
    handle.set_observing(False)
    correct = total = 0
    with torch.no_grad():
        for x, y in ctx.data.val():
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    torch_acc = correct / total
    ort_acc = top1_accuracy(deployable.predict, ctx.data.val())
    assert abs(ort_acc - torch_acc) <= 0.005 + 1e-9, (ort_acc, torch_acc)
    assert ort_acc > 0.5  # the tiny model really learned something
