"""Shared fixtures: tiny deterministic tasks that train in seconds on 2 CPU cores.

The session gets its own checkpoint cache and measurement-lock directory, so tests neither reuse
a user's cache nor wait on a search running on the same machine.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="autocompress-tests-"))
os.environ.setdefault("AUTOCOMPRESS_CACHE", str(_SESSION_DIR / "cache"))
os.environ.setdefault("AUTOCOMPRESS_LOCK_DIR", str(_SESSION_DIR / "locks"))
os.environ.setdefault("OMP_NUM_THREADS", "2")

FAST_MEASURE = {"warmup": 3, "repeats": 20, "min_time_s": 0.02, "max_spread": 1.0, "attempts": 1}


def tiny_experiment(tmp_path: Path, **sections: dict) -> dict:
    """An experiment dict for refnet width 8 on the 8x8 digits (trains in ~2 s)."""
    data = {
        "name": "tiny",
        "space": str(Path(__file__).parent / "data" / "tiny_space.yaml"),
        "data": {"dataset": "digits", "val_size": 300, "calibration_batches": 2, "batch_size": 64},
        "model": {
            "name": "refnet",
            "kwargs": {"width": 8},
            "train": {"epochs": 6, "batch_size": 64, "lr": 0.05},
        },
        "finetune": {"steps": 6, "batch_size": 64, "bn_batches": 2},
        "target": {"measure": FAST_MEASURE},
        "search": {"n_trials": 3, "sampler": "random", "seed": 0},
        "run_dir": str(tmp_path / "run"),
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return data


@pytest.fixture
def experiment_dict(tmp_path: Path) -> dict:
    return tiny_experiment(tmp_path)


@pytest.fixture(scope="session")
def tiny_task():
    """A Task with a trained tiny reference (digits, refnet width 8), cached for the session."""
    from autocompress.config import ExperimentConfig
    from autocompress.models import load_reference
    from autocompress.task import Task

    config = ExperimentConfig.from_dict(tiny_experiment(_SESSION_DIR))
    reference = load_reference(config.model, config.data)
    return Task(
        data=config.data,
        model=config.model,
        finetune=config.finetune,
        target=config.target,
        checkpoint=str(reference.checkpoint),
    )


def fashion_mnist_available() -> bool:
    from autocompress.data._datasets import DEBIAN_FASHION_MNIST

    return DEBIAN_FASHION_MNIST.is_dir() or bool(os.environ.get("AUTOCOMPRESS_DATA"))


@pytest.fixture
def require_fashion_mnist() -> None:
    """Fashion-MNIST must exist in CI (.ci/run installs it); elsewhere the test is skipped."""
    if fashion_mnist_available():
        return
    if os.environ.get("CI"):
        pytest.fail("Fashion-MNIST is missing in CI: apt-get install dataset-fashion-mnist")
    pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
