"""benchmarks/recipe.py: variant settings parse and reach the task in each field's type."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autocompress.config import FinetuneConfig

import recipe as bench  # benchmarks/recipe.py (tests/benchmarks/conftest.py)

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class _Task:
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)


def test_variants_parse_numbers_and_words_and_reach_the_task_typed() -> None:
    text = "ours:;aw:optimizer=adamw,lr=0.001,gptq_batches=1;kd:alpha=0.9"
    variants = bench.parse_variants(text)
    assert variants == {
        "ours": {},
        "aw": {"optimizer": "adamw", "lr": 0.001, "gptq_batches": 1.0},
        "kd": {"alpha": 0.9},
    }
    finetune = bench.recipe_task(_Task(), 60, 2, variants["aw"]).finetune
    assert (finetune.optimizer, finetune.lr) == ("adamw", 0.001)
    assert (finetune.steps, finetune.seed) == (60, 2)
    assert isinstance(finetune.gptq_batches, int) and finetune.gptq_batches == 1


def test_plain_named_variants_run_the_plain_pipeline_and_others_the_recipe_defaults() -> None:
    from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan

    plan = CompressionPlan({"conv": LayerPlan(4, 0.5), "fc": LayerPlan(4, 0.0)})
    for name in ("plain", "plain-lr4"):
        distill = bench.recipe_plan(plan, name, {"plain_lr": 0.04}).distill
        assert distill is not None and distill.alpha == 0.0
    ours = bench.recipe_plan(plan, "ours", {}).distill
    assert ours == DistillPlan()  # the recipe's own T and alpha
    assert bench.recipe_plan(plan, "kd", {"alpha": 0.5}).distill == DistillPlan(alpha=0.5)


def test_uniform_plans_are_named_by_bits_and_percent_and_bad_names_stop_in_one_line() -> None:
    import pytest

    plan = bench.uniform_plan("4b-62.5%", ["conv1", "conv2", "fc"], "fc")
    assert {n: (p.weight_bits, p.prune_ratio) for n, p in plan.layers.items()} == {
        "conv1": (4, 0.625),
        "conv2": (4, 0.625),
        "fc": (4, 0.0),
    }
    with pytest.raises(SystemExit, match="neither a study plan nor"):
        bench.uniform_plan("mixed-9", ["conv1"], None)


def test_the_header_states_a_teachers_training_cost_beside_its_accuracy() -> None:
    from types import SimpleNamespace

    from autocompress.config import load_experiment

    overrides = ["finetune.teacher.kwargs.width=48", "finetune.teacher.train.augment=true"]
    config = load_experiment(ROOT / "experiments" / "fashion_mnist.yaml", overrides)
    meta = {"params": 690970, "train_seconds": 3512.4, "trained_on": "cpu"}
    teacher = SimpleNamespace(val_accuracy=0.9412, test_accuracy=0.9355, meta=meta)
    line = bench._teacher_line(config, teacher)
    assert line == (
        "; teacher refnet {'width': 48} (690970 parameters), 2 epochs, augmented, trained in "
        "3512 s on cpu, val 94.12%, test 93.55%"
    )
    no_teacher = load_experiment(ROOT / "experiments" / "fashion_mnist.yaml", [])
    assert bench._teacher_line(no_teacher, teacher) == ""


def test_a_variant_can_distil_from_the_reference_beside_the_experiments_teacher() -> None:
    from autocompress.config import ModelConfig
    from autocompress.worker import Task

    teacher = ModelConfig(name="refnet", kwargs={"width": 48})
    task = Task(
        finetune=FinetuneConfig(teacher=teacher), checkpoint="r.pt", teacher_checkpoint="t.pt"
    )
    ours = bench.recipe_task(task, 1000, 0, {})
    assert (ours.finetune.teacher, ours.teacher_checkpoint) == (teacher, "t.pt")
    ref = bench.recipe_task(task, 1000, 0, bench.parse_variants("ref:teacher=reference")["ref"])
    assert (ref.finetune.teacher, ref.teacher_checkpoint, ref.checkpoint) == (None, None, "r.pt")
    with pytest.raises(SystemExit, match="the one choice is teacher=reference"):
        bench.recipe_task(task, 1000, 0, {"teacher": "big"})
