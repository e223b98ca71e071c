"""Issue 19: each layer's record names the kernel its scheme got; other runtimes refuse."""

from __future__ import annotations

import pytest

from autocompress.errors import UnsupportedPlanError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.record import SCHEME_LEGEND
from autocompress.worker._records import layer_records
from autocompress.worker._trial import _check_schemes

PLAN = CompressionPlan(
    layers={
        "conv": LayerPlan(weight_bits=4, prune_ratio=0.25),
        "fc1": LayerPlan(weight_bits=4, scheme="nbits", block_size=32),
        "fc2": LayerPlan(weight_bits=8, scheme="dynamic"),
        "head": LayerPlan(),
    }
)


def test_layer_records_name_the_kernel_each_scheme_got() -> None:
    before = {"conv": 8, "fc1": 16, "fc2": 16, "head": 10, "other": 4}
    records = layer_records(PLAN, before, {**before, "conv": 6}, "onnxruntime")
    got = {name: r.scheme for name, r in records.items()}
    assert got == {
        "conv": "int8-static",
        "fc1": "nbits4/b32",
        "fc2": "int8-dynamic",
        "head": None,
        "other": None,
    }
    assert {"int8-static", "int8-dynamic", "nbits"} == set(SCHEME_LEGEND)
    assert layer_records(PLAN, before, before, "inductor")["conv"].scheme is None


def test_a_scheme_on_another_runtime_is_refused() -> None:
    _check_schemes(PLAN, "onnxruntime")
    _check_schemes(CompressionPlan(layers={"conv": LayerPlan(weight_bits=8)}), "cuda")
    with pytest.raises(UnsupportedPlanError, match="only runtime onnxruntime runs, not cuda"):
        _check_schemes(PLAN, "cuda")


def test_the_timed_batch_keeps_integer_token_ids() -> None:
    """A text model's timing input is int64 ids in range, never random floats cast to ids."""
    from types import SimpleNamespace

    import numpy as np

    from autocompress.worker._trial import timing_batch

    ids = np.arange(24, dtype=np.int64).reshape(2, 12) % 17
    ctx = SimpleNamespace(calibration=[ids], data=SimpleNamespace(input_shape=(12,)))
    same = timing_batch(ctx, SimpleNamespace(input_shape=None, batch_size=3))
    assert same.dtype == np.int64 and same.shape == (3, 12)
    declared = timing_batch(ctx, SimpleNamespace(input_shape=(20,), batch_size=2))
    assert declared.dtype == np.int64 and declared.shape == (2, 20)
    assert declared.min() >= 0 and declared.max() <= 16
    floats = SimpleNamespace(calibration=[ids.astype(np.float64)], data=ctx.data)
    assert (
        timing_batch(floats, SimpleNamespace(input_shape=None, batch_size=1)).dtype == np.float32
    )


def test_a_trial_runs_each_linear_scheme_end_to_end(tmp_path) -> None:
    """run_trial on an MLP: QAT with nbits / dynamic / static layers, the deployable runs
    MatMulNBits and dynamic int8, and each layer's record names its kernel."""
    import onnx

    from autocompress.config import ExperimentConfig
    from autocompress.models import load_reference
    from autocompress.worker import run_trial
    from autocompress.worker._task import Task
    from tests.conftest import tiny_experiment

    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, model={"name": "mlp", "kwargs": {"hidden": [64, 32]}})
    )
    reference = load_reference(config.model, config.data)
    task = Task(
        data=config.data,
        model=config.model,
        finetune=config.finetune,
        target=config.target,
        checkpoint=str(reference.checkpoint),
    )
    plan = CompressionPlan(
        layers={
            "1": LayerPlan(weight_bits=4, scheme="nbits", block_size=16),
            "3": LayerPlan(weight_bits=8, scheme="dynamic"),
            "5": LayerPlan(weight_bits=8),
        }
    )
    output = run_trial(plan.to_dict(), task.to_dict())
    schemes = {name: r.scheme for name, r in output.result.layers.items()}
    assert schemes == {"1": "nbits4/b16", "3": "int8-dynamic", "5": "int8-static"}
    ops = {n.op_type for n in onnx.load_from_string(output.artifact).graph.node}
    assert {"MatMulNBits", "MatMulInteger", "QuantizeLinear"} <= ops
    assert output.result.accuracy > 0.5
