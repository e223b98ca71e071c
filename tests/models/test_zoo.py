"""Model registry: builders take the input shape, and resnet18 has both stems."""

from __future__ import annotations

import pytest
import torch

from autocompress._names import MODEL_NAMES
from autocompress.backend import coupled_layers, layer_inventory
from autocompress.errors import ConfigError
from autocompress.models import MODELS, available_models, build_model


def test_registry_keys_are_the_names_config_checks() -> None:
    assert tuple(MODELS) == MODEL_NAMES == available_models()


def test_resnet18_torchvision_stem_downsamples_like_torchvision() -> None:
    small = build_model("resnet18", [1, 28, 28], 10, {"width": 8})
    tv = build_model("resnet18", [1, 28, 28], 10, {"width": 8, "stem": "torchvision"})
    assert (tv.conv1.kernel_size, tv.conv1.stride, tv.conv1.in_channels) == ((7, 7), (2, 2), 1)
    assert isinstance(tv.maxpool, torch.nn.MaxPool2d)
    x = torch.randn(2, 1, 28, 28)
    assert tv(x).shape == small(x).shape == (2, 10)
    seen = {}
    for name, model in (("small", small), ("tv", tv)):
        stage1 = model.layer1.eval()(model.maxpool(model.relu(model.bn1(model.conv1(x)))))
        seen[name] = stage1.shape[-1]
    assert seen == {"small": 28, "tv": 7}  # 28 -> 14 (conv) -> 7 (max-pool)


def test_resnet18_residual_streams_are_coupled_per_stage() -> None:
    model = build_model("resnet18", [1, 28, 28], 10, {"width": 8, "stem": "torchvision"})
    head = layer_inventory(model, torch.zeros(1, 1, 28, 28))[-1].name
    groups = coupled_layers(model, torch.zeros(2, 1, 28, 28), head=head)
    assert ["conv1", "layer1.0.conv2", "layer1.1.conv2"] in groups
    assert ["layer4.0.conv2", "layer4.0.downsample.0", "layer4.1.conv2"] in groups
    assert len(groups) == 4


def test_unknown_stem_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="is not a stem"):
        build_model("resnet18", [1, 28, 28], 10, {"stem": "huge"})
