"""Grouped and depthwise convolutions and concatenations keep their numerics when pruned (#19).

Each check runs the original layers on the original activations with the removed channels zeroed
and asks that every channel the pruned model keeps equals one of those outputs, from the same
conv group: a kept channel that read another group's inputs, or a consumer that lost the wrong
input channels, matches nothing.
"""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from torch import nn

from autocompress.backend import prune_channels
from autocompress.errors import UnsupportedPlanError
from autocompress.models import build_model


class GroupedNet(nn.Module):
    """A conv, a 4-group conv (64 -> 64, 16 channels per group), a depthwise conv, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 64, 3, padding=1)
        self.g = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.d = nn.Conv2d(64, 64, 3, padding=1, groups=64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.d(torch.relu(self.g(torch.relu(self.a(x)))))
        return self.fc(x.mean((2, 3)))


def matches(original: torch.Tensor, pruned: torch.Tensor) -> list[int]:
    """For each channel of ``pruned``, the channel of ``original`` it equals (asserted found)."""
    found = []
    for j in range(pruned.shape[1]):
        same = [
            i
            for i in range(original.shape[1])
            if torch.allclose(pruned[:, j], original[:, i], atol=1e-5)
        ]
        assert same, f"kept channel {j} equals no original channel"
        found.append(same[0])
    return found


def masked(t: torch.Tensor, keep: list[int]) -> torch.Tensor:
    out = torch.zeros_like(t)
    out[:, keep] = t[:, keep]
    return out


def test_grouped_and_depthwise_convs_keep_each_group_reading_its_own_inputs() -> None:
    torch.manual_seed(0)
    original = GroupedNet().eval()
    model = copy.deepcopy(original)
    x = torch.randn(4, 1, 8, 8)
    realized = prune_channels(model, {"a": 0.25, "g": 0.25, "d": 0.25}, x, head="fc", round_to=8)
    assert realized == {"a": 0.25, "g": 0.25, "d": 0.25}
    assert (model.g.groups, model.g.in_channels, model.g.out_channels) == (4, 48, 48)

    kept_a = matches(original.a(x), model.a(x))
    assert list(collections.Counter(i // 16 for i in kept_a).values()) == [12] * 4
    expected_g = original.g(masked(torch.relu(original.a(x)), kept_a))
    kept_g = matches(expected_g, model.g(torch.relu(model.a(x))))
    # 12 channels kept in each group, each computed by its own group's filters
    assert [i // 16 for i in kept_g] == [j // 12 for j in range(48)]
    # the depthwise conv lost the same channels as the grouped conv feeding it
    expected_d = original.d(masked(torch.relu(expected_g), kept_g))
    kept_d = matches(expected_d, model.d(torch.relu(model.g(torch.relu(model.a(x))))))
    assert kept_d == kept_g
    assert model(x).shape == (4, 10)


def _fire(fire: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fire module's squeeze and concatenated expand outputs, before their ReLUs (a ReLU
    output can be zero on every input, and then it matches any dead channel)."""
    s = fire.squeeze(x)
    return s, torch.cat([fire.expand1(torch.relu(s)), fire.expand3(torch.relu(s))], 1)


@pytest.mark.parametrize("groups", [1, 4])
def test_concatenation_consumers_lose_exactly_the_matching_inputs(groups: int) -> None:
    torch.manual_seed(0)
    original = build_model("squeezenet", [1, 8, 8], 10, {"width": 32, "groups": groups}).eval()
    model = copy.deepcopy(original)
    x = torch.randn(4, 1, 8, 8)
    plan = {"2.expand1": 0.5, "2.expand3": 0.25, "4.squeeze": 0.5, "4.expand3": 0.5}
    # expand1 goes first: before the fix, expand3's group kept its stale concat offsets
    realized = prune_channels(model, plan, x, head="6", round_to=4)
    assert realized == plan

    stem = torch.relu(original[0](x))
    _, f1 = _fire(original[2], stem)
    _, f1_new = _fire(model[2], stem)
    kept1 = matches(f1, f1_new)
    assert len(kept1) == 16 + 24
    # fire 2's squeeze lost exactly the concat channels that went, so it computes the original
    # squeeze on the original activations with those zeroed
    f1_in = masked(original[3](torch.relu(f1)), kept1)
    s, _ = _fire(original[4], f1_in)
    s_new, f2_new = _fire(model[4], model[3](torch.relu(f1_new)))
    kept_s = matches(s, s_new)
    # the fire's grouped 3x3 expand sees its squeeze's channels drop evenly per group
    per_group = collections.Counter(i // (16 // groups) for i in kept_s)
    assert sorted(per_group.values()) == [8 // groups] * groups
    s_in = masked(torch.relu(s), kept_s)
    f2 = torch.cat([original[4].expand1(s_in), original[4].expand3(s_in)], 1)
    kept2 = matches(f2, f2_new)
    expand3 = [i - 32 for i in kept2 if i >= 32]
    assert [i // (32 // groups) for i in expand3] == [j // (16 // groups) for j in range(16)]
    # the head (a 1x1 conv after the concat) lost exactly the concat channels that went
    logits = original[6:](masked(torch.relu(f2), kept2))
    assert torch.allclose(model[6:](torch.relu(f2_new)), logits, atol=1e-5)


class TwoIntoCat(nn.Module):
    """Two convs concatenated (in either order) into a 1x1 conv."""

    def __init__(self, order: int) -> None:
        super().__init__()
        self.order = order
        self.a = nn.Conv2d(1, 16, 3, padding=1)
        self.b = nn.Conv2d(1, 16, 3, padding=1)
        self.c = nn.Conv2d(32, 8, 1)
        self.fc = nn.Linear(8, 10)

    def joined(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.a(x), self.b(x)]
        return torch.cat(y if self.order else y[::-1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c(self.joined(x)).mean((2, 3)))


@pytest.mark.parametrize("order", [0, 1])
def test_every_input_of_a_concat_can_be_pruned(order: int) -> None:
    # before #19: IndexError "index 28 is out of bounds for dimension 0 with size 28" (the
    # second group's concat offsets were taken before the first group was pruned)
    torch.manual_seed(0)
    original = TwoIntoCat(order).eval()
    model = copy.deepcopy(original)
    x = torch.randn(4, 1, 8, 8)
    realized = prune_channels(model, {"a": 0.5, "b": 0.25}, x, head="fc", round_to=1)
    assert realized == {"a": 0.5, "b": 0.25}
    kept = matches(original.joined(x), model.joined(x))
    assert torch.allclose(model.c(model.joined(x)), original.c(masked(original.joined(x), kept)))


class ConcatIntoGroups(nn.Module):
    """Two convs concatenated into a 2-group conv: each input conv feeds one of its groups."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 8, 3, padding=1)
        self.b = nn.Conv2d(1, 8, 3, padding=1)
        self.g = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.g(torch.cat([self.a(x), self.b(x)], 1))
        return self.fc(y.mean((2, 3)))


def test_grouped_conv_fed_by_part_of_a_concat_is_refused() -> None:
    with pytest.raises(UnsupportedPlanError, match=r"'g' is a grouped convolution.*ratio 0"):
        prune_channels(
            ConcatIntoGroups(), {"a": 0.5}, torch.zeros(2, 1, 8, 8), head="fc", round_to=1
        )
