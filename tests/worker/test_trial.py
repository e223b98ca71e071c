"""run_trial: stages run or are skipped as the plan says; failures are one-line and typed."""

from __future__ import annotations

import dataclasses
import time

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
    assert r.early_accuracy is None and "early_evaluate" not in r.stage_seconds  # no floor


def test_the_early_check_runs_only_where_a_hopeless_floor_reads_it(tiny_task, names) -> None:
    """Without search.hopeless_margin nothing reads the early accuracy, and its evaluation was
    12% of a rung-0 trial on refnet (docs/benchmarks/throughput-rungs0-*.json): skipped."""
    layers = {n: LayerPlan(8, 0.5 if n.startswith("layer3") else 0.0) for n in names}
    plan = CompressionPlan(layers=layers).to_dict()
    floored = dataclasses.replace(tiny_task, hopeless_floor=0.0)
    r = run_trial(plan, floored.to_dict()).result
    assert r.early_accuracy is not None and "early_evaluate" in r.stage_seconds
    with pytest.raises(HopelessTrialError):
        run_trial(plan, dataclasses.replace(tiny_task, hopeless_floor=1.01).to_dict())


def test_stages_account_for_the_trial(tiny_task, names) -> None:
    """Every step of a trial is clocked, so throughput checks can split worker time from the
    driver's and Ray's (experiments/throughput_check.py): copy, snap and pack included."""
    layers = {n: LayerPlan(4, 0.5 if n.startswith("layer3") else 0.0) for n in names}
    plan = CompressionPlan(layers=layers)  # no fine-tuning: the clocks around it matter most
    start = time.perf_counter()
    r = run_trial(plan.to_dict(), tiny_task.to_dict()).result
    wall = time.perf_counter() - start
    assert {"copy", "snap", "realize", "measure", "pack"} <= set(r.stage_seconds)
    assert sum(r.stage_seconds.values()) > 0.9 * wall
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


def _with_finetune(task, **changes):
    return dataclasses.replace(task, finetune=dataclasses.replace(task.finetune, **changes))


def test_two_phase_recipe_trains_float_then_quantization_aware(tiny_task, names) -> None:
    """BatchNorm live for the first 3/4 of the steps, then folded and QAT for the last 1/4."""
    task = _with_finetune(tiny_task, steps=8, qat_fraction=0.25, weight_decay=5e-4)
    layers = {n: LayerPlan(4, 0.5 if n.startswith("layer3") else 0.0) for n in names}
    plan = CompressionPlan(layers=layers, distill=DistillPlan(temperature=2.0, alpha=0.5))
    r = run_trial(plan.to_dict(), task.to_dict()).result
    assert r.finetune is not None and r.finetune.steps == 8 and r.finetune_steps == 8
    assert {"fold", "finetune", "realize"} <= set(r.stage_seconds)
    assert len(r.finetune.losses) >= 2  # a loss recorded in each phase
    assert r.accuracy > 0.5


def test_default_recipe_fine_tunes_in_float_then_rounds_below_8_bits_with_gptq(
    tiny_task, names
) -> None:
    """The default (no QAT phase): float KD for the whole budget, then GPTQ for the 4-bit
    layers; with ``gptq_batches: 0`` the same plan is rounded to nearest, to other weights."""
    task = _with_finetune(tiny_task, steps=4, qat_fraction=0.0)
    layers = {n: LayerPlan(4 if n.startswith("layer3") else 8, 0.0) for n in names}
    plan = CompressionPlan(layers=layers, distill=DistillPlan(temperature=1.0, alpha=0.5))
    gptq = run_trial(plan.to_dict(), task.to_dict())
    assert "gptq" in gptq.result.stage_seconds and gptq.result.finetune_steps == 4
    nearest = run_trial(plan.to_dict(), _with_finetune(task, gptq_batches=0).to_dict())
    assert "gptq" in nearest.result.stage_seconds  # the stage runs, and rounds nothing
    assert gptq.packed != nearest.packed  # GPTQ chose other 4-bit codes
    assert gptq.result.accuracy > 0.5


def test_a_screening_rung_0_plan_rounds_to_nearest_and_only_it(tiny_task, names) -> None:
    """``search.rung0_gptq: false`` (Task.screen_nearest): a 0-step plan of a ladder is rounded
    to nearest, as ``gptq_batches: 0`` rounds it, without paying for GPTQ; a fine-tuned plan
    of the same task still gets GPTQ."""
    layers = {n: LayerPlan(4 if n.startswith("layer3") else 8, 0.0) for n in names}
    rung0 = CompressionPlan(layers=layers, distill=DistillPlan(steps=0)).to_dict()
    screen = dataclasses.replace(tiny_task, screen_nearest=True)
    skipped = run_trial(rung0, screen.to_dict())
    assert "gptq" not in skipped.result.stage_seconds and skipped.result.finetune_steps == 0
    nearest = run_trial(rung0, _with_finetune(tiny_task, gptq_batches=0).to_dict())
    assert skipped.packed == nearest.packed  # the same codes as nearest rounding
    assert run_trial(rung0, tiny_task.to_dict()).packed != nearest.packed  # the default: GPTQ
    tuned = CompressionPlan(layers=layers, distill=DistillPlan(steps=4)).to_dict()
    task = _with_finetune(screen, qat_fraction=0.0)
    assert "gptq" in run_trial(tuned, task.to_dict()).result.stage_seconds


def test_plain_plan_is_what_a_user_runs_without_us(tiny_task, names) -> None:
    """int8 at the plan's widths, cross-entropy only, BatchNorm live, then PTQ: no QAT phase."""
    layers = {n: LayerPlan(4, 0.0 if n == "fc" else 0.5) for n in names}
    plain = CompressionPlan(layers=layers, distill=DistillPlan(temperature=4.0)).plain()
    assert {p.weight_bits for p in plain.layers.values()} == {8}
    assert plain.distill is not None
    assert (plain.distill.alpha, plain.distill.qat_fraction) == (0.0, 0.0)
    assert CompressionPlan.from_dict(plain.to_dict()) == plain
    r = run_trial(plain.to_dict(), tiny_task.to_dict()).result
    assert r.finetune is not None and r.finetune.steps == tiny_task.finetune.steps
    assert r.layers["layer3.0.conv1"].channels < r.layers["layer3.0.conv1"].channels_before
    assert r.accuracy > 0.5


def test_plain_plans_fine_tune_at_the_plain_rate(tiny_task, names) -> None:
    """``finetune.plain_lr`` is the rate of plans without a teacher term (the plain baselines:
    a user's own rate); distilling plans keep ``finetune.lr`` (divided by the T rule); a
    plan's own rate (a refinement's) wins over both."""
    layers = {n: LayerPlan(8, 0.0) for n in names}
    ours = CompressionPlan(layers=layers, distill=DistillPlan(temperature=2.0, alpha=0.9))
    finetune = dataclasses.replace(tiny_task.finetune, steps=2, lr=0.04, plain_lr=0.01)
    task = dataclasses.replace(tiny_task, finetune=finetune).to_dict()

    def rate(plan: CompressionPlan) -> float:
        report = run_trial(plan.to_dict(), task).result.finetune
        assert report is not None
        return report.lr

    assert rate(ours.plain()) == pytest.approx(0.01)
    assert rate(ours) == pytest.approx(0.04 / (0.9 * 2.0 + 0.1))
    assert rate(ours.plain().with_budget(2, lr=0.03)) == pytest.approx(0.03)


def test_students_distil_from_finetune_teacher_not_from_the_reference(
    tiny_task, names, tmp_path
) -> None:
    """With ``finetune.teacher`` the plan still prunes a copy of the reference, but the KD
    targets are the teacher's: a teacher that always answers class 3 drags a fully distilled
    student (alpha 1) down to about one class in ten, where the reference keeps it accurate."""
    import torch

    from autocompress.config import ModelConfig
    from autocompress.models import build_model

    ctx = trial_context(tiny_task)
    spec = ModelConfig(name="refnet", kwargs={"width": 4})
    teacher = build_model("refnet", ctx.data.input_shape, ctx.data.num_classes, spec.kwargs)
    with torch.no_grad():
        teacher.fc.weight.zero_()
        teacher.fc.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), 10) * 20.0)
    path = tmp_path / "teacher.pt"
    torch.save({"state_dict": teacher.state_dict(), "meta": {}}, path)
    finetune = dataclasses.replace(tiny_task.finetune, steps=40)
    task = dataclasses.replace(tiny_task, finetune=finetune)
    taught = dataclasses.replace(
        task,
        finetune=dataclasses.replace(finetune, teacher=spec),
        teacher_checkpoint=str(path),
    )
    ctx = trial_context(taught)
    assert ctx.model is not ctx.teacher and ctx.teacher.fc.in_features == 16  # width 4 x 4
    assert [layer.name for layer in ctx.layers] == names  # the reference's layers, not its
    plan = CompressionPlan(
        layers={n: LayerPlan(8, 0.0) for n in names}, distill=DistillPlan(1.0, alpha=1.0)
    )
    own = run_trial(plan.to_dict(), task.to_dict()).result
    forced = run_trial(plan.to_dict(), taught.to_dict()).result
    assert own.accuracy > 0.6
    assert forced.accuracy < 0.3, forced.accuracy
    assert forced.size_bytes == own.size_bytes  # the same student: only its targets differ
