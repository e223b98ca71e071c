"""Backend conformance: every architecture in the zoo passes the same checks, unchanged code.

refnet (residual adds), torchvision resnet18 (downsample shortcuts), mobilenet_v2 (depthwise
convs, inverted residuals), a plain MLP, squeezenet (concatenations, a grouped conv) and vit, at
tiny widths on 8x8 digits; text_transformer on a synthetic token task (int64 ids):

- the plan is applied: pruned layers lose channels (multiples of round_to), the head keeps its own;
- the parameter count falls as the ratios say;
- the compressed model still runs forward, and fine-tuning steps run;
- GPTQ rounds every 4-bit layer it covers onto the grid the deployable runs;
- the realized ONNX Runtime deployable agrees with the torch model it came from (a test of its
  own, marked xfail for the transformers until the ONNX MatMul weight mapping lands).
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import numpy as np
import pytest
import torch

from autocompress.backend import (
    FinetuneSettings,
    attach_fake_quant,
    finetune,
    fold_batchnorm,
    gptq_round,
    head_name,
    layer_inventory,
    parameter_count,
    prune_channels,
    recalibrate_batchnorm,
    snap_weights,
)
from autocompress.config import DataConfig, TargetConfig
from autocompress.data import endless_batches, load_splits
from autocompress.models import build_model
from autocompress.runtimes import get_runtime

ARCHITECTURES = {
    "refnet": {"width": 8},
    "resnet18": {"width": 8},
    "mobilenet_v2": {"width_mult": 0.5},
    "mlp": {"hidden": [64, 32]},
    "squeezenet": {"width": 32, "groups": 4},
    "vit": {"dim": 32, "depth": 2, "heads": 4, "patch": 2, "pool": "cls"},
    "text_transformer": {"vocab": 50, "dim": 32, "depth": 2, "heads": 4},
}
TRANSFORMERS = {"vit", "text_transformer"}  # the residual width is never pruned
# Un-mark after runtime19 merges (ORT realization of Linear on 3-D inputs: MatMul + transposed
# initializer, "layer 'blocks.0.attn.q' has no weight initializer").
ONNX_CASES = sorted(ARCHITECTURES)


STEPS = {
    "refnet": 60,
    "resnet18": 60,
    "mobilenet_v2": 120,
    "mlp": 60,
    "squeezenet": 120,
    "vit": 120,
    "text_transformer": 120,
}
RATIO = 0.25  # a collapsed (heavily pruned, untuned) net makes agreement a coin toss


@pytest.fixture(scope="module")
def digits():
    return load_splits(DataConfig(dataset="digits", val_size=300))


@pytest.fixture(scope="module")
def tokens():
    return token_task()


@pytest.fixture
def splits(request, digits, tokens):
    """The data of the test's architecture: token ids for text_transformer, else digits."""
    callspec = getattr(request.node, "callspec", None)  # unparametrized tests: digits
    name = None if callspec is None else callspec.params.get("name")
    return tokens if name == "text_transformer" else digits


@dataclasses.dataclass(eq=False)  # hashed by identity, like the digits splits (cached training)
class TokenTask:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    input_shape: list[int]
    num_classes: int


def token_task(n: int = 1200, seq: int = 16, vocab: int = 50) -> TokenTask:
    """A text task on int64 token ids: the class is which of three keywords (ids 1-3) appears
    once among filler tokens (ids 4..vocab-1). Attention must find the keyword anywhere."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(4, vocab, (n, seq), generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    x[torch.arange(n), torch.randint(0, seq, (n,), generator=g)] = y + 1
    cut = n * 3 // 4
    return TokenTask(
        train_x=x[:cut],
        train_y=y[:cut],
        val_x=x[cut:],
        val_y=y[cut:],
        input_shape=[seq],
        num_classes=3,
    )


def trained(name: str, splits) -> torch.nn.Module:
    """A fresh copy of the trained model (training is shared by the tests of this module)."""
    return copy.deepcopy(_trained(name, splits))


@functools.cache
def _trained(name: str, splits) -> torch.nn.Module:
    """Enough Adam steps that logits are not near ties (agreement on a random net is noise)."""
    torch.manual_seed(0)
    model = build_model(name, splits.input_shape, splits.num_classes, ARCHITECTURES[name])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    stream = endless_batches(splits.train_x, splits.train_y, 64)
    model.train()
    for _ in range(STEPS[name]):
        x, y = next(stream)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_backend_conformance(name: str, splits) -> None:
    compressed(name, splits)  # the checks run inside, once per architecture


@functools.cache
def compressed(name: str, splits) -> tuple:
    """Prune, recalibrate, fold and fine-tune (QAT + KD), checking each stage; the result is
    shared with the ONNX agreement test."""
    teacher = trained(name, splits)
    example = splits.train_x[:2]
    layers = layer_inventory(teacher, example)
    head = head_name(layers)
    body = [layer.name for layer in layers if layer.name != head]

    model = copy.deepcopy(teacher)
    params_before = parameter_count(model)
    realized = prune_channels(model, dict.fromkeys(body, RATIO), example, head=head, round_to=4)

    # the plan was applied: channels removed in multiples of round_to, the head untouched
    after = {layer.name: layer for layer in layer_inventory(model, example)}
    assert realized, "nothing was pruned"
    assert after[head].out_channels == splits.num_classes
    for layer in layers:
        if layer.name in realized and layer.out_channels > 4:
            assert after[layer.name].out_channels % 4 == 0
    # parameters fall as the ratios say: most weights lose RATIO of both dimensions (of one in
    # a transformer: its residual width stays)
    ratio = parameter_count(model) / params_before
    top = 1 - RATIO if name in TRANSFORMERS else (1 - RATIO) ** 2
    assert 0.45 < ratio < top + 0.15, ratio

    batches = (x for x, _ in endless_batches(splits.train_x, splits.train_y, 64, seed=1))
    recalibrate_batchnorm(model, batches, 3)
    fold_batchnorm(model)
    assert model(splits.val_x[:8]).shape == (8, splits.num_classes)

    bits = {layer: 4 if layer != head else 8 for layer in after}
    stream = endless_batches(splits.train_x, splits.train_y, 32)
    quantized, report = finetune(
        model, teacher, bits, None, stream, FinetuneSettings(steps=40, lr=0.01)
    )
    assert report.steps == 40 and set(quantized) == set(bits)
    assert all(q.input_qparams is not None for q in quantized.values())
    # the compressed model (as the deployable should run it) is a real classifier
    x, y = torch.cat([splits.train_x, splits.val_x]), torch.cat([splits.train_y, splits.val_y])
    with torch.no_grad():
        accuracy = float((simulated(model, quantized, bits)(x).argmax(1) == y).float().mean())
    assert accuracy > 0.5, accuracy
    return model, quantized, bits


def simulated(model, quantized, bits) -> torch.nn.Module:
    """The model with fake-quantized weights and activations at the fine-tuning's ranges."""
    simulation = copy.deepcopy(model)
    _copy_ranges(quantized, attach_fake_quant(simulation, bits))
    return simulation


@pytest.mark.parametrize("name", ONNX_CASES)
def test_onnx_deployable_agrees_with_the_compressed_model(name: str, splits) -> None:
    model, quantized, bits = compressed(name, splits)
    model, quantized = copy.deepcopy(model), copy.deepcopy(quantized)
    # the deployable runs the trained numerics: the same k-bit weights and 8-bit ranges
    calibration = [splits.train_x[i : i + 64].numpy() for i in range(0, 256, 64)]
    simulation = simulated(model, quantized, bits)
    deployable = get_runtime("onnxruntime").realize(model, quantized, calibration, TargetConfig())
    # every digit (train and validation, 1797): agreement is about numerics, not generalisation,
    # and 300 images made the figure move by 1-2 pt with the RNG
    x = torch.cat([splits.train_x, splits.val_x])
    with torch.no_grad():
        expected = simulation(x).numpy()
    got = deployable.predict(x.numpy())
    agreement = float(np.mean(expected.argmax(1) == got.argmax(1)))
    y = torch.cat([splits.train_y, splits.val_y]).numpy()
    accuracies = float(np.mean(expected.argmax(1) == y)), float(np.mean(got.argmax(1) == y))
    assert accuracies[0] > 0.5, accuracies  # the compressed model is a real classifier
    # ORT requantizes after every layer with its own rounding: the error grows with the number
    # of quantized layers (measured over the 1797 digits on an AVX2-only EPYC: mlp 0.999,
    # refnet and resnet18 0.998, mobilenet_v2 with ~50 quantized layers 0.963; on the 300
    # validation images alone mobilenet_v2 gave 0.947-0.97)
    assert agreement >= 0.95, agreement
    assert abs(accuracies[0] - accuracies[1]) <= 0.02, accuracies


def _copy_ranges(quantized, handle) -> None:
    """Freeze the simulation's observers at the ranges the fine-tuning ended with."""
    handle.set_observing(False)
    for name, qw in quantized.items():
        for key, qparams in ((name, qw.input_qparams), (f"{name}:out", qw.output_qparams)):
            fq = handle.activations.get(key)
            if fq is None or qparams is None:
                continue
            scale, zero_point = qparams
            fq.lo.fill_(-zero_point * scale)
            fq.hi.fill_((255 - zero_point) * scale)


@pytest.mark.parametrize("name", ONNX_CASES)
def test_fp32_realization_matches_torch_exactly(name: str, splits) -> None:
    model = trained(name, splits)
    fold_batchnorm(model)
    calibration = [splits.train_x[:64].numpy()]
    deployable = get_runtime("onnxruntime").realize(model, {}, calibration, TargetConfig())
    with torch.no_grad():
        expected = model(splits.val_x[:64]).numpy()
    assert np.allclose(deployable.predict(splits.val_x[:64].numpy()), expected, atol=1e-4)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_gptq_rounds_every_covered_layer_onto_the_grid_the_deployable_runs(name, splits) -> None:
    """GPTQ on each architecture (attention projections, token inputs, concatenations): every
    4-bit layer but grouped convolutions is rounded, and snapping its result changes nothing, so
    the realized weights are GPTQ's; the model still classifies about as nearest rounding does."""
    model = trained(name, splits)
    fold_batchnorm(model)
    layers = layer_inventory(model, splits.train_x[:2])
    bits = {layer.name: 4 for layer in layers}
    nearest = copy.deepcopy(model)
    snap_weights(nearest, bits)
    calibration = (x for x, _ in endless_batches(splits.train_x, splits.train_y, 64, seed=2))
    rounded = gptq_round(model, bits, calibration, 2)
    grouped = {n for n, m in model.named_modules() if getattr(m, "groups", 1) > 1}
    assert set(rounded) == set(bits) - grouped
    gptq = {n: model.get_submodule(n).weight.detach().clone() for n in rounded}
    snap_weights(model, bits)
    assert all(torch.equal(model.get_submodule(n).weight, w) for n, w in gptq.items())
    x, y = torch.cat([splits.train_x, splits.val_x]), torch.cat([splits.train_y, splits.val_y])
    with torch.no_grad():
        accuracy = [float((m(x).argmax(1) == y).float().mean()) for m in (model, nearest)]
    assert accuracy[0] >= accuracy[1] - 0.02, accuracy


def test_snap_then_realize_keeps_exact_weights(splits) -> None:
    model = trained("refnet", splits)
    fold_batchnorm(model)
    names = [layer.name for layer in layer_inventory(model, splits.train_x[:2])]
    quantized = snap_weights(model, dict.fromkeys(names, 3))
    for name, qw in quantized.items():
        weight = dict(model.named_modules())[name].weight
        assert torch.equal(weight, qw.dequantize())
        assert int(qw.q.abs().max()) <= 3
