"""SIGKILL the driver of a 2-worker Ray search mid-trial, resume it, and account for every trial.

The driver runs as the real CLI in a subprocess; the test watches the journal from outside (as
``autocompress status`` would) and kills the driver while trials are in flight.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import tiny_experiment

pytestmark = pytest.mark.ray
N_TRIALS = 6


def _experiment(tmp_path: Path) -> Path:
    data = tiny_experiment(
        tmp_path,
        finetune={"steps": 120},  # ~1-2 s per trial: long enough to be killed mid-trial
        search={"n_trials": N_TRIALS, "executor": "ray", "n_workers": 2, "sampler": "random"},
    )
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _driver(experiment: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autocompress.cli", "search", str(experiment)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so the test can clean up Ray's too
    )


def _trials(journal: Path) -> list[optuna.trial.FrozenTrial]:
    from autocompress.study._storage import open_storage

    if not journal.exists():
        return []
    storage = open_storage(str(journal), journal.parent)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if not names:
        return []
    return optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False)


def _kill_mid_trial(proc: subprocess.Popen, journal: Path, timeout_s: float = 240.0) -> set[int]:
    """Poll the journal until 2 trials are complete and 2 running, then SIGKILL the driver."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        trials = _trials(journal)
        running = {t.number for t in trials if t.state == TrialState.RUNNING}
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        if done >= 2 and len(running) == 2:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return running
        time.sleep(0.1)
    raise AssertionError("the search never had 2 trials in flight")


def test_sigkill_mid_search_then_resume_completes_exactly(tmp_path) -> None:
    experiment = _experiment(tmp_path)
    journal = tmp_path / "run" / "study.journal"
    first = _driver(experiment)
    try:
        running_at_kill = _kill_mid_trial(first, journal)
    finally:
        _kill_group(first)
    before = {t.number: t for t in _trials(journal)}
    finished_before = {n for n, t in before.items() if t.state == TrialState.COMPLETE}

    second = subprocess.run(
        [sys.executable, "-m", "autocompress.cli", "resume", str(experiment)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    trials = _trials(journal)
    by_number = {t.number: t for t in trials}
    completed = [t for t in trials if t.state == TrialState.COMPLETE]

    assert len(completed) == N_TRIALS
    assert [t.number for t in trials] == list(range(len(trials)))  # numbers contiguous
    for n in finished_before:  # finished work kept, untouched
        assert by_number[n].state == TrialState.COMPLETE
        assert by_number[n].values == before[n].values
    for n in running_at_kill:  # every trial in flight at the kill is accounted for
        assert by_number[n].state == TrialState.FAIL
        assert "stopped while this trial was running" in by_number[n].user_attrs["failure"]
        retries = [t for t in trials if t.user_attrs.get("retry_of") == n]
        assert len(retries) == 1
        # the retry runs the same plan (a trial killed while sampling had only part of its
        # parameters; the retry keeps those and samples the rest)
        assert by_number[n].params.items() <= retries[0].params.items()
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    assert not retried & finished_before  # no finished trial was run twice
    ran = [t for t in completed if "duplicate_of" not in t.user_attrs]  # copies share a dir
    artifacts = {Path(t.user_attrs["artifact_dir"]).name for t in completed}
    assert artifacts == {f"{t.number:05d}" for t in ran}
    assert all((tmp_path / "run" / "trials" / a / "result.json").exists() for a in artifacts)
    leftovers = list((tmp_path / "run" / "trials").glob("*.tmp*"))
    assert not leftovers or all(not list(p.glob("result.json")) for p in leftovers)


def _kill_group(proc: subprocess.Popen) -> None:
    """Stop anything the killed driver left behind (Ray's processes share its group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
