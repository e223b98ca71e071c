"""Every YAML we ship loads and validates, and opens with a comment saying how to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from autocompress.config import SearchSpace, load_experiment

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.yaml"))
SPACES = sorted((ROOT / "search_spaces").glob("*.yaml"))


def test_there_is_something_to_check() -> None:
    assert EXPERIMENTS and SPACES


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_validates(path: Path) -> None:
    config = load_experiment(path)
    SearchSpace.from_yaml(config.space_path)
    assert path.read_text().startswith("#")


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
def test_space_validates(path: Path) -> None:
    SearchSpace.from_yaml(path)
    assert path.read_text().startswith("#")


def test_default_space_binds_to_the_reference_model() -> None:
    import torch

    from autocompress.backend import head_name, layer_inventory
    from autocompress.models import build_model
    from autocompress.study import bind_space

    model = build_model("refnet", [1, 28, 28], 10, {"width": 32})
    layers = layer_inventory(model, torch.zeros(1, 1, 28, 28))
    bound = bind_space(
        SearchSpace.from_yaml(ROOT / "search_spaces" / "joint.yaml"),
        [layer.name for layer in layers],
        head=head_name(layers),
    )
    assert len(bound.slots) == len(layers)
    assert bound.baseline_params("fp32") and bound.baseline_params("int8")
