"""Your own model and data, the example behind ``experiments/own_model.yaml``.

``build`` is the model builder the experiment names by import path (``own_model:build``): it is
called as ``build(input_shape, num_classes, **model.kwargs)``, like the registry's builders.
Run as a script, it writes a small image folder to try it on (three classes of striped 16x16
RGB images, ``<root>/<class>/*.png``):

    python experiments/own_model.py runs/own-data
    PYTHONPATH=experiments autocompress search experiments/own_model.yaml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import nn


def build(input_shape: Sequence[int], num_classes: int, width: int = 16) -> nn.Module:
    """Two conv blocks, global pooling, a linear head (one ReLU module per call)."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )


def write_images(root: Path, per_class: int = 300, size: int = 16) -> None:
    """Noisy RGB images with a bright row (``rows``), column (``columns``) or diagonal."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("rows", "columns", "diagonal"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (size, size, 3))
            k = int(rng.integers(0, size))
            if name == "rows":
                pixels[k] += 160
            elif name == "columns":
                pixels[:, k] += 160
            else:
                pixels[np.arange(size), (np.arange(size) + k) % size] += 160
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:04d}.png")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/own-data")
    write_images(target)
    print(f"wrote {target}/<class>/*.png (3 classes)")
