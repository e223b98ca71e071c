"""Feature distillation on kept channels: the right teacher channel for each student channel,
a loss that is zero on the teacher itself, and a term that pulls a pruned student's features."""

from __future__ import annotations

import copy

import pytest
import torch

from autocompress.backend import FinetuneSettings, finetune, prune_channels
from autocompress.backend._features import FeatureMatch, kept_channels
from autocompress.backend._finetune import _feature_weight
from autocompress.data import endless_batches
from autocompress.models import build_model
from autocompress.plan import DistillPlan

CONVS = [
    "stem.0",
    "layer1.0.conv1",
    "layer1.0.conv2",
    "layer2.0.conv1",
    "layer2.0.conv2",
    "layer3.0.conv1",
    "layer3.0.conv2",
]


@pytest.fixture(scope="module")
def teacher() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("refnet", [1, 8, 8], 10, {"width": 16})
    for m in model.modules():  # trained-looking affine pairs, all distinct
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
    return model.eval()


def pruned(teacher: torch.nn.Module) -> torch.nn.Module:
    model = copy.deepcopy(teacher)
    prune_channels(model, dict.fromkeys(CONVS, 0.5), torch.randn(1, 1, 8, 8), head="fc")
    return model


def test_each_kept_channel_maps_to_the_teacher_channel_it_was_copied_from(teacher) -> None:
    student = pruned(teacher)
    index = kept_channels(student, teacher)
    norms = dict(teacher.named_modules())
    assert "layer3.0.bn1" in index and "stem.1" in index
    assert len(index["stem.1"]) < norms["stem.1"].num_features  # pruned, and still matched
    for name, kept in index.items():
        mine = dict(student.named_modules())[name]
        assert len(kept) == mine.num_features <= norms[name].num_features
        assert torch.equal(norms[name].weight[kept], mine.weight)
        assert torch.equal(norms[name].running_var[kept], mine.running_var)


def test_a_trained_or_foreign_norm_is_left_out_not_guessed(teacher) -> None:
    student = pruned(teacher)
    with torch.no_grad():
        student.layer2[0].bn1.weight.add_(0.01)  # as after a fine-tuning step
    index = kept_channels(student, teacher)
    assert "layer2.0.bn1" not in index and "layer2.0.bn2" in index
    other = build_model("refnet", [1, 8, 8], 10, {"width": 16})
    assert kept_channels(other, teacher) == {}  # default pairs (1, 0) are not one to one


def test_the_loss_is_zero_on_the_teachers_own_channels_and_positive_after_pruning(
    teacher,
) -> None:
    x = torch.randn(16, 1, 8, 8)
    same = FeatureMatch(copy.deepcopy(teacher), teacher)
    with torch.no_grad(), same.hooked():
        teacher(x)
        same._modules[0][""](x)
    assert float(same.loss()) == pytest.approx(0.0, abs=1e-10)
    match = FeatureMatch(pruned(teacher), teacher)
    with torch.no_grad(), match.hooked():
        teacher(x)
        match._modules[0][""](x)
    assert float(match.loss()) > 1e-3
    handles = sum(len(m._forward_hooks) for m in match._modules[0].values())
    assert handles == 0  # hooks removed after the block


def test_the_feature_term_pulls_a_pruned_students_features_toward_the_teacher(setting) -> None:
    splits, teacher = setting
    x = splits.val_x[:256]

    def feature_error(feature_weight: float) -> float:
        student = copy.deepcopy(teacher)
        prune_channels(student, dict.fromkeys(CONVS, 0.5), x[:1], head="fc")
        match = FeatureMatch(student, teacher)  # matched before training moves the pairs
        settings = FinetuneSettings(steps=40, lr=0.02, feature_weight=feature_weight)
        batches = endless_batches(splits.train_x, splits.train_y, 64, seed=1)
        finetune(student, teacher, {}, DistillPlan(), batches, settings)
        with torch.no_grad(), match.hooked():
            teacher(x)
            student(x)
            return float(match.loss())

    assert feature_error(5.0) < 0.7 * feature_error(0.0)


def test_the_feature_weight_is_held_or_fades_linearly_over_feature_steps() -> None:
    held = FinetuneSettings(steps=10, feature_weight=4.0)
    assert [_feature_weight(held, s) for s in (0, 5, 9)] == [4.0, 4.0, 4.0]
    fading = FinetuneSettings(steps=10, feature_weight=4.0, feature_steps=8)
    assert [_feature_weight(fading, s) for s in (0, 4, 8, 9)] == [4.0, 2.0, 0.0, 0.0]
