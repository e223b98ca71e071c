"""Search spaces bound to a model's layers: sampling makes plans, baselines are in the space."""

from __future__ import annotations

import optuna
import pytest

from autocompress.config import SearchSpace
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.study import bind_space

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
    bound = bind_space(space(), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    plan = bound.sample(study.ask())
    assert set(plan.layers) == set(LAYERS) - {"stem.0"}
    assert plan.layers["fc"].prune_ratio == 0.0  # the head is never pruned
    assert all(p.weight_bits in (4, 8, None) for p in plan.layers.values())


def test_capture_group_shares_one_parameter_per_stage() -> None:
    bound = bind_space(space(match=r"(layer\d)\..*"), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    plan = bound.sample(trial)
    assert {"bits.layer1", "bits.layer2", "prune.layer1", "prune.layer2"} <= set(trial.params)
    assert plan.layers["layer2.0.conv1"] == plan.layers["layer2.0.shortcut.0"]


def test_coupled_layers_share_the_first_layers_prune_parameter() -> None:
    coupled = [["layer2.0.shortcut.0", "layer2.0.conv2"], ["stem.0", "layer1.0.conv2"]]
    bound = bind_space(space(prune=[0.0, 0.25, 0.5]), LAYERS, head="fc", coupled=coupled)
    prune = {s.layer: s.prune_param for s in bound.slots}
    # forward order decides: conv2 runs before the shortcut; stem.0 is matched by no rule
    assert prune["layer2.0.shortcut.0"] == prune["layer2.0.conv2"] == "prune.layer2.0.conv2"
    assert prune["layer1.0.conv2"] == "prune.layer1.0.conv2"
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    plan = bound.sample(trial)
    assert "prune.layer2.0.shortcut.0" not in trial.params
    assert (
        plan.layers["layer2.0.shortcut.0"].prune_ratio == plan.layers["layer2.0.conv2"].prune_ratio
    )
    uncoupled = bind_space(space(prune=[0.0, 0.25, 0.5]), LAYERS, head="fc")
    assert len(uncoupled.layer_rule_params()) == len(bound.layer_rule_params()) + 1
    study.enqueue_trial(bound.baseline_params("int8-prune50"))
    assert set(bound.sample(study.ask()).pruned_layers) == set(LAYERS) - {"stem.0", "fc"}


def test_choices_are_ordinal_parameters_stored_as_indices() -> None:
    bound = bind_space(space(bits=[8, "none", 4], prune=[0.5, 0.0]), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(bound.encode({"bits.layer2.0.conv1": "none", "prune.layer2.0.conv1": 0.5}))
    trial = study.ask()
    plan = bound.sample(trial)
    dist = trial.distributions["bits.layer2.0.conv1"]
    assert isinstance(dist, optuna.distributions.IntDistribution)
    assert (dist.low, dist.high) == (0, 2)  # 4, 8, none in ascending order
    assert trial.params["bits.layer2.0.conv1"] == 2 and trial.params["prune.layer2.0.conv1"] == 1
    assert plan.layers["layer2.0.conv1"] == LayerPlan(None, 0.5)
    assert bound.encode({"bits.fc": 8, "other": "kept"}) == {"bits.fc": 0, "other": "kept"}
    with pytest.raises(ConfigError, match="not one of the choices"):
        bound.encode({"bits.fc": 3})


def test_rule_of_a_layer_and_its_bit_choices() -> None:
    bound = bind_space(space(bits=[8, "none", 4]), LAYERS, head="fc")
    assert bound.rule_of("layer1.0.conv1").bit_choices == [8, "none", 4]
    assert bound.rule_of("fc").bit_choices == [8, "none"] and not bound.rule_of("fc").prunes
    assert "stem.0" not in bound.layer_names


def test_share_rule_uses_one_parameter() -> None:
    bound = bind_space(space(share="rule", name="body"), LAYERS, head="fc")
    assert {s.bits_param for s in bound.slots if s.layer != "fc"} == {"bits.body"}


def test_baseline_params_reproduce_fp32_and_int8() -> None:
    bound = bind_space(space(), LAYERS, head="fc")
    for kind, bits in (("fp32", None), ("int8", 8)):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.enqueue_trial(bound.baseline_params(kind))
        plan = bound.sample(study.ask())
        assert {p.weight_bits for p in plan.layers.values()} == {bits}
        assert not plan.pruned_layers


def test_int8_prune50_baseline_halves_every_prunable_layer() -> None:
    bound = bind_space(space(), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(bound.baseline_params("int8-prune50"))
    plan = bound.sample(study.ask())
    assert {p.weight_bits for p in plan.layers.values()} == {8}
    assert {n: p.prune_ratio for n, p in plan.layers.items()} == {
        n: (0.0 if n == "fc" else 0.5) for n in plan.layers
    }
    no_half = bind_space(space(prune=[0.0, 0.25]), LAYERS, head="fc")
    with pytest.raises(ConfigError, match=r"int8-prune50 baseline needs prune 0\.5 for layer"):
        no_half.baseline_params("int8-prune50")


def test_uniform_params_take_the_nearest_allowed_choices() -> None:
    rules = [
        {"match": "stem.0", "bits": [8, "none"], "prune": [0.0, 0.5]},
        {
            "match": "layer1.*",
            "bits": [3, 5, 8, "none"],
            "prune": {"low": 0, "high": 0.6, "step": 0.2},
        },
        {"match": "layer2.*", "bits": [2, 4, 6], "prune": [0.0, 0.125, 0.375]},
        {"match": "fc", "bits": ["none"]},
    ]
    bound = bind_space(SearchSpace.from_dict({"layers": rules}), LAYERS, head="fc")
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(bound.uniform_params(4, 0.25))
    plan = bound.sample(study.ask())
    bits = {n: p.weight_bits for n, p in plan.layers.items()}
    ratios = {n: p.prune_ratio for n, p in plan.layers.items()}
    # 4 bits: 8 where only 8 is an integer, 5 over 3 on a tie, 4 where allowed, fp32 where only
    assert bits == {"stem.0": 8, "layer1.0.conv1": 5, "layer1.0.conv2": 5,
                    "layer2.0.conv1": 4, "layer2.0.conv2": 4, "layer2.0.shortcut.0": 4,
                    "fc": None}  # fmt: skip
    # 25%: the largest allowed ratio not above it (on the range's grid), the lowest if none is
    assert ratios["stem.0"] == 0.0 and ratios["layer2.0.conv1"] == 0.125
    assert ratios["layer1.0.conv1"] == pytest.approx(0.2) and ratios["fc"] == 0.0


def test_baseline_outside_the_space_is_explained() -> None:
    bound = bind_space(
        SearchSpace.from_dict({"layers": [{"match": ".*", "bits": [4, 8]}]}), LAYERS, head="fc"
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
        bind_space(space(**rule), LAYERS, head="fc")
    assert "\n" not in str(info.value)


TOKENS = ["blocks.0.attn.q", "blocks.0.mlp.up", "head"]


def scheme_space(scheme: list[str] | None, bits: list = [4, 8]) -> SearchSpace:  # noqa: B006
    rule: dict = {"match": "blocks.*", "bits": bits, "prune": [0.0]}
    if scheme is not None:
        rule["scheme"] = scheme
    return SearchSpace.from_dict({"layers": [rule, {"match": "head", "bits": [8]}]})


def test_a_space_without_schemes_keeps_its_parameters_and_signature() -> None:
    """Spaces made before schemes existed: no scheme parameter, no scheme key stored."""
    bound = bind_space(scheme_space(None), TOKENS, head="head")
    assert not any(k.startswith("scheme.") for k in bound.specs())
    assert "scheme" not in bound.space.to_dict()["layers"][0]
    assert all("scheme_param" not in s.signed() for s in bound.slots)
    plan = bound.sample(optuna.create_study(directions=["maximize"]).ask())
    assert plan.layer_schemes == {}


def test_scheme_choices_are_a_categorical_parameter_per_layer() -> None:
    bound = bind_space(scheme_space(["static", "dynamic", "nbits/32"]), TOKENS, head="head")
    specs = bound.specs()
    assert specs["scheme.blocks.0.attn.q"] == ["static", "dynamic", "nbits/32"]
    assert "scheme.head" not in specs  # its rule has the one default scheme
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        plan = bound.sample(trial)
        layer = plan.layers["blocks.0.attn.q"]
        seen.add((layer.scheme, layer.block_size))
        assert trial.params["scheme.blocks.0.attn.q"] in specs["scheme.blocks.0.attn.q"]
        study.tell(trial, 0.0)
    assert seen == {(None, None), ("dynamic", None), ("nbits", 32)}
    study.enqueue_trial(bound.baseline_params("int8"))
    plan = bound.sample(study.ask())
    assert plan.layer_schemes == {}  # the int8 baseline is the plain static kernel
    study.enqueue_trial(bound.baseline_params("int8-dynamic"))
    plan = bound.sample(study.ask())
    assert plan.layer_schemes["blocks.0.attn.q"] == ("dynamic", None)  # as quantize_dynamic does
    assert "head" not in plan.layer_schemes and plan.layers["head"].weight_bits == 8
    static_only = bind_space(scheme_space(["static"]), TOKENS, head="head")
    with pytest.raises(ConfigError, match="int8-dynamic baseline needs a rule whose scheme"):
        static_only.baseline_params("int8-dynamic")


@pytest.mark.parametrize(
    ("scheme", "bits", "message"),
    [
        (["nbits/48"], [4], "'nbits/48' is not allowed"),
        (["static", "nbits/32"], [3, 4], "bits has \\[3\\]"),
        ([], [4], "give at least one choice"),
    ],
)
def test_bad_scheme_choices_are_named(scheme: list[str], bits: list, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        scheme_space(scheme, bits)


def test_the_shipped_linear_schemes_space_binds_to_an_mlp() -> None:
    from pathlib import Path

    path = Path(__file__).parents[2] / "search_spaces" / "linear_schemes.yaml"
    bound = bind_space(SearchSpace.from_yaml(path), ["1", "3", "5"], head="5")
    assert {"scheme.1", "scheme.3", "scheme.5"} <= set(bound.specs())
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(1))
    plans = [bound.sample(study.ask()) for _ in range(12)]
    assert any(p.layer_schemes for p in plans)
    assert all(CompressionPlan.from_json(p.to_json()) == p for p in plans)


@pytest.mark.parametrize(
    ("temperature", "alpha", "want"),
    [
        ([1.0, 2.0, 4.0], [0.5, 0.9], (2.0, 0.9)),  # the recipe's defaults, where allowed
        ([1.0, 4.0], [0.5, 0.7], (1.0, 0.5)),  # else the lowest of each list
        ({"low": 1.0, "high": 8.0}, {"low": 0.0, "high": 1.0, "step": 0.25}, (2.0, 0.0)),
    ],
)
def test_hand_made_plans_distill_with_the_recipe_defaults_the_space_allows(
    temperature: object, alpha: object, want: tuple[float, float]
) -> None:
    rules = [{"match": ".*", "bits": [4, 8], "prune": [0.0, 0.5]}]
    data = {"layers": rules, "distill": {"temperature": temperature, "alpha": alpha}}
    bound = bind_space(SearchSpace.from_dict(data), LAYERS, head="fc")
    for params in (bound.uniform_params(4, 0.5), bound.baseline_params("int8-prune50")):
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.enqueue_trial(params)
        distill = bound.sample(study.ask()).distill
        assert distill is not None
        assert (distill.temperature, distill.alpha) == pytest.approx(want)


def test_int8_layers_wider_than_the_target_computes_exactly_are_capped() -> None:
    """On a CPU whose int8 saturates (runtimes.widest_exact_bits: 7) the driver caps a plan's 8
    at 7; narrower bits, fp32 and MatMulNBits (2, 4 or 8 bits) are kept, and a stored 7-bit
    plan encodes back to the choice it came from (so it can warm-start again)."""
    rules = {
        "layers": [
            {"match": "(layer1).*", "bits": [4, 8, "none"]},
            {"match": "(layer2).*", "bits": [4, 8]},
            {"match": "fc", "bits": [8], "scheme": ["nbits/16"]},
        ]
    }
    bound = bind_space(SearchSpace.from_dict(rules), LAYERS, head="fc", widest_bits=7)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial(bound.encode({"bits.layer1": 8, "bits.layer2": 4}))
    plan = bound.sample(study.ask()).capped(bound.widest_bits)
    assert plan.layers["layer1.0.conv1"].weight_bits == 7
    assert plan.layers["layer2.0.conv1"].weight_bits == 4
    assert plan.layers["fc"].weight_bits == 8 and plan.layers["fc"].scheme == "nbits"
    assert plan.capped(8) == plan and plan.capped(7) == plan
    assert bound.encode({"bits.layer1": 7}) == bound.encode({"bits.layer1": 8})
    assert bind_space(SearchSpace.from_dict(rules), LAYERS, head="fc").widest_bits == 8
