"""The fine-tuning step of each trial running in this process, for the live progress display.

Whoever runs a trial sets :data:`CURRENT_TRIAL` to its number (``study/_executors.execute``, in
the trial's own thread); the fine-tuning loop calls :func:`report` after each optimizer step; the
display reads :func:`running_steps`. Process-wide and guarded by a lock: trials of a
``LocalExecutor`` run in worker threads while the driver's thread renders. A trial in another
process (Ray) reports into that process's registry, which the driver never sees.

Light on purpose (no torch): ``autocompress.worker`` exports it eagerly.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar

CURRENT_TRIAL: ContextVar[int | None] = ContextVar("autocompress_current_trial", default=None)

_lock = threading.Lock()
_steps: dict[int, tuple[int, int]] = {}


def report(done: int, total: int) -> None:
    """Record that the current trial has done ``done`` of ``total`` steps (no trial set: no-op)."""
    number = CURRENT_TRIAL.get()
    if number is None:
        return
    with _lock:
        _steps[number] = (done, total)


def running_steps() -> dict[int, tuple[int, int]]:
    """A copy of ``{trial number: (steps done, total steps)}`` for trials that reported."""
    with _lock:
        return dict(_steps)


def clear(number: int) -> None:
    """Forget trial ``number`` (it finished, failed or was abandoned)."""
    with _lock:
        _steps.pop(number, None)
