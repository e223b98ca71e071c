"""A real (tiny) search end to end: study, baselines, front, artifacts, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autocompress import search
from autocompress.config import ExperimentConfig
from autocompress.front import non_dominated
from tests.conftest import tiny_experiment


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("search")
    config = ExperimentConfig.from_dict(tiny_experiment(tmp))
    return search(config, progress=False)


def test_front_is_non_empty_and_non_dominated(result) -> None:
    front = result.front
    assert len(front.completed) == 3
    assert front.members
    points = [[m.objectives[o] for o in front.objectives] for m in front.completed]
    nd = {front.completed[i].number for i in non_dominated(points, front.directions)}
    assert {m.number for m in front.members} <= nd
    for m in front.members:  # no completed trial dominates a member
        for other in front.completed:
            better_or_equal = (
                other.objectives["accuracy"] >= m.objectives["accuracy"]
                and other.objectives["latency"] <= m.objectives["latency"]
                and other.objectives["size"] <= m.objectives["size"]
            )
            strictly = other.objectives != m.objectives
            assert not (better_or_equal and strictly), (other.number, m.number)


def test_baselines_run_first_and_int8_is_smaller(result) -> None:
    by_baseline = {m.baseline: m for m in result.front.completed if m.baseline}
    assert set(by_baseline) == {"fp32", "int8"}
    fp32, int8 = by_baseline["fp32"], by_baseline["int8"]
    assert fp32.number == 0 and int8.number == 1
    bits = max(int8.plan.quantized_layers.values())  # 7 where this CPU's int8 saturates
    assert bits in (7, 8) and 3.0 < fp32.result.size_bytes / int8.result.size_bytes <= 32 / bits
    assert fp32.plan.is_fp32


def test_artifacts_and_front_json_are_written(result) -> None:
    for m in result.front.completed:
        d = Path(m.artifact_dir)
        assert (d / "model.onnx").stat().st_size == m.result.deploy_bytes
        assert json.loads((d / "plan.json").read_text()) == m.plan.to_dict()
    front = json.loads((result.run_dir / "front.json").read_text())
    assert [m["trial"] for m in front["members"]] == [m.number for m in result.front.members]


def test_running_again_resumes_to_a_larger_budget(result) -> None:
    config = ExperimentConfig.from_dict(
        tiny_experiment(result.run_dir.parent, search={"n_trials": 4, "sampler": "random"})
    )
    again = search(config, progress=False)
    numbers = [t.number for t in again.study.trials]
    assert len(again.front.completed) == 4 and numbers == sorted(set(numbers))
