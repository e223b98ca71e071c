"""A trial's clock books work held at the measurement lock apart from the stage (worker/_clock)."""

from __future__ import annotations

import threading
import time

from autocompress.measure import busy, exclusive
from autocompress.worker._clock import WAITING, Clock

HOLD_S = 0.3


def test_a_stage_held_by_another_trials_timing_is_booked_as_waiting_not_as_the_stage() -> None:
    timing, release = threading.Event(), threading.Event()

    def timer() -> None:  # another trial timing: holds the machine exclusively
        with exclusive():
            timing.set()
            time.sleep(HOLD_S)
        release.set()

    clock = Clock(None)
    other = threading.Thread(target=timer)
    other.start()
    timing.wait(5)
    with clock("prune"), busy():  # must wait at the gate until the timer is done
        assert release.is_set()
        time.sleep(0.05)
    other.join()
    assert clock.seconds[WAITING] >= HOLD_S * 0.5
    assert 0.04 <= clock.seconds["prune"] < HOLD_S * 0.5  # its own work only


def test_a_stage_nobody_holds_has_no_waiting() -> None:
    clock = Clock(None)
    with clock("evaluate"), busy():
        time.sleep(0.01)
    assert WAITING not in clock.seconds and clock.seconds["evaluate"] >= 0.01
