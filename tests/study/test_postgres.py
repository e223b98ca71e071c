"""Several drivers, one PostgreSQL study: nothing lost, nothing duplicated.

The server is real (Debian's postgresql, started on 127.0.0.1 by ``tests/conftest.py``); each
driver is a separate Python process, as it would be on separate machines.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import tiny_experiment

pytestmark = pytest.mark.postgres

# A driver process whose trials are a fast synthetic objective (no training, no timing): the
# storage and the slot protocol are what is under test. Two threads per driver.
REPO = str(Path(__file__).resolve().parents[2])  # for `tests.synthetic` in the driver processes
FAST_DRIVER = """
import json, random, sys, time
sys.path.insert(0, sys.argv[2])
from autocompress.config import ExperimentConfig
from autocompress.study import open_study, optimize
from autocompress.study._executors import LocalExecutor, Outcome
from autocompress.study._setup import setup_from_experiment
from tests.synthetic import synthetic_output

def fast(plan, task, number, objects=None):
    rng = random.Random(json.dumps(plan, sort_keys=True) + str(number))
    time.sleep(rng.uniform(0.0, 0.05))
    return Outcome(number, "ok", output=synthetic_output(rng))

setup = setup_from_experiment(ExperimentConfig.from_dict(json.loads(sys.argv[1])))
optimize(open_study(setup), setup, LocalExecutor(work=fast, n_workers=2))
"""


def _load(url: str, name: str) -> optuna.Study:
    from autocompress.study._storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url, Path(".")))


def _check_no_loss_no_duplicates(study: optuna.Study, n_trials: int) -> list:
    trials = study.get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == n_trials
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # contiguous
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    ran = [t for t in completed if "duplicate_of" not in t.user_attrs]  # copies reuse a dir
    assert sorted(Path(t.user_attrs["artifact_dir"]).name for t in ran) == [
        f"{t.number:05d}" for t in ran
    ]  # each trial that ran was recorded once, by number
    by_number = {t.number: t for t in trials}
    for t in completed:
        if "duplicate_of" in t.user_attrs:
            source = by_number[t.user_attrs["duplicate_of"]]
            assert source.state == TrialState.COMPLETE and source.values == t.values
    for t in trials:  # a failure is only ever a slot race, closed before running anything
        if t.state == TrialState.FAIL:
            assert "over budget" in t.user_attrs["failure"], t.user_attrs["failure"]
    return completed


def test_two_cli_drivers_share_one_study(postgres_url, tmp_path) -> None:
    name = f"shared-{uuid.uuid4().hex[:6]}"
    data = tiny_experiment(
        tmp_path, name=name, storage=postgres_url, search={"n_trials": 6, "sampler": "random"}
    )
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump(data))
    cmd = [sys.executable, "-m", "autocompress.cli", "search", str(experiment)]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("s3cret-pw" not in out for out in outputs)  # the password is never printed
    study = _load(postgres_url, name)
    completed = _check_no_loss_no_duplicates(study, 6)
    assert {t.user_attrs.get("baseline") for t in completed} >= {"fp32", "int8"}
    assert "s3cret-pw" not in json.dumps(study.user_attrs)  # the study never stores it
    assert "s3cret-pw" not in "".join(p.read_text() for p in (tmp_path / "run").rglob("*.json"))


def test_four_workers_on_two_drivers_100_fast_trials(postgres_url, tmp_path) -> None:
    name = f"fast-{uuid.uuid4().hex[:6]}"
    data = tiny_experiment(
        tmp_path, name=name, storage=postgres_url, search={"n_trials": 100, "sampler": "random"}
    )
    cmd = [sys.executable, "-c", FAST_DRIVER, json.dumps(data), REPO]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    completed = _check_no_loss_no_duplicates(_load(postgres_url, name), 100)
    drivers = {t.user_attrs["driver"]["pid"] for t in completed}
    assert len(drivers) == 2  # both drivers did work


def test_search_waits_out_a_database_outage(postgres_server, tmp_path) -> None:
    """The server goes down for a few seconds mid-search: the driver waits, then completes."""
    import time

    name = f"outage-{uuid.uuid4().hex[:6]}"
    n_trials = 40
    data = tiny_experiment(
        tmp_path,
        name=name,
        storage=postgres_server.url,
        search={"n_trials": n_trials, "sampler": "random"},
    )
    slow = FAST_DRIVER.replace("rng.uniform(0.0, 0.05)", "rng.uniform(0.1, 0.3)")
    cmd = [sys.executable, "-c", slow, json.dumps(data), REPO]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = _load(postgres_server.url, name).get_trials(
                    deepcopy=False, states=(TrialState.COMPLETE,)
                )
            except Exception:  # the study is still being created
                done = []
            if len(done) >= 5:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the search finished before the outage could start"
        postgres_server.stop()
        time.sleep(5.0)  # unavailable for a while
        postgres_server.launch()
        output = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert "unavailable (StorageInternalError); retrying for up to 600 s" in output
    assert "s3cret-pw" not in output
    _check_no_loss_no_duplicates(_load(postgres_server.url, name), n_trials)
