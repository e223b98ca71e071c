"""The plan: frozen, versioned, keyed by module name, exact JSON round-trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan


def make_plan() -> CompressionPlan:
    return CompressionPlan(
        layers={
            "layer2.0.conv1": LayerPlan(4, 0.5),
            "fc": LayerPlan(8, 0.0),
            "stem.0": LayerPlan(None, 0.25),
        },
        distill=DistillPlan(temperature=4.0, alpha=0.7),
    )


def test_json_round_trip_is_exact() -> None:
    plan = make_plan()
    again = CompressionPlan.from_json(plan.to_json())
    assert again == plan
    assert again.to_json() == plan.to_json()
    assert json.loads(plan.to_json())["version"] == 1


def test_plan_is_frozen_and_hashable() -> None:
    plan = make_plan()
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.distill = None  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.layers["fc"] = LayerPlan(2)  # type: ignore[index]
    assert hash(plan) == hash(CompressionPlan.from_dict(plan.to_dict()))


def test_queries_and_summary() -> None:
    plan = make_plan()
    assert plan.quantized_layers == {"fc": 8, "layer2.0.conv1": 4}
    assert plan.pruned_layers == {"layer2.0.conv1": 0.5, "stem.0": 0.25}
    assert not plan.is_fp32
    assert "T=4" in plan.summary() and "4x1" in plan.summary()
    assert plan.without_finetuning().distill is None
    assert CompressionPlan.uniform(["a", "b"], weight_bits=None).is_fp32


def test_a_rung_budget_travels_with_the_plan() -> None:
    plan = make_plan()
    assert "steps" not in plan.to_dict()["distill"]  # unset: plans of older studies stay equal
    longer = plan.with_budget(1000, lr=0.03)
    assert longer.distill == DistillPlan(temperature=4.0, alpha=0.7, steps=1000, lr=0.03)
    assert longer.layers == plan.layers and longer != plan
    assert CompressionPlan.from_json(longer.to_json()) == longer
    assert "steps=1000" in longer.summary()
    with pytest.raises(ConfigError, match="post-training"):
        plan.without_finetuning().with_budget(1000)
    rung0 = plan.with_budget(0)  # rung 0: no fine-tuning, the distillation settings kept
    assert rung0.distill.steps == 0 and rung0.distill.temperature == 4.0
    assert CompressionPlan.from_dict(rung0.to_dict()) == rung0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"layers": {"a": {"weight_bits": 0}}}, "weight_bits=0"),
        ({"layers": {"a": {"weight_bits": 33}}}, "weight_bits=33"),
        ({"layers": {"a": {"prune_ratio": 1.5}}}, "prune_ratio=1.5"),
        ({"layers": {}, "distill": {"temperature": -1}}, "temperature=-1"),
        ({"layers": {}, "version": 7}, "plan version 7"),
        ({"layers": {}, "distill": {"steps": -1}}, "steps=-1"),
        ({"layers": {}, "distill": {"lr": -1}}, "lr=-1"),
        ({"layers": {}, "extra": 1}, "unknown key"),
    ],
)
def test_bad_plans_are_one_line_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        CompressionPlan.from_dict(data)
    assert "\n" not in str(info.value)


def test_linear_schemes_round_trip_and_leave_static_plans_unchanged() -> None:
    static = LayerPlan(weight_bits=8)
    assert static.to_dict() == {"weight_bits": 8, "prune_ratio": 0.0}  # stored studies stay equal
    assert LayerPlan(weight_bits=8, scheme="static") == static
    plan = CompressionPlan(
        layers={
            "fc1": LayerPlan(weight_bits=4, scheme="nbits", block_size=32),
            "fc2": LayerPlan(weight_bits=8, scheme="dynamic"),
            "conv": static,
        }
    )
    assert CompressionPlan.from_json(plan.to_json()) == plan
    assert plan.layer_schemes == {"fc1": ("nbits", 32), "fc2": ("dynamic", None)}
    assert "dynamicx1 nbits/32x1" in plan.summary()
    assert plan.plain().layer_schemes == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weight_bits": 8, "scheme": "fast"}, "scheme='fast' is not supported"),
        ({"weight_bits": 3, "scheme": "nbits", "block_size": 32}, "runs \\[2, 4, 8\\]-bit"),
        ({"weight_bits": 4, "scheme": "nbits"}, "needs a block_size"),
        ({"weight_bits": 8, "block_size": 32}, "other schemes take none"),
        ({"weight_bits": 4, "scheme": "nbits", "block_size": 48}, "block_size=48"),
        ({"scheme": "dynamic"}, "needs weight_bits"),
    ],
)
def test_bad_schemes_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LayerPlan(**kwargs)
