"""Model builders, chosen by a short registry key (``model.name`` in an experiment).

Every builder takes the per-sample input shape and the number of classes, so the same names work
for Fashion-MNIST (1x28x28) and the 8x8 digits used in tests. Each activation is its own module
instance (no ReLU reused twice in a forward pass): graph-based quantizers (PT2E) and exporters
need one node per call, and torchvision's ``BasicBlock`` reuses its ReLU, so we rebind it.
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from autocompress.backend import decompose_attention
from autocompress.errors import ConfigError
from autocompress.models._transformers import text_transformer, vit


class BasicBlock(nn.Module):
    """A ResNet basic block with one ReLU module per call."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class RefNet(nn.Module):
    """The reference model: a 3-stage ResNet-style CNN (308k parameters at width 32).

    Stages of widths w, 2w, 4w at strides 1, 2, 2, global average pooling, a linear head.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        width: int = 32,
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages = []
        cin = width
        for i, n in enumerate(blocks):
            cout = width * 2**i
            layers = [
                BasicBlock(cin if j == 0 else cout, cout, 1 if i == 0 or j else 2)
                for j in range(n)
            ]
            stages.append(nn.Sequential(*layers))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


def refnet(input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> nn.Module:
    return RefNet(in_channels=input_shape[0], num_classes=num_classes, **kwargs)


def mlp(
    input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (256, 128)
) -> nn.Module:
    """A plain MLP: flatten, then Linear + ReLU per hidden width, then the head."""
    layers: list[nn.Module] = [nn.Flatten()]
    cin = int(torch.tensor(list(input_shape)).prod())
    for h in hidden:
        layers += [nn.Linear(cin, h), nn.ReLU()]
        cin = h
    layers.append(nn.Linear(cin, num_classes))
    return nn.Sequential(*layers)


STEMS = ("small", "torchvision")


def resnet18(
    input_shape: Sequence[int],
    num_classes: int,
    width: int = 64,
    blocks: Sequence[int] = (2, 2, 2, 2),
    stem: str = "small",
) -> nn.Module:
    """torchvision's resnet18 for ``input_shape[0]`` input channels.

    ``stem``: ``small`` (3x3 stride-1 first conv, no max-pool: full-resolution stages for
    28-32 px images, about 16x the compute) or ``torchvision`` (its own 7x7 stride-2 conv and
    max-pool, only the input channels changed: the model users take off the shelf).
    ``width`` scales the stage widths (64, 128, 256, 512 at the default) for tiny test models;
    the blocks are torchvision's own, with their shared ReLU split into one module per call.
    """
    if stem not in STEMS:
        raise ConfigError(f"model.kwargs.stem: {stem!r} is not a stem; use one of {STEMS}")
    from torchvision.models import resnet as tv

    model = tv.ResNet(tv.BasicBlock, list(blocks), num_classes=num_classes)
    if width != 64:
        model.inplanes = width
        for i, n in enumerate(blocks, start=1):
            layer = model._make_layer(
                tv.BasicBlock, width * 2 ** (i - 1), n, stride=1 if i == 1 else 2
            )
            setattr(model, f"layer{i}", layer)
        model.bn1 = nn.BatchNorm2d(width)
        model.fc = nn.Linear(width * 8, num_classes)
    if stem == "small":
        model.conv1 = nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(input_shape[0], width, 7, 2, 3, bias=False)
    for block in model.modules():
        if isinstance(block, tv.BasicBlock):
            block.relu2 = nn.ReLU()
            block.forward = types.MethodType(_torchvision_block_forward, block)
    return model


def _torchvision_block_forward(self: Any, x: torch.Tensor) -> torch.Tensor:  # a BasicBlock
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu2(out + identity)


def mobilenet_v2(
    input_shape: Sequence[int], num_classes: int, width_mult: float = 1.0
) -> nn.Module:
    """torchvision's mobilenet_v2 (depthwise convs, inverted residuals) with a stride-1 stem."""
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    model = tv_mobilenet_v2(num_classes=num_classes, width_mult=width_mult)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(input_shape[0], stem.out_channels, 3, 1, 1, bias=False)
    return model


class Fire(nn.Module):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated.

    ``groups`` makes the 3x3 expand a grouped convolution (its input and output channels split
    into that many independent groups), the case that pruning must treat per group.
    """

    def __init__(self, cin: int, squeeze: int, expand: int, groups: int = 1) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_act = nn.ReLU()
        self.expand1 = nn.Conv2d(squeeze, expand, 1)
        self.expand1_act = nn.ReLU()
        self.expand3 = nn.Conv2d(squeeze, expand, 3, padding=1, groups=groups)
        self.expand3_act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze_act(self.squeeze(x))
        return torch.cat([self.expand1_act(self.expand1(s)), self.expand3_act(self.expand3(s))], 1)


def squeezenet(
    input_shape: Sequence[int], num_classes: int, width: int = 16, groups: int = 4
) -> nn.Module:
    """A tiny SqueezeNet: stem, two fire modules (the second's 3x3 expand grouped), conv head.

    Like SqueezeNet 1.1: no BatchNorm, channel concatenation in every fire module, a 1x1 conv
    classifier followed by global average pooling. ``width`` is the stem's channels; the fire
    modules squeeze to width/2 and expand to width (so each outputs 2 x width).
    """
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1),
        nn.ReLU(),
        Fire(width, width // 2, width),
        nn.MaxPool2d(2),
        Fire(2 * width, width // 2, width, groups=groups),
        nn.Dropout(0.1),
        nn.Conv2d(2 * width, num_classes, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )


# keyed by autocompress._names.MODEL_NAMES, in its order (tests/models checks they are equal)
MODELS: dict[str, Callable[..., nn.Module]] = {
    "refnet": refnet,
    "resnet18": resnet18,
    "mobilenet_v2": mobilenet_v2,
    "mlp": mlp,
    "squeezenet": squeezenet,
    "vit": vit,
    "text_transformer": text_transformer,
}


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    kwargs: dict[str, Any] | None = None,
    *,
    builder: str | None = None,
) -> nn.Module:
    """Build registry model ``name`` (or the user's ``builder``) with fresh weights.

    Every ``nn.MultiheadAttention`` in it is decomposed into q/k/v/out Linear layers here, the
    one place models are made (reference training, the trials' teacher), so plans see them.
    ``builder`` is an import path ``"module:callable"`` (``model.builder`` in an experiment),
    called like the registry's builders: ``callable(input_shape, num_classes, **kwargs)``.

    Example:
        >>> build_model("mlp", [1, 8, 8], 10, {"hidden": [16]})[1].out_features
        16
    """
    if builder is None and name not in MODELS:
        raise ConfigError(f"model.name: {name!r} is not a model; use one of {sorted(MODELS)}")
    make = MODELS[name] if builder is None else import_builder(builder)
    try:
        model = make(list(input_shape), num_classes, **(kwargs or {}))
    except TypeError as exc:
        raise ConfigError(f"model.kwargs for {builder or name!r} do not fit: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.builder: {builder!r} returned {type(model).__name__}, not a Module"
        )
    decompose_attention(model)
    return model


def import_builder(builder: str) -> Callable[..., nn.Module]:
    """Import ``"module:callable"`` (the user's own code: it runs). One-line errors."""
    module_name, _, attr = builder.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"model.builder: cannot import {module_name!r} ({exc}); install it or put its "
            "directory on PYTHONPATH"
        ) from None
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"model.builder: {module_name!r} has no {attr!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ConfigError(f"model.builder: {builder!r} is not callable")
    return target
