"""The re-time of unsettled trials once the search's trials are done (study/_retime.py)."""

from __future__ import annotations

import io
import logging

import pytest

from autocompress.config import ExperimentConfig
from autocompress.front import build_front
from autocompress.measure import LatencyStats, Measurement
from autocompress.record import read_study, read_trial
from autocompress.study import open_study, optimize
from autocompress.study._executors import LocalExecutor
from autocompress.study._progress import Progress
from autocompress.study._retime import retime_unsettled, timing_summary
from autocompress.study._setup import setup_from_experiment
from tests.conftest import FAST_MEASURE, tiny_experiment

# every sitting's spread is above this, so every trial (and every re-time) stays unsettled
NEVER_SETTLES = {**FAST_MEASURE, "max_spread": 1e-9, "retime": True}


def _unsettled_search(tmp):
    """A finished tiny search whose every trial was timed unsettled, re-time off."""
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp, target={"measure": {**NEVER_SETTLES, "retime": False}})
    )
    setup = setup_from_experiment(config)
    return setup, optimize(open_study(setup), setup, LocalExecutor())


@pytest.fixture(scope="module")
def unsettled(tmp_path_factory):
    return _unsettled_search(tmp_path_factory.mktemp("retime"))


def _stats(median_ms: float, spread: float) -> LatencyStats:
    return LatencyStats(median_ms, median_ms, median_ms, median_ms, spread, 20)


def _sitting(median_ms: float, spread: float, fp32_ms: float) -> Measurement:
    return Measurement(_stats(median_ms, spread), _stats(fp32_ms, 0.01), 1, False, 0.0, [0])


def _retimed_setup(setup):
    measure = {**NEVER_SETTLES, "max_spread": 0.10}
    return setup.__class__(**{**vars(setup), "task": _with_measure(setup.task, measure)})


def _with_measure(task, measure):
    from dataclasses import replace

    from autocompress.config import MeasureConfig

    return replace(task, target=replace(task.target, measure=MeasureConfig(**measure)))


def test_a_steadier_re_time_is_what_the_front_shows_and_a_wider_one_is_not(unsettled) -> None:
    setup, study = unsettled
    setup = _retimed_setup(setup)
    trials = [t for t in study.trials if read_trial(t).result is not None]
    key = read_trial(trials[0]).result.fingerprint_key
    steadier, wider = trials[0].number, trials[1].number
    timed = []

    def fake(artifact: bytes, usual):
        timed.append(len(artifact))
        n = len(timed)  # trials in number order: the first gets a tight sitting
        spread = 0.0 if n == 1 else 5.0
        return _sitting(0.5 * n, spread, 1.0), {"key": key}

    done = retime_unsettled(study, setup, fake)
    assert not done.other_device and [r.number for r in done.rows][:2] == [steadier, wider]
    assert all(n > 0 for n in timed)  # each trial's stored deployable was read
    front = build_front(study)
    by_number = {m.number: m for m in front.completed}
    tight = by_number[steadier]
    assert tight.latency_ms == 0.5 and tight.latency_ratio == 0.5
    assert tight.objectives["latency"] == 0.5  # the study's unit: the ratio to fp32
    assert read_study(study).retimes[steadier].kept
    first = read_trial(study.trials[wider]).result
    assert not read_study(study).retimes[wider].kept
    assert by_number[wider].latency_ms == first.latency_ms  # its own sitting stays
    # stored once: a resumed search re-times nothing twice
    assert retime_unsettled(study, setup, fake).rows == []
    summary = timing_summary(study)  # what `status` says
    assert (summary.unsettled, summary.retimed, summary.kept) == (len(trials), len(trials), 1)
    assert f"{len(trials)} re-timed after it (1 steadier" in summary.describe()


def test_another_machines_fingerprint_stores_nothing_and_says_so(tmp_path) -> None:
    setup, study = _unsettled_search(tmp_path)
    done = retime_unsettled(
        study, _retimed_setup(setup), lambda a, u: (_sitting(0.1, 0.0, 1.0), {"key": "other"})
    )
    assert done.other_device and done.rows == [] and done.left == 3
    assert read_study(study).retimes == {}
    assert "none re-timed yet" in timing_summary(study).describe()
    out = io.StringIO()
    progress = Progress(setup, out=out)
    progress("retimed", {"pass": done})
    assert "not the one that timed the study" in out.getvalue()


def test_the_search_re_times_its_unsettled_trials_with_the_worker_timing(tmp_path, caplog) -> None:
    """End to end: every trial unsettled, so every one is timed again from its file."""
    config = ExperimentConfig.from_dict(
        tiny_experiment(tmp_path, target={"measure": NEVER_SETTLES})
    )
    setup = setup_from_experiment(config)
    with caplog.at_level(logging.INFO, logger="autocompress"):
        study = optimize(open_study(setup), setup, LocalExecutor(), on_event=Progress(setup))
    retimes = read_study(study).retimes
    completed = [t for t in study.trials if read_trial(t).result is not None]
    assert sorted(retimes) == [t.number for t in completed]
    for t in completed:
        retime, first = retimes[t.number], read_trial(t).result
        assert retime.fingerprint_key == first.fingerprint_key
        assert retime.latency.reference is not None  # timed beside fp32, like the trial
        shown = next(m for m in build_front(study).completed if m.number == t.number)
        expected = retime.latency if retime.kept else first.latency
        assert shown.latency_ms == expected.candidate.median_ms
    assert f"re-timed {len(completed)} trial(s) whose timing had not settled" in caplog.text


def test_a_failing_re_time_leaves_the_trials_as_timed_and_the_search_whole(tmp_path) -> None:
    setup, study = _unsettled_search(tmp_path)
    before = {m.number: m.latency_ms for m in build_front(study).completed}

    def gone(artifact: bytes, usual):
        raise RuntimeError("target node gone\nstack...")

    done = retime_unsettled(study, _retimed_setup(setup), gone)
    assert done.rows == [] and done.failed == "RuntimeError: target node gone"
    assert {m.number: m.latency_ms for m in build_front(study).completed} == before
    out = io.StringIO()
    Progress(setup, out=out)("retimed", {"pass": done})
    assert "the re-time failed (RuntimeError: target node gone)" in out.getvalue()
