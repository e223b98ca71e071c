"""The CUDA runtime on a real GPU (marked gpu; skipped where no CUDA device is visible)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from autocompress.backend import fold_batchnorm, snap_weights
from autocompress.config import MeasureConfig, TargetConfig
from autocompress.measure import measure
from autocompress.runtimes import get_runtime
from autocompress.worker._context import trial_context

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["fp16", "bf16", "fp32"])
def test_cuda_realize_predict_and_time_with_events(tiny_task, precision: str) -> None:
    ctx = trial_context(tiny_task)
    model = copy.deepcopy(ctx.model)
    fold_batchnorm(model)
    quantized = snap_weights(model, {layer.name: 4 for layer in ctx.layers})
    target = TargetConfig(runtime="cuda", device="cuda:0", precision=precision)
    deployable = get_runtime("cuda").realize(model, quantized, ctx.calibration, target)
    x = ctx.calibration[0][:64]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = deployable.predict(x)
    assert np.mean(got.argmax(1) == expected.argmax(1)) >= 0.95
    result = measure(deployable.timer(x[:1], 1), None, MeasureConfig(repeats=50, min_time_s=0))
    assert 0 < result.candidate.median_ms < 50


def test_a_search_on_a_cuda_target_times_every_trial_on_the_gpu(tmp_path) -> None:
    """The whole path on a GPU target: dry run, baselines, trials, front, all timed on CUDA."""
    import autocompress
    from autocompress.config import ExperimentConfig
    from tests.conftest import tiny_experiment

    experiment = tiny_experiment(
        tmp_path,
        target={"runtime": "cuda", "device": "cuda:0", "precision": "fp16"},
        search={"n_trials": 3, "baselines": ["fp32"]},
    )
    result = autocompress.search(ExperimentConfig.from_dict(experiment), progress=False)
    completed = result.front.completed
    assert len(completed) >= 3 and result.front.members
    gpu = torch.cuda.get_device_name(0)
    for m in completed:
        assert m.result.fingerprint["gpu"] == gpu, m.result.fingerprint
        assert m.result.latency_ms > 0 and m.result.size_bytes > 0
