"""Search spaces: rules bind to layers, sampling makes plans, baselines are in the space."""

from __future__ import annotations

import optuna
import pytest

from autocompress.config import SearchSpace
from autocompress.errors import ConfigError

LAYERS = [
    "stem.0",
    "layer1.0.conv1",
    "layer1.0.conv2",
    "layer2.0.conv1",
    "layer2.0.conv2",
    "layer2.0.shortcut.0",
    "fc",
]


def space(**rule) -> SearchSpace:
    base = {"match": "layer.*", "bits": [4, 8, "none"], "prune": [0.0, 0.5]}
    return SearchSpace.from_dict(
        {"layers": [{**base, **rule}, {"match": "fc", "bits": [8, "none"]}]}
    )


def test_sample_makes_a_plan_per_matched_layer() -> None:
    bound = space().bind(LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    plan = bound.sample(study.ask())
    assert set(plan.layers) == set(LAYERS) - {"stem.0"}
    assert plan.layers["fc"].prune_ratio == 0.0  # the head is never pruned
    assert all(p.weight_bits in (4, 8, None) for p in plan.layers.values())


def test_capture_group_shares_one_parameter_per_stage() -> None:
    bound = space(match=r"(layer\d)\..*").bind(LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    plan = bound.sample(trial)
    assert {"bits.layer1", "bits.layer2", "prune.layer1", "prune.layer2"} <= set(trial.params)
    assert plan.layers["layer2.0.conv1"] == plan.layers["layer2.0.shortcut.0"]


def test_share_rule_uses_one_parameter() -> None:
    bound = space(share="rule", name="body").bind(LAYERS, head="fc")
    assert {s.bits_param for s in bound.slots if s.layer != "fc"} == {"bits.body"}


def test_baseline_params_reproduce_fp32_and_int8() -> None:
    bound = space().bind(LAYERS, head="fc")
    for kind, bits in (("fp32", None), ("int8", 8)):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.enqueue_trial(bound.baseline_params(kind))
        plan = bound.sample(study.ask())
        assert {p.weight_bits for p in plan.layers.values()} == {bits}
        assert not plan.pruned_layers


def test_int8_prune50_baseline_halves_every_prunable_layer() -> None:
    bound = space().bind(LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(bound.baseline_params("int8-prune50"))
    plan = bound.sample(study.ask())
    assert {p.weight_bits for p in plan.layers.values()} == {8}
    assert {n: p.prune_ratio for n, p in plan.layers.items()} == {
        n: (0.0 if n == "fc" else 0.5) for n in plan.layers
    }
    no_half = space(prune=[0.0, 0.25]).bind(LAYERS, head="fc")
    with pytest.raises(ConfigError, match=r"int8-prune50 baseline needs prune 0\.5 for layer"):
        no_half.baseline_params("int8-prune50")


def test_baseline_outside_the_space_is_explained() -> None:
    bound = SearchSpace.from_dict({"layers": [{"match": ".*", "bits": [4, 8]}]}).bind(
        LAYERS, head="fc"
    )
    with pytest.raises(ConfigError, match="fp32 baseline needs bits 'none'"):
        bound.baseline_params("fp32")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"match": "nothing.*"}, "matches no layer"),
        ({"match": "layer(["}, "not a valid regex"),
        ({"bits": [0]}, "0 is not allowed"),
        ({"bits": [33]}, "33 is not allowed"),
        ({"prune": [1.5]}, "1.5 is out of range"),
        ({"prune": {"low": 0.5, "high": 0.1}}, "low 0.5 is above high 0.1"),
        ({"bitz": [4]}, "did you mean 'bits'"),
    ],
)
def test_bad_rules(rule: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        space(**rule).bind(LAYERS, head="fc")
    assert "\n" not in str(info.value)


def test_negative_temperature_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"-2\.0 is out of range"):
        SearchSpace.from_dict({"layers": [{"match": ".*"}], "distill": {"temperature": [-2.0]}})


def test_space_round_trips_through_dict() -> None:
    s = space(prune={"low": 0.0, "high": 0.75, "step": 0.25})
    assert SearchSpace.from_dict(s.to_dict()).to_dict() == s.to_dict()
