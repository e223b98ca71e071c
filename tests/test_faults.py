"""Fault injection: the driver SIGKILLed at 20+ named points of the trial lifecycle, resumed.

One study (tiny task, journal storage) is driven by a sequence of CLI processes (forked from one
pre-imported server, ``tests/forkcli.py``: real processes, cheaper starts); each process is told
to SIGKILL itself at one point (``autocompress/_faults.py``): while initialising the study, after
``ask`` (sampling), inside each trial stage (loading, pruning, BN recalibration, folding,
fine-tuning at its start and part-way, realizing, evaluating, timing at its start and part-way),
half-way through writing artifacts, between the artifacts and ``tell``, after ``tell``, while
replacing budget slots and while recovering an earlier victim's trials. After every kill the study
must be readable with no finished trial lost; a final run without faults completes the search.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import tiny_experiment
from tests.forkcli import run_cli
from tests.synthetic import synthetic_output

N_TRIALS = 30  # enough that the search outlives every kill point
KILL_POINTS = [  # ordered so that each point is reachable from the state the previous kill left
    "driver.initialising:1",
    "driver.slots:1",  # before the first budget slot is queued
    "driver.slots:3",  # with two of them queued
    "driver.asked:1",
    "driver.sampled:1",
    "trial.load:1",
    "trial.prune:1",
    "trial.bn_recalibration:1",
    "trial.fold:1",
    "trial.finetune:1",
    "driver.recovering:1",  # the finetune victim is still RUNNING: die while recovering it
    "trial.finetune:1@0.3",
    "trial.realize:1",
    "trial.evaluate:1",
    "trial.measure:1",
    "trial.measure:1@0.15",
    "artifacts.partial:1",
    "driver.artifacts:1",
    "driver.told:1",
    "driver.asked:3",
    "driver.sampled:2",
    "trial.finetune:2",
    "driver.told:2",
]


def _trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    from autocompress.study._storage import open_storage

    storage = open_storage(str(journal), journal.parent)
    return optuna.load_study(study_name="tiny", storage=storage).get_trials(deepcopy=False)


def test_sigkill_at_every_point_then_resume(tmp_path) -> None:
    data = tiny_experiment(
        tmp_path,
        finetune={"steps": 40},
        search={"n_trials": N_TRIALS, "sampler": "random", "seed": 5},
    )
    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump(data))
    journal = tmp_path / "run" / "study.journal"
    argv = ["search", str(experiment), "--quiet"]

    kills, finished_values, fired = 0, {}, []
    for point in KILL_POINTS:
        env = {**os.environ, "AUTOCOMPRESS_KILL_AT": point}
        proc = run_cli(argv, env=env, timeout=300)
        assert proc.returncode in (-9, 0), f"{point}: {proc.stdout}\n{proc.stderr}"
        kills += proc.returncode == -9
        fired.append((point, proc.returncode == -9))
        if not journal.exists():
            continue
        trials = _trials(journal)  # readable after every kill
        for t in trials:
            if t.number in finished_values:  # a finished trial is never lost or changed
                assert t.state == TrialState.COMPLETE and t.values == finished_values[t.number]
            elif t.state == TrialState.COMPLETE:
                finished_values[t.number] = t.values
        if sum(t.state == TrialState.COMPLETE for t in trials) >= N_TRIALS:
            break  # the search finished before the later points were reached
    assert kills >= 20, f"only {kills} kills took effect: {fired}"

    final = run_cli(argv, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    trials = _trials(journal)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == N_TRIALS
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for n, values in finished_values.items():
        assert trials[n].state == TrialState.COMPLETE and trials[n].values == values
    for t in trials:
        if t.state == TrialState.FAIL:
            assert "stopped while this trial was running" in t.user_attrs["failure"]
            assert sum(r.user_attrs.get("retry_of") == t.number for r in trials) == 1
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    assert not retried & set(finished_values)  # nothing finished was run again
    assert {t.user_attrs.get("baseline") for t in completed} >= {"fp32", "int8"}
    assert len([t for t in completed if t.user_attrs.get("baseline") == "fp32"]) == 1
    ran = [t for t in completed if "duplicate_of" not in t.user_attrs]
    for t in ran:  # every completed trial's artifacts are whole
        folder = Path(t.user_attrs["artifact_dir"])
        assert {p.name for p in folder.iterdir()} >= {"model.onnx", "model.acpk", "result.json"}
    print(f"faults: {fired}")
    print(f"faults: {kills} kills survived, {len(finished_values)} finished trials kept, 0 lost")


@pytest.mark.parametrize("fault", ["nan", "timeout"])
def test_nan_loss_and_timeout_fail_the_trial_not_the_search(fault: str, tmp_path, monkeypatch):
    from autocompress import search
    from autocompress.config import ExperimentConfig

    search_cfg = {"n_trials": 3, "sampler": "random", "baselines": ["fp32", "int8"]}
    finetune = {"steps": 40}
    if fault == "nan":
        finetune["lr"] = 1e30  # the loss overflows to inf/NaN within a few steps
    else:
        search_cfg["trial_timeout_s"] = 0.5
        finetune["steps"] = 5000
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, finetune=finetune, search=search_cfg)
    )
    from autocompress.study import _driver

    monkeypatch.setattr(_driver, "MAX_FAILURE_STREAK", 3)
    with pytest.raises(Exception, match="3 trials in a row failed") as err:
        search(config, progress=False)
    expected = "fine-tuning loss became" if fault == "nan" else "time budget"
    assert expected in str(err.value)
    states = [t.state for t in _trials(tmp_path / "run" / "study.journal")]
    assert states.count(TrialState.COMPLETE) == 2  # the baselines (no fine-tuning) completed
    assert (tmp_path / "run" / "front.json").exists()


def test_journal_locked_for_a_while_then_released(tmp_path) -> None:
    """Another process holds the journal's lock for 3 s mid-search: the driver waits, goes on."""
    import json
    import random
    import threading
    import time

    from autocompress.config import ExperimentConfig
    from autocompress.study import open_study, optimize
    from autocompress.study._executors import LocalExecutor, Outcome
    from autocompress.study._setup import setup_from_experiment

    def fast(plan, task, number, objects=None):
        rng = random.Random(json.dumps(plan, sort_keys=True) + str(number))
        time.sleep(0.05)
        return Outcome(number, "ok", output=synthetic_output(rng))

    data = tiny_experiment(tmp_path, search={"n_trials": 30, "sampler": "random"})
    setup = setup_from_experiment(ExperimentConfig.from_dict(data))
    study = open_study(setup)
    journal = tmp_path / "run" / "study.journal"
    lock = Path(str(journal) + ".lock")
    held = {}

    def hold_lock() -> None:  # what a hung writer looks like to the journal: its lock link
        time.sleep(0.5)
        while True:
            try:
                os.symlink(journal, lock)
                break
            except FileExistsError:
                time.sleep(0.001)
        held["at"] = time.monotonic()
        time.sleep(3.0)
        os.unlink(lock)

    holder = threading.Thread(target=hold_lock, daemon=True)
    holder.start()
    optimize(study, setup, LocalExecutor(work=fast, n_workers=2))
    end = time.monotonic()
    holder.join()
    assert held["at"] + 3.0 < end  # the lock was taken mid-search and the search outlived it
    trials = _trials(journal)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == 30
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    assert not [t for t in trials if t.state != TrialState.COMPLETE]
