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
    model = copy.deepcopy(ctx.teacher)
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
