"""A failure every plan would hit is found before the study exists, once, with its layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import autocompress
from autocompress.config import DataConfig, SearchSpace
from autocompress.data import load_splits
from autocompress.errors import ConfigError, UnsupportedPlanError
from autocompress.study._preflight import extreme_plans
from autocompress.study._space import bind_space
from tests.conftest import FAST_MEASURE


class Rigid(nn.Module):
    """Hard-codes conv2's channel count in a reshape: pruning conv2 breaks every plan."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x.reshape(-1, 1, 8, 8)))))
        return self.fc(x.reshape(x.shape[0], 16, 8, 8).mean((2, 3)))


def _loaders() -> tuple[DataLoader, DataLoader]:
    splits = load_splits(DataConfig(dataset="digits", val_size=300))
    train = DataLoader(TensorDataset(splits.train_x, splits.train_y), batch_size=64)
    val = DataLoader(TensorDataset(splits.val_x, splits.val_y), batch_size=100)
    return train, val


def test_extreme_plan_takes_fewest_bits_and_most_pruning() -> None:
    space = SearchSpace.from_dict(
        {
            "layers": [
                {"match": "conv1", "bits": [8, "none"], "prune": [0.0, 0.25]},
                {"match": "conv2", "bits": [3, 6, "none"], "prune": [0.0, 0.5]},
                {"match": "fc", "bits": ["none"]},
            ]
        }
    )
    (plan,) = extreme_plans(bind_space(space, ["conv1", "conv2", "fc"], head="fc"))
    assert plan.quantized_layers == {"conv1": 8, "conv2": 3}
    assert plan.pruned_layers == {"conv1": 0.25, "conv2": 0.5}


def test_each_scheme_a_space_offers_gets_its_own_extreme_plan() -> None:
    space = SearchSpace.from_dict(
        {
            "layers": [
                {"match": "patch", "bits": [8, "none"]},
                {"match": "q|v", "bits": [4, 8], "scheme": ["static", "nbits/32", "dynamic"]},
                {"match": "head", "bits": [8]},
            ]
        }
    )
    plans = extreme_plans(bind_space(space, ["patch", "q", "v", "head"], head="head"))
    assert [p.layer_schemes for p in plans] == [
        {},
        {"q": ("nbits", 32), "v": ("nbits", 32)},
        {"q": ("dynamic", None), "v": ("dynamic", None)},
        {"q": ("nbits", 32)},  # every other layer offering it, the rest static
        {"q": ("dynamic", None)},
    ]
    assert all(p.quantized_layers == {"patch": 8, "q": 4, "v": 4, "head": 8} for p in plans)


def test_a_model_every_pruned_plan_breaks_is_refused_before_the_study(tmp_path) -> None:
    space = {"layers": [{"match": "conv[12]", "bits": [8, "none"], "prune": [0.0, 0.5]}]}
    with pytest.raises(UnsupportedPlanError, match=r"pruning at layer 'conv2'.*leave that layer"):
        _search(tmp_path, space, {"steps": 2})
    assert not (tmp_path / "s.journal").exists() and not (tmp_path / "run").exists()


def test_the_same_model_searches_once_the_layer_is_left_out(tmp_path) -> None:
    train, val = _loaders()
    space = {
        "layers": [
            {"match": "conv1", "bits": [8, "none"], "prune": [0.0, 0.5]},
            {"match": "conv2", "bits": [8, "none"]},
        ]
    }
    result = autocompress.search(
        Rigid(),
        train,
        val,
        space=space,
        sections={"target": {"measure": FAST_MEASURE}, "finetune": {"steps": 2}},
        study={
            "storage": str(tmp_path / "s.journal"),
            "run_dir": tmp_path / "run",
            "n_trials": 3,
        },
        progress=False,
    )
    assert len(result.front.completed) == 3


def test_a_feature_term_no_layer_can_carry_is_refused_before_the_study(tmp_path) -> None:
    """finetune.feature_weight on a model without BatchNorm would do nothing: said at once."""
    space = {"layers": [{"match": "conv1", "bits": [8, "none"], "prune": [0.0, 0.5]}]}
    with pytest.raises(ConfigError, match=r"finetune.feature_weight: no BatchNorm"):
        _search(tmp_path, space, {"steps": 2, "feature_weight": 5.0})
    assert not (tmp_path / "s.journal").exists() and not (tmp_path / "run").exists()


def _search(tmp_path, space: dict, finetune: dict) -> None:
    """A search of ``Rigid`` on digits that preflight should refuse (no trial runs)."""
    train, val = _loaders()
    autocompress.search(
        Rigid(),
        train,
        val,
        space=space,
        sections={"target": {"measure": FAST_MEASURE}, "finetune": finetune},
        study={"storage": str(tmp_path / "s.journal"), "run_dir": tmp_path / "run"},
        progress=False,
    )
