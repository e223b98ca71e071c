"""A trial's clock: seconds per stage, what waited at the measurement lock, the deadline."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from autocompress import _faults as faults
from autocompress.errors import TrialTimeoutError
from autocompress.measure import busy_waited

WAITING = "waiting_for_timing"  # stage_seconds key: work held at the lock by others' timing
MIN_WAIT_S = 0.001  # per stage: below this, the lock's own system calls, not a wait


class Clock:
    """Seconds per stage, and the trial's deadline.

    Time a stage's work stood at the measurement lock while another trial timed (``busy()``'s
    wait) is booked under ``WAITING``, not under the stage: with two workers on two cores a
    stage otherwise reads slower than it ran, and that wait is the price of isolated timing,
    not of the stage.
    """

    def __init__(self, timeout_s: float | None) -> None:
        self.seconds: dict[str, float] = {}
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TrialTimeoutError(f"trial ran past its time budget before stage {stage!r}")
        faults.point(f"trial.{stage}")
        start, waited = time.perf_counter(), busy_waited()
        try:
            yield
        finally:
            held = busy_waited() - waited
            held = held if held >= MIN_WAIT_S else 0.0  # taking a free lock is the stage's own
            self._add(stage, time.perf_counter() - start - held)
            if held:
                self._add(WAITING, held)

    def _add(self, key: str, seconds: float) -> None:
        self.seconds[key] = self.seconds.get(key, 0.0) + seconds
