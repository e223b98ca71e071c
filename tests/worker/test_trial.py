"""run_trial: stages run or are skipped as the plan says; failures are one-line and typed."""

from __future__ import annotations

import dataclasses

import pytest

from autocompress.errors import ConfigError, HopelessTrialError, UnsupportedPlanError
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.worker._context import trial_context
from autocompress.worker._trial import run_trial


@pytest.fixture(scope="module")
def names(tiny_task) -> list[str]:
    return [layer.name for layer in trial_context(tiny_task).layers]


def test_fp32_plan_skips_every_stage(tiny_task, names) -> None:
    plan = CompressionPlan.uniform(names, weight_bits=None)
    r = run_trial(plan.to_dict(), tiny_task.to_dict()).result
    assert not {"prune", "bn_recalibration", "finetune"} & set(r.stage_seconds)
    assert r.finetune is None and r.early_accuracy is None
    assert r.latency_ratio is not None
    assert 0.5 < r.latency_ratio < 2.0  # the same model as the reference, timed beside it
    assert r.fingerprint["runtime"] == "onnxruntime" and r.fingerprint["key"]


def test_ptq_plan_has_no_finetuning(tiny_task, names) -> None:
    plan = CompressionPlan.uniform(names, weight_bits=8)
    r = run_trial(plan.to_dict(), tiny_task.to_dict()).result
    assert "finetune" not in r.stage_seconds and r.finetune is None
    assert r.size_bytes < 0.3 * r.params * 4 + 4096


def test_full_plan_prunes_recalibrates_and_finetunes(tiny_task, names) -> None:
    layers = {n: LayerPlan(4, 0.5 if n.startswith("layer3") else 0.0) for n in names}
    plan = CompressionPlan(layers=layers, distill=DistillPlan(temperature=4.0, alpha=0.5))
    r = run_trial(plan.to_dict(), tiny_task.to_dict()).result
    assert {"prune", "bn_recalibration", "fold", "finetune", "realize"} <= set(r.stage_seconds)
    assert r.finetune is not None and r.finetune.steps == tiny_task.finetune.steps
    assert r.finetune_steps == tiny_task.finetune.steps
    assert r.layers["layer3.0.conv1"].channels < r.layers["layer3.0.conv1"].channels_before
    assert r.early_accuracy is not None
    assert r.layers["fc"].bits == 4


def test_hopeless_trial_stops_after_bn_recalibration(tiny_task, names) -> None:
    task = dataclasses.replace(tiny_task, hopeless_floor=0.999)
    plan = CompressionPlan(
        layers={n: LayerPlan(4, 0.5) for n in names if n != "fc"}, distill=DistillPlan()
    )
    with pytest.raises(HopelessTrialError, match="below the early-stop floor") as info:
        run_trial(plan.to_dict(), task.to_dict())
    assert 0.0 <= info.value.accuracy < 0.999


def test_unknown_layer_is_a_config_error(tiny_task) -> None:
    plan = CompressionPlan(layers={"layer9.conv": LayerPlan(4, 0.5)})
    with pytest.raises(ConfigError, match=r"layer9\.conv"):
        run_trial(plan.to_dict(), tiny_task.to_dict())


def test_runtime_that_cannot_run_a_plan_says_so(tiny_task, names) -> None:
    task = dataclasses.replace(
        tiny_task, target=dataclasses.replace(tiny_task.target, runtime="eager")
    )
    with pytest.raises(UnsupportedPlanError, match="fp32 plans only"):
        run_trial(CompressionPlan.uniform(names, weight_bits=8).to_dict(), task.to_dict())
