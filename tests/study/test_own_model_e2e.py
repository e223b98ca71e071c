"""A search whose experiment names its model by import path and reads an image folder."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from autocompress import search
from autocompress.config import ExperimentConfig, load_experiment
from autocompress.errors import ConfigError, DataError
from autocompress.models import checkpoint_path
from tests.conftest import tiny_experiment

MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self, channels, num_classes, width):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return self.fc(self.pool(x).flatten(1))


def build(input_shape, num_classes, width=8):
    return Net(input_shape[0], num_classes, width)
"""

SPACE = """
version: 1
layers:
  - match: "conv[12]"
    bits: [4, 8, none]
    prune: [0.0, 0.5]
  - match: "fc"
    bits: [8, none]
"""


def write_stripes(root: Path, per_class: int = 40) -> None:
    """RGB 8x8 images: class ``horizontal`` has bright rows, ``vertical`` bright columns."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("horizontal", "vertical")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (8, 8, 3))
            stripe = rng.integers(0, 8)
            if label == 0:
                pixels[stripe] += 170
            else:
                pixels[:, stripe] += 170
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")


def test_search_with_a_builder_by_import_path_on_an_image_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "own_models_e2e.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    write_stripes(tmp_path / "images")
    (tmp_path / "space.yaml").write_text(SPACE)
    experiment = tiny_experiment(
        tmp_path,
        space="space.yaml",
        data={"dataset": "folder", "root": "images", "val_size": 16},
        model={"builder": "own_models_e2e:build", "kwargs": {"width": 8}},
    )
    experiment["model"].pop("name")
    experiment["model"]["train"]["batch_size"] = 16
    experiment["data"]["batch_size"] = 16
    experiment["finetune"] = {**experiment["finetune"], "batch_size": 16}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(experiment))
    config = load_experiment(path)
    assert config.model.name == "build"

    result = search(config, progress=False)

    assert len(result.front.completed) == 3 and result.front.members
    fp32 = next(m for m in result.front.completed if m.baseline == "fp32")
    assert fp32.objectives["accuracy"] > 0.6  # stripes are learnable: the data reached the model
    other = config.model.__class__(**{**vars(config.model), "builder": "own_models_e2e:other"})
    assert checkpoint_path(config.model, config.data) != checkpoint_path(other, config.data)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"data": {"dataset": "folder", "root": "nope"}},
            DataError,
            r"'.*nope' is not a directory",
        ),
        ({"model": {"builder": "not_a_module_here:build"}}, ConfigError, r"cannot import"),
        ({"model": {"builder": "textwrap:nope"}}, ConfigError, r"'textwrap' has no 'nope'"),
    ],
)
def test_bad_builder_or_data_stop_before_anything_is_written(
    tmp_path: Path, change: dict, error: type, message: str
) -> None:
    experiment = tiny_experiment(tmp_path, **change)
    if "model" in change:
        experiment["model"] = change["model"]
    else:
        experiment["data"]["root"] = str(tmp_path / "nope")
    with pytest.raises(error, match=message) as info:
        search(ExperimentConfig.from_dict(experiment), progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()
