"""The Python API on a user's own model and DataLoaders, without any YAML."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

import autocompress
from autocompress.config import DataConfig
from autocompress.data import load_splits
from tests.conftest import FAST_MEASURE


def test_search_on_a_user_model_and_loaders(tmp_path) -> None:
    splits = load_splits(DataConfig(dataset="digits", val_size=300))
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 10)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(100):
        idx = torch.randint(0, len(splits.train_x), (64,))
        loss = torch.nn.functional.cross_entropy(model(splits.train_x[idx]), splits.train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    train = DataLoader(TensorDataset(splits.train_x, splits.train_y), batch_size=64, shuffle=True)
    val = DataLoader(TensorDataset(splits.val_x, splits.val_y), batch_size=100)

    result = autocompress.search(
        model,
        train,
        val,
        space={
            "layers": [{"match": r"\d+", "bits": [4, 8, "none"], "prune": [0.0, 0.5]}],
            "distill": {"temperature": [2.0]},
        },
        sections={"target": {"measure": FAST_MEASURE}, "finetune": {"steps": 5}},
        study={
            "storage": str(tmp_path / "mine.journal"),
            "run_dir": tmp_path / "run",
            "name": "mine",
            "n_trials": 4,
        },
        progress=False,
    )
    front = result.front
    assert len(front.completed) == 4 and front.members
    assert {m.baseline for m in front.completed} >= {"fp32", "int8"}
    assert front.reference["val_accuracy"] > 0.8
    table = result.trials_dataframe()
    assert {"accuracy", "latency_ms", "size_bytes", "bits.1", "prune.1"} <= set(table.columns)

    reopened = autocompress.load(str(tmp_path / "mine.journal"))
    assert [m.number for m in reopened.front.members] == [m.number for m in front.members]


def test_study_and_sections_reject_unknown_keys(tmp_path) -> None:
    import pytest

    from autocompress.errors import ConfigError

    model = torch.nn.Linear(4, 2)
    loader = [(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))]
    space = {"layers": [{"match": ".*"}]}
    with pytest.raises(ConfigError, match=r"study: unknown key\(s\) \['nme'\]"):
        autocompress.search(model, loader, loader, space=space, study={"nme": "x"})
    with pytest.raises(ConfigError, match=r"sections: unknown key\(s\) \['targte'\]"):
        autocompress.search(model, loader, loader, space=space, sections={"targte": {}})
    with pytest.raises(ConfigError, match=r"target.threads: expected a value >= 1"):
        autocompress.search(
            model, loader, loader, space=space, sections={"target": {"threads": 0}}
        )


def test_search_setup_is_frozen() -> None:
    import dataclasses
    from pathlib import Path

    import pytest

    from autocompress.config import SearchConfig, SearchSpace
    from autocompress.study import SearchSetup, bind_space
    from autocompress.worker import Task

    bound = bind_space(SearchSpace.from_dict({"layers": [{"match": "fc"}]}), ["fc"], head="fc")
    setup = SearchSetup("s", bound, Task(), SearchConfig(), Path("r"), None, {"val_accuracy": 0.9})
    with pytest.raises(dataclasses.FrozenInstanceError):
        setup.task = Task()  # type: ignore[misc]
    changed = dataclasses.replace(setup, search=SearchConfig(max_accuracy_drop=1.0))
    assert changed.accuracy_floor == pytest.approx(0.89) and setup.accuracy_floor is None


def _digits_model_and_loaders():
    splits = load_splits(DataConfig(dataset="digits", val_size=300))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    train = DataLoader(TensorDataset(splits.train_x, splits.train_y), batch_size=64)
    val = DataLoader(TensorDataset(splits.val_x, splits.val_y), batch_size=100)
    return model, train, val


def test_a_space_that_cannot_make_a_baseline_leaves_nothing_on_disk(tmp_path) -> None:
    """Issue 20 (12): the error comes before the journal or the run directory exists."""
    import pytest

    from autocompress.errors import ConfigError

    model, train, val = _digits_model_and_loaders()
    with pytest.raises(ConfigError, match="the int8 baseline needs bits 8"):
        autocompress.search(
            model,
            train,
            val,
            space={"layers": [{"match": r"\d+", "bits": [4, "none"]}]},
            study={"run_dir": tmp_path / "run", "n_trials": 3},
            progress=False,
        )
    assert list(tmp_path.iterdir()) == []


def test_a_user_model_gets_the_experiments_default_accuracy_floor() -> None:
    """Issue 20 (12): a member 20% accurate must not land on a front by default."""
    from autocompress._api import DEFAULT_MAX_ACCURACY_DROP, StudyOptions, _ModelSearch
    from autocompress._api import _setup_from_model as setup_of

    model, train, val = _digits_model_and_loaders()
    space = {"layers": [{"match": r"\d+", "bits": [8, "none"]}]}
    setup = setup_of(_ModelSearch(model, train, val, space, None), StudyOptions())
    assert setup.search.max_accuracy_drop == DEFAULT_MAX_ACCURACY_DROP == 2.0
    assert setup.accuracy_floor == setup.reference["val_accuracy"] - 0.02
    no_floor = {"search": {"max_accuracy_drop": None}}  # said explicitly: no floor
    setup = setup_of(_ModelSearch(model, train, val, space, no_floor), StudyOptions())
    assert setup.accuracy_floor is None
    looser = {"search": {"max_accuracy_drop": 5.0}}
    setup = setup_of(_ModelSearch(model, train, val, space, looser), StudyOptions())
    assert setup.search.max_accuracy_drop == 5.0
