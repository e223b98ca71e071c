"""Runtime registry conformance: every runtime realizes, predicts, reloads and times alike."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from autocompress.backend import fold_batchnorm, snap_weights
from autocompress.config import TargetConfig
from autocompress.errors import ConfigError, UnsupportedPlanError
from autocompress.runtimes import available_runtimes, get_runtime
from autocompress.worker._context import trial_context

CPU_RUNTIMES = ["onnxruntime", "eager", "inductor"]


@pytest.fixture(scope="module")
def ctx(tiny_task):
    return trial_context(tiny_task)


def folded(ctx) -> torch.nn.Module:
    model = copy.deepcopy(ctx.model)
    fold_batchnorm(model)
    return model


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_fp32_realize_predict_reload_time(ctx, name: str) -> None:
    runtime = get_runtime(name)
    target = TargetConfig(runtime=name)
    model = folded(ctx)
    deployable = runtime.realize(model, {}, ctx.calibration, target)
    x = ctx.calibration[0][:7]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.allclose(deployable.predict(x), expected, atol=1e-3)
    again = runtime.load(deployable.artifact, target)
    assert np.allclose(again.predict(x), expected, atol=1e-3)
    run = again.timer(x[:1], 1)
    run()
    assert runtime.versions()


@pytest.mark.parametrize("name", ["onnxruntime", "inductor"])
def test_kbit_plan_runs_on_int8_runtimes(ctx, name: str) -> None:
    model = folded(ctx)
    bits = {layer.name: 4 for layer in ctx.layers}
    quantized = snap_weights(model, bits)
    deployable = get_runtime(name).realize(
        model, quantized, ctx.calibration, TargetConfig(runtime=name)
    )
    x, y = next(iter(ctx.data.val()))
    with torch.no_grad():
        torch_acc = float((model(x).argmax(1) == y).float().mean())
    acc = float((deployable.predict(x.numpy()).argmax(1) == y.numpy()).mean())
    assert abs(acc - torch_acc) <= 0.05, (acc, torch_acc)


def test_eager_refuses_quantized_plans(ctx) -> None:
    model = folded(ctx)
    quantized = snap_weights(model, {ctx.layers[0].name: 8})
    with pytest.raises(UnsupportedPlanError, match="fp32 plans only"):
        get_runtime("eager").realize(model, quantized, ctx.calibration, TargetConfig())


def test_cpu_runtimes_refuse_cuda_targets(ctx) -> None:
    for name in ("onnxruntime", "inductor", "eager"):
        with pytest.raises(UnsupportedPlanError):
            get_runtime(name).realize(
                folded(ctx), {}, ctx.calibration, TargetConfig(runtime=name, device="cuda:0")
            )


def test_registry_lists_and_refuses() -> None:
    assert set(CPU_RUNTIMES) | {"cuda"} == set(available_runtimes())
    with pytest.raises(ConfigError, match="unknown"):
        get_runtime("tensorrt")


def test_cuda_runtime_without_a_gpu_says_so(ctx) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: covered by the gpu tests")
    with pytest.raises(UnsupportedPlanError, match="no CUDA device"):
        get_runtime("cuda").realize(
            folded(ctx), {}, ctx.calibration, TargetConfig(runtime="cuda", device="cuda:0")
        )


@pytest.mark.parametrize(
    ("saturates", "target", "widest"),
    [
        (True, {}, 7),
        (False, {}, 8),
        (True, {"max_weight_bits": 8}, 8),
        (False, {"max_weight_bits": 7}, 7),
        (True, {"runtime": "eager"}, 8),
        (True, {"node_resources": {"edge": 1.0}}, 8),  # timed elsewhere: its CPU is unknown here
    ],
)
def test_widest_exact_bits_follow_the_cpu_unless_the_target_says(
    monkeypatch, saturates: bool, target: dict, widest: int
) -> None:
    from autocompress.config import TargetConfig
    from autocompress.runtimes import widest_exact_bits

    monkeypatch.setattr("autocompress.runtimes.int8_saturates", lambda: saturates)
    assert widest_exact_bits(TargetConfig(**target)) == widest


def test_max_weight_bits_outside_7_and_8_is_refused() -> None:
    from autocompress.config import load_experiment

    with pytest.raises(ConfigError, match=r"target.max_weight_bits: expected a value >= 7, got 6"):
        load_experiment("experiments/fashion_mnist.yaml", ["target.max_weight_bits=6"])
