"""Ray: parallel trials, failures and dead workers become FAIL with a reason, remote timing."""

from __future__ import annotations

import os
import sys

import pytest

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


def crash_or_fail(plan, task, number, objects=None):
    """A work function: trial 2 raises inside, trial 3 kills its worker process, others run."""
    from autocompress.study._executors import execute

    if number == 2:
        raise RuntimeError("boom from trial 2")
    if number == 3:
        os._exit(1)
    return execute(plan, task, number, objects)


@pytest.fixture(scope="module")
def local_ray():
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_two_workers_raise_and_crash_are_recorded(local_ray, tmp_path) -> None:
    from autocompress.config import ExperimentConfig
    from autocompress.study import open_study, optimize
    from autocompress.study._ray_executor import RayExecutor
    from autocompress.study._setup import setup_from_experiment
    from tests.conftest import tiny_experiment

    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, search={"n_trials": 5, "executor": "ray", "n_workers": 2})
    )
    setup = setup_from_experiment(config)
    study = open_study(setup)
    executor = RayExecutor(n_workers=2, work=crash_or_fail)
    optimize(study, setup, executor)
    states = {t.number: t.state.name for t in study.trials}
    failures = {t.number: t.user_attrs.get("failure", "") for t in study.trials}
    assert states[2] == "FAIL" and "boom from trial 2" in failures[2]
    assert states[3] == "FAIL" and "worker process died" in failures[3]
    assert sum(s == "COMPLETE" for s in states.values()) == 5  # failed slots were replaced
