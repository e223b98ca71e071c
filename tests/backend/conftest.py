"""Shared fixtures of the backend tests."""

from __future__ import annotations

import pytest
import torch

from autocompress.config import DataConfig
from autocompress.data import endless_batches, load_splits
from autocompress.models import build_model


@pytest.fixture(scope="module")
def setting():
    """The digits splits and a refnet (width 8) trained 60 steps on them: a teacher."""
    splits = load_splits(DataConfig(dataset="digits", val_size=300))
    torch.manual_seed(0)
    teacher = build_model("refnet", splits.input_shape, 10, {"width": 8})
    opt = torch.optim.SGD(teacher.parameters(), lr=0.05, momentum=0.9)
    stream = endless_batches(splits.train_x, splits.train_y, 64)
    for _ in range(60):
        x, y = next(stream)
        loss = torch.nn.functional.cross_entropy(teacher(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return splits, teacher.eval()
