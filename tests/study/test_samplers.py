"""Samplers by key: a search opens without Optuna's experimental-feature warnings (#20, 6)."""

from __future__ import annotations

import warnings

import optuna
import pytest

from autocompress.config import SearchConfig
from autocompress.record import attrs
from autocompress.study._samplers import make_sampler


@pytest.mark.parametrize("key", ["tpe", "nsga2", "random"])
def test_making_a_sampler_warns_nothing(key: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_sampler(SearchConfig(sampler=key))
    experimental = [
        w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)
    ]
    assert not experimental, [str(w.message) for w in experimental]


def test_stamping_a_study_names_its_objectives_without_a_warning() -> None:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    stamp = attrs.StudyStamp(
        creator={"host": "h", "pid": 1},
        version="0",
        signature="s",
        objectives=("accuracy", "latency", "size"),
        latency_unit="ratio",
        reference={},
        task={},
        space={},
        run_dir="/tmp/x",
        experiment=None,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        attrs.stamp_study(study, stamp)
    assert study.metric_names == ["accuracy", "latency_ratio", "size_bytes"]
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
