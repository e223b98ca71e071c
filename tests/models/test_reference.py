"""The reference trainer: cache slots that survive new options, AdamW, image augmentation."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from autocompress.config import DataConfig, ModelConfig, TrainConfig, to_plain
from autocompress.data import load_splits
from autocompress.errors import DataError
from autocompress.measure import cpu_model
from autocompress.models import build_model
from autocompress.models._reference import augment_images, checkpoint_path, train_reference

ROOT = Path(__file__).resolve().parents[2]


def test_default_training_options_keep_the_cache_slots_of_older_checkpoints() -> None:
    """Adding optimizer/augment must not orphan every cached (and committed) reference."""
    model, data = ModelConfig(kwargs={"width": 32}), DataConfig()
    new_fields = ("optimizer", "augment")
    old_train = {k: v for k, v in to_plain(model.train).items() if k not in new_fields}
    old_key = {
        "name": model.name,
        "kwargs": model.kwargs,
        "train": old_train,
        "data": {
            k: v
            for k, v in to_plain(data).items()
            if k != "calibration_batches" and k not in ("channels", "image_size")
        },
    }
    digest = hashlib.sha256(json.dumps(old_key, sort_keys=True).encode()).hexdigest()[:16]
    assert checkpoint_path(model, data).name == f"refnet-{digest}.pt"
    # the slot of the benchmarks' 12-epoch refnet, as the code before these options named it
    from autocompress.config import load_experiment

    bench = load_experiment(ROOT / "experiments" / "fashion_mnist.yaml", ["model.train.epochs=12"])
    assert checkpoint_path(bench.model, bench.data).name == "refnet-2c8a160b0a4b5d1a.pt"
    adamw = dataclasses.replace(model, train=TrainConfig(optimizer="adamw"))
    augmented = dataclasses.replace(model, train=TrainConfig(augment=True))
    slots = {checkpoint_path(m, data) for m in (model, adamw, augmented)}
    assert len(slots) == 3


def test_augmentation_shifts_and_flips_each_image_within_two_pixels() -> None:
    x = torch.rand(64, 1, 8, 8) + 1  # no zeros: a zero in the output came in at the border
    out = augment_images(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    moved = 0
    for original, got in zip(x, out, strict=True):
        matches = [
            (dy, dx, flip)
            for flip in (False, True)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if _shifted(original.flip(-1) if flip else original, dy, dx).equal(got)
        ]
        assert matches, "an output is no shift/flip of its input"
        moved += matches[0] != (0, 0, False)
    assert moved > 48  # 24 of 25 shifts and half the flips move an image


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2))
    h, w = image.shape[-2:]
    return padded[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


def test_adamw_with_augmentation_trains(tmp_path: Path) -> None:
    data = DataConfig(dataset="digits", val_size=300)
    splits = load_splits(data)
    train = TrainConfig(epochs=6, batch_size=64, lr=1e-2, weight_decay=0.05, optimizer="adamw")
    model = ModelConfig(name="refnet", kwargs={"width": 8})
    model = dataclasses.replace(model, train=dataclasses.replace(train, augment=True))
    torch.manual_seed(0)
    net = build_model("refnet", splits.input_shape, splits.num_classes, model.kwargs)
    train_reference(net, splits, model, tmp_path / "ref.pt")
    meta = torch.load(tmp_path / "ref.pt", weights_only=True)["meta"]
    # the machine is named as the README names machines: its training seconds are that CPU's
    assert meta["trained_on"] == f"cpu ({cpu_model()}, {os.cpu_count()} cores)"
    assert meta["train"]["optimizer"] == "adamw"
    assert meta["val_accuracy"] > 0.5  # 10 classes: chance is 0.1


def test_augmenting_token_ids_is_refused_before_training(tmp_path: Path) -> None:
    splits = SimpleNamespace(train_x=torch.zeros(20, 6, dtype=torch.long))
    model = ModelConfig(name="mlp", train=TrainConfig(augment=True))
    with pytest.raises(DataError, match="augment: false"):
        train_reference(torch.nn.Linear(6, 2), splits, model, tmp_path / "x.pt")  # type: ignore[arg-type]
    assert not (tmp_path / "x.pt").exists()


def test_the_shipped_vit_checkpoint_fits_its_experiment() -> None:
    """The ViT experiment ships its GPU-trained reference; it must be the one its config trains."""
    from autocompress.config import load_experiment

    config = load_experiment(ROOT / "experiments" / "vit_fashion_mnist.yaml")
    assert config.model.checkpoint
    path = checkpoint_path(config.model, config.data, config.base_dir)
    blob = torch.load(path, weights_only=True)
    assert blob["meta"]["train"] == to_plain(config.model.train)
    assert blob["meta"]["kwargs"] == config.model.kwargs
    net = build_model("vit", [1, 28, 28], 10, config.model.kwargs)
    net.load_state_dict(blob["state_dict"])
