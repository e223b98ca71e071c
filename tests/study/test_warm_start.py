"""Warm starts a user gives as plan files: read, checked against the space, enqueued exactly."""

from __future__ import annotations

import json

import optuna
import pytest

from autocompress.config import SearchSpace
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.study import bind_space
from autocompress.study._warm_start import plan_params, read_plan
from tests.study.test_space import LAYERS


def _schemes_space() -> SearchSpace:
    return SearchSpace.from_dict(
        {
            "layers": [
                {"match": r"(layer\d)\..*", "bits": [2, 4, 8, "none"], "prune": [0.0, 0.5]},
                {"match": "fc", "bits": [4, 8], "scheme": ["static", "dynamic", "nbits/32"]},
            ],
            "distill": {"temperature": [1.0, 2.0, 4.0], "alpha": [0.5, 0.9]},
        }
    )


def test_plan_params_enqueue_exactly_the_users_plan() -> None:
    """A user's plan (or another study's member) becomes the parameters that sample it back."""
    bound = bind_space(_schemes_space(), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(5):
        plan = bound.sample(study.ask())
        fresh = optuna.create_study(directions=["maximize", "minimize"])
        fresh.enqueue_trial(plan_params(bound, plan, "mine.json"))
        assert bound.sample(fresh.ask()) == plan


def test_plan_params_explain_a_plan_the_space_cannot_make() -> None:
    bound = bind_space(_schemes_space(), LAYERS, head="fc")
    plan = bound.sample(optuna.create_study(directions=["maximize"]).ask())
    layers = dict(plan.layers)
    cases = {
        "lacks layer 'fc'": {k: v for k, v in layers.items() if k != "fc"},
        "has no layer 'stem.0'": {**layers, "stem.0": LayerPlan(8)},
        r"'layer1.0.conv1' has bits 6, .*choices \[2, 4, 8, 'none'\]": {
            **layers, "layer1.0.conv1": LayerPlan(6, 0.0)},
        r"'fc' has prune 0.5, but its rule has no prune choices; set its prune_ratio to 0.0": {
            **layers, "fc": LayerPlan(8, 0.5)},
        r"'fc' has scheme 'nbits/128'": {**layers, "fc": LayerPlan(4, 0.0, "nbits", 128)},
        "sharing its parameter 'bits.layer1'": {
            **layers, "layer1.0.conv1": LayerPlan(2), "layer1.0.conv2": LayerPlan(4)},
    }  # fmt: skip
    for message, changed in cases.items():
        with pytest.raises(ConfigError, match=f"^mine.json: .*{message}"):
            plan_params(bound, CompressionPlan(changed, plan.distill), "mine.json")


def test_plan_files_are_read_as_plans_or_export_manifests(tmp_path) -> None:
    plan = CompressionPlan({"fc": LayerPlan(4, 0.0, "nbits", 32), "layer1.0.conv1": LayerPlan(8)})
    (tmp_path / "plan.yaml").write_text(json.dumps(plan.to_dict()))  # JSON is YAML
    (tmp_path / "manifest.json").write_text(json.dumps({"trial": 7, "plan": plan.to_dict()}))
    assert read_plan(tmp_path / "plan.yaml") == read_plan(tmp_path / "manifest.json") == plan
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json: not readable as a plan"):
        read_plan(tmp_path / "bad.json")
    (tmp_path / "bits.json").write_text('{"layers": {"fc": {"weight_bits": 1}}}')
    with pytest.raises(ConfigError, match=r"bits\.json: weight_bits=1 is not supported"):
        read_plan(tmp_path / "bits.json")


def test_a_layer_its_model_never_prunes_is_named_with_the_fix() -> None:
    rules = {"layers": [{"match": ".*", "bits": [4, 8], "prune": [0.0, 0.5]}]}
    bound = bind_space(SearchSpace.from_dict(rules), LAYERS, head="fc")
    plan = bound.sample(optuna.create_study(directions=["maximize"]).ask())
    layers = {**plan.layers, "fc": LayerPlan(8, 0.5)}
    with pytest.raises(ConfigError, match=r"'fc' has prune 0.5, but this model never prunes it"):
        plan_params(bound, CompressionPlan(layers, plan.distill), "mine.json")


def test_a_plan_stored_where_int8_saturates_warm_starts_its_space_again() -> None:
    """A member exported on a CPU whose int8 saturates holds 7 bits for the space's 8; it
    warm-starts the same space (there or elsewhere) as the choice it was sampled from."""
    capped = bind_space(_schemes_space(), LAYERS, head="fc", widest_bits=7)
    study = optuna.create_study(directions=["maximize"])
    study.enqueue_trial(capped.encode({"bits.layer1": 8, "bits.layer2": 4}))
    plan = capped.sample(study.ask()).capped(7)
    assert plan.layers["layer1.0.conv1"].weight_bits == 7
    fresh = optuna.create_study(directions=["maximize"])
    fresh.enqueue_trial(plan_params(capped, plan, "member.json"))
    assert capped.sample(fresh.ask()).capped(7) == plan
    # on a CPU that runs 8 bits exactly, 7 is not one of the space's choices: named, not guessed
    with pytest.raises(ConfigError, match="has bits 7, which its rule does not allow"):
        plan_params(bind_space(_schemes_space(), LAYERS, head="fc"), plan, "member.json")
