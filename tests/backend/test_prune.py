"""Structured pruning: coupled channels stay consistent, ratios and rounding are honoured."""

from __future__ import annotations

import pytest
import torch

from autocompress.backend import coupled_layers, layer_inventory, parameter_count, prune_channels
from autocompress.backend._prune import _kept_channels, get_importance
from autocompress.errors import ConfigError
from autocompress.models import build_model


def refnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("refnet", [1, 8, 8], 10, {"width": 16}).eval()


def widths(model: torch.nn.Module) -> dict[str, int]:
    return {x.name: x.out_channels for x in layer_inventory(model, torch.zeros(1, 1, 8, 8))}


def test_residual_stream_is_pruned_consistently() -> None:
    model = refnet()
    names = ["layer2.0.conv1", "layer2.0.conv2", "layer2.0.shortcut.0"]
    realized = prune_channels(
        model, dict.fromkeys(names, 0.5), torch.zeros(2, 1, 8, 8), head="fc", round_to=8
    )
    w = widths(model)
    assert w["layer2.0.conv1"] == 16 and w["layer2.0.conv2"] == 16
    assert w["layer2.0.shortcut.0"] == w["layer2.0.conv2"]  # the add stays shape-consistent
    assert model.layer3[0].conv1.in_channels == 16
    assert set(realized) >= set(names)
    model(torch.randn(3, 1, 8, 8))


def test_coupled_group_takes_the_smallest_ratio() -> None:
    model = refnet()
    # conv2 and the shortcut write the same channels; the shortcut is not in the plan (ratio 0)
    prune_channels(model, {"layer2.0.conv2": 0.5}, torch.zeros(2, 1, 8, 8), head="fc")
    assert widths(model)["layer2.0.conv2"] == 32


def test_coupled_layers_are_the_residual_streams() -> None:
    model = refnet().train()
    groups = coupled_layers(model, torch.zeros(2, 1, 8, 8), head="fc")
    assert sorted(groups) == [
        ["layer2.0.conv2", "layer2.0.shortcut.0"],
        ["layer3.0.conv2", "layer3.0.shortcut.0"],
        ["stem.0", "layer1.0.conv2"],  # layer1's identity shortcut adds into the stem's output
    ]
    assert model.training  # the mode is restored
    assert (
        coupled_layers(build_model("mlp", [1, 8, 8], 10, {}), torch.zeros(2, 1, 8, 8), head=None)
        == []
    )


def test_head_is_never_pruned() -> None:
    with pytest.raises(ConfigError, match="classifier head"):
        prune_channels(refnet(), {"fc": 0.5}, torch.zeros(2, 1, 8, 8), head="fc")


def test_unknown_layer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a conv/linear layer"):
        prune_channels(refnet(), {"layer9.conv": 0.5}, torch.zeros(2, 1, 8, 8), head="fc")


@pytest.mark.parametrize(
    ("channels", "ratio", "round_to", "kept"),
    [(64, 0.5, 8, 32), (64, 0.3, 8, 48), (64, 0.95, 8, 8), (32, 0.25, 8, 24), (6, 0.5, 8, 3)],
)
def test_rounding_of_kept_channels(channels: int, ratio: float, round_to: int, kept: int) -> None:
    assert _kept_channels(channels, ratio, round_to) == kept


def test_importance_is_pluggable_and_changes_the_choice() -> None:
    a, b = refnet(), refnet()
    plan = {"layer3.0.conv1": 0.5}
    prune_channels(a, plan, torch.zeros(2, 1, 8, 8), head="fc", importance=get_importance("l1"))
    torch.manual_seed(1)
    prune_channels(
        b, plan, torch.zeros(2, 1, 8, 8), head="fc", importance=get_importance("random")
    )
    assert parameter_count(a) == parameter_count(b)
    assert not torch.equal(a.layer3[0].conv1.weight, b.layer3[0].conv1.weight)
    with pytest.raises(ConfigError, match="unknown"):
        get_importance("taylor-magic")
