"""A user's own data: an image folder and ``.npy`` arrays, normalised per channel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autocompress.config import DataConfig
from autocompress.data import load_splits
from autocompress.errors import DataError


def _save(path: Path, pixels: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def test_npy_arrays_are_normalised_per_channel_from_the_training_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([[[[0.0]], [[5.0]]]], [[[[1.0]], [[3.0]]]], (60, 2, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x_train.npy", x)
    np.save(tmp_path / "y_train.npy", np.arange(60) % 3)
    np.save(tmp_path / "x_test.npy", x[:10])
    np.save(tmp_path / "y_test.npy", np.arange(10) % 3)
    splits = load_splits(DataConfig(dataset="npy", root=str(tmp_path), val_size=10))
    assert splits.input_shape == [2, 4, 4] and splits.num_classes == 3
    assert splits.channel_mean[1] == pytest.approx(5.0, abs=0.5)
    per_channel = splits.train_x.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(per_channel.std(1, correction=0), torch.ones(2), atol=1e-4)


def test_npy_with_missing_files_or_bad_labels_is_one_line(tmp_path: Path) -> None:
    np.save(tmp_path / "x_train.npy", np.zeros((20, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"lacks y_train.npy, x_test.npy, y_test.npy"):
        load_splits(DataConfig(dataset="npy", root=str(tmp_path), val_size=10))
    np.save(tmp_path / "y_train.npy", np.zeros(20, np.float32))
    np.save(tmp_path / "x_test.npy", np.zeros((5, 4, 4), np.uint8))
    np.save(tmp_path / "y_test.npy", np.zeros(5, np.int64))
    with pytest.raises(DataError, match=r"y_train.npy: labels must be 20 integers") as info:
        load_splits(DataConfig(dataset="npy", root=str(tmp_path), val_size=11))
    assert "\n" not in str(info.value)


def test_folder_of_gray_images_with_train_and_test_trees(tmp_path: Path) -> None:
    for split, n in (("train", 12), ("test", 4)):
        for label in ("a", "b"):
            for i in range(n):
                _save(tmp_path / split / label / f"{i}.png", np.full((6, 5), 40 * i))
    splits = load_splits(DataConfig(dataset="folder", root=str(tmp_path), val_size=4))
    assert splits.input_shape == [1, 6, 5] and splits.num_classes == 2
    assert len(splits.test_x) == 8 and sorted(splits.test_y.tolist()) == [0] * 4 + [1] * 4
    resized = DataConfig(dataset="folder", root=str(tmp_path), val_size=4, image_size=[4, 4])
    assert load_splits(resized).input_shape == [1, 4, 4]
    rgb = DataConfig(dataset="folder", root=str(tmp_path), val_size=4, channels=3)
    assert load_splits(rgb).input_shape == [3, 6, 5]


def test_folder_images_of_different_sizes_name_a_file(tmp_path: Path) -> None:
    for i in range(5):
        _save(tmp_path / "cat" / f"{i}.png", np.zeros((8, 8)))
        _save(tmp_path / "dog" / f"{i}.png", np.zeros((8, 8) if i else (9, 8)))
    with pytest.raises(DataError, match=r"dog/0.png: 8x9 pixels, but .*cat/0.png is 8x8") as info:
        load_splits(DataConfig(dataset="folder", root=str(tmp_path), val_size=2))
    assert "\n" not in str(info.value) and "data.image_size" in str(info.value)
    with pytest.raises(DataError, match=r"is not a directory"):
        load_splits(DataConfig(dataset="folder", root=str(tmp_path / "nope"), val_size=2))
