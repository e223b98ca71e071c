"""Time again, once the search's trials are done, each trial whose timing never settled.

A sitting is retried inside ``measure`` while its spread is wide or the fp32 model beside it ran
slow, but only ``target.measure.attempts`` times (about 1.5 s on refnet), and a slow spell can
last longer: such a trial keeps its steadiest sitting and is labelled ``timing unsettled``
(13 of 70 trials in one resnet18 benchmark sitting on a 2-core Xeon VM, Dec 7). Its figure is
pessimistic, since a disturbance only slows a model down, so it can keep a plan off the front
that belongs there. Here the driver, its executor closed (no trial trains beside the timing),
has each such deployable timed again from its file (``worker.retime_artifact``, the protocol
and lock of a trial's own sitting) against the usual fp32 of this study's settled sittings,
and keeps whichever sitting is steadier (``measure.sitting_badness``). Each re-time is stored on
the study before the next is taken (``record.attrs.set_retime``), so a killed driver loses at
most the one being timed and a resumed search re-times only the rest; the front reads it
(``front._member``). Optuna's stored values stay as told: the sampler learnt from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress.measure import Measurement, sitting_badness
from autocompress.record import Retime, TrialRecord, read_study, read_trial
from autocompress.record import attrs as A

if TYPE_CHECKING:
    from autocompress.study._setup import SearchSetup

# (deployable bytes, the usual fp32 median or None) -> (sitting, fingerprint)
TimeArtifact = Callable[[bytes, float | None], tuple[Measurement, dict[str, Any]]]


@dataclass(frozen=True)
class Retimed:
    """One re-timed trial, for the search's closing lines."""

    number: int
    before: Measurement
    after: Measurement
    kept: bool


@dataclass(frozen=True)
class RetimePass:
    """What a pass re-timed; ``other_device``: it stopped, this machine is not the one that
    timed the study (its fingerprint differs), so nothing it measured was stored; ``failed``:
    it stopped on an error (a target node gone, a file unreadable), the rest kept as timed."""

    rows: list[Retimed]
    left: int  # unsettled trials not re-timed
    other_device: bool = False
    failed: str | None = None  # why the timing failed, where it did (the rest left as timed)


def retime_unsettled(
    study: optuna.Study, setup: SearchSetup, time_artifact: TimeArtifact | None = None
) -> RetimePass:
    """Re-time the study's unsettled trials (none with ``target.measure.retime`` off) and
    store each; ``time_artifact`` replaces the worker's timing (tests)."""
    if not setup.task.target.measure.retime:
        return RetimePass([], 0)
    todo = _unsettled(study, setup)
    if not todo:
        return RetimePass([], 0)
    if time_artifact is None:
        time_artifact = _worker_timing(setup)
    usual = _usual_reference(study, read_study(study).fingerprint_key)
    config = setup.task.target.measure
    done: dict[Path, tuple[Measurement, dict[str, Any]]] = {}
    out: list[Retimed] = []
    for number, record, file in todo:
        assert record.result is not None
        if file not in done:  # a duplicate trial shares its original's file
            try:
                done[file] = time_artifact(file.read_bytes(), usual)
            except Exception as exc:  # the search is over: a failed re-time must not undo it
                why = f"{type(exc).__name__}: {exc}".splitlines()[0]
                return RetimePass(out, len(todo) - len(out), failed=why)
        after, where = done[file]
        key = where.get("key")
        if key != record.result.fingerprint_key:
            return RetimePass(out, len(todo) - len(out), other_device=True)
        before = record.result.latency
        kept = _badness(after, config, usual) < _badness(before, config, usual)
        A.set_retime(study, number, Retime(after, kept, None if key is None else str(key)))
        out.append(Retimed(number, before, after, kept))
    return RetimePass(out, 0)


@dataclass(frozen=True)
class TimingSummary:
    """How a study's timings went, for ``status``: trials timed unsettled during the search,
    how many of those were re-timed after it, and how many re-times were kept."""

    completed: int
    unsettled: int
    retimed: int
    kept: int

    def describe(self) -> str | None:
        if not self.unsettled:
            return None
        head = (
            f"timing: {self.unsettled} of {self.completed} trials did not settle during the "
            "search; "
        )
        if not self.retimed:
            return head + "none re-timed yet (resume the search on the machine that timed it)"
        left = self.unsettled - self.retimed
        return (
            f"{head}{self.retimed} re-timed after it ({self.kept} steadier: the front shows "
            f"those sittings){f', {left} not yet' if left else ''}"
        )

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def timing_summary(study: optuna.Study) -> TimingSummary:
    """The study's completed trials, those timed unsettled, and their re-times (``status``)."""
    info = read_study(study)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    done = [(t.number, r) for t in trials if (r := read_trial(t).result) is not None]
    unsettled = [n for n, r in done if not r.latency.stable]
    retimed = [info.retimes[n] for n in unsettled if n in info.retimes]
    return TimingSummary(len(done), len(unsettled), len(retimed), sum(r.kept for r in retimed))


def _unsettled(study: optuna.Study, setup: SearchSetup) -> list[tuple[int, TrialRecord, Path]]:
    """COMPLETE trials timed unsettled on the study's device, not yet re-timed, whose
    deployable is still in the run directory."""
    info = read_study(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = read_trial(t)
        r = record.result
        if r is None or r.latency.stable or t.number in info.retimes or not record.artifact_dir:
            continue
        if info.fingerprint_key is not None and r.fingerprint_key != info.fingerprint_key:
            continue
        folder = setup.run_dir / "trials" / Path(record.artifact_dir).name
        file = folder / f"model{r.artifact_suffix}"
        if file.is_file():
            out.append((t.number, record, file))
    return out


def _usual_reference(study: optuna.Study, key: str | None) -> float | None:
    """What a steady sitting's fp32 shows on the study's device (fingerprint ``key``): the
    worker's rule (``usual_reference``) over the settled sittings, in the order they completed."""
    from autocompress.worker import usual_reference

    settled: list[tuple[Any, float]] = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = read_trial(t).result
        if r is None or not r.latency.stable or r.latency.reference is None:
            continue
        if key is None or r.fingerprint_key == key:
            settled.append((_completed_at(t), r.latency.reference.median_ms))
    return usual_reference([ms for _, ms in sorted(settled, key=lambda x: x[0])])


def _completed_at(t: FrozenTrial) -> float:
    return t.datetime_complete.timestamp() if t.datetime_complete else 0.0


def _badness(m: Measurement, config: Any, usual: float | None) -> tuple[float, float]:
    return sitting_badness(m.candidate, m.reference, config, usual)


def _worker_timing(setup: SearchSetup) -> TimeArtifact:
    """The worker's timing of a stored deployable, in this process (the driver's machine is the
    one that timed the trials unless the target names Ray node resources: then the node)."""
    from autocompress.worker import retime_artifact

    task = setup.task.to_dict()
    return lambda artifact, usual: retime_artifact(artifact, task, usual, objects=setup.objects)
