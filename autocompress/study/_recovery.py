"""Trials of dead drivers: heartbeats, and what a starting driver does with stale trials.

Journal storage has no heartbeat and ask/tell runs no Optuna heartbeat thread, so drivers stamp
their running trials every ``HEARTBEAT_S`` and, at start (and while waiting on other drivers'
trials), close the RUNNING trials whose driver is gone as FAIL and re-queue each one's plan once.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from autocompress import _faults as faults
from autocompress.record import attrs as A
from autocompress.record import read_trial
from autocompress.study._lifecycle import pid_alive

HEARTBEAT_S = 15.0  # how often a driver stamps its running trials
STALE_S = 90.0  # a RUNNING trial whose stamp is older than this belongs to a dead driver


def recover_stale_trials(study: optuna.Study, me: str = "") -> list[int]:
    """Close RUNNING trials whose driver is gone as FAIL, and re-queue each one's plan once.

    ``me`` is the calling driver's id: its own trials are never stale. The retry is enqueued
    *before* the stale trial is closed, so a driver killed in between leaves the stale trial
    RUNNING with its retry already queued; the next driver sees the retry and only closes it.
    """
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _is_stale(t, me):
            continue
        if not _has_retry(study, t.number):
            params = t.system_attrs.get("fixed_params") or t.params
            study.enqueue_trial(dict(params), user_attrs=A.retry_attrs(t))
        faults.point("driver.recovering")
        driver = read_trial(t).driver
        where = "?:?" if driver is None else f"{driver.host}:{driver.pid}"
        try:
            A.set_failure(
                Trial(study, t._trial_id),
                f"driver {where} stopped while this trial was running; its plan was re-queued",
            )
            study.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another driver recovered it first
            continue
        recovered.append(t.number)
    return recovered


def heartbeat(trials: Iterable[Trial]) -> None:
    now = time.time()
    for trial in trials:
        A.beat(trial, now)


def _has_retry(study: optuna.Study, number: int) -> bool:
    return any(read_trial(r).retry_of == number for r in study.get_trials(deepcopy=False))


def _is_stale(t: FrozenTrial, me: str) -> bool:
    record = read_trial(t)
    driver = record.driver
    started = t.datetime_start.timestamp() if t.datetime_start else 0.0
    if driver is None:  # killed between ask and the first stamp
        return time.time() - started > 10.0
    if driver.id == me:
        return False
    if driver.host == socket.gethostname() and (
        driver.pid == os.getpid() or not pid_alive(driver.pid)
    ):
        return True
    beat = record.heartbeat if record.heartbeat is not None else started
    return time.time() - beat > STALE_S
