"""A machine-wide measurement lock: no trial trains, calibrates or compiles while another times.

FINDINGS: a memory-heavy neighbour on the *other* core made pinned batch-1 latency 77% slower, so
isolation must cover every process on the machine (Ray workers, several drivers), not threads of
one process. We use two ``flock`` files in a per-user directory (``$AUTOCOMPRESS_LOCK_DIR`` or
``/tmp/autocompress-locks-<uid>``):

- work (``busy()``): every chunk of CPU-heavy trial work (a training step, a calibration pass, an
  export, an evaluation batch) holds the *work* lock shared. To enter, it first passes the *gate*
  (shared, released at once), which blocks it while a timer is waiting or timing.
- timing (``exclusive()``): takes the gate exclusively (new work stops at the gate), then the work
  lock exclusively (waits for work in flight to finish), times, and releases both.

Work sections are short (one step, one batch), or pass a ``checkpoint()`` between chunks (a GPTQ
layer, a recalibration batch), so a timer waits at most one chunk. The kernel
releases a dead process's locks, so a killed worker cannot wedge the machine. Each acquisition
opens its own file descriptor: ``flock`` on a shared descriptor would convert, not block, between
threads of one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

_local = threading.local()


def lock_dir() -> Path:
    default = Path("/tmp") / f"autocompress-locks-{os.getuid()}"
    path = Path(os.environ.get("AUTOCOMPRESS_LOCK_DIR", default))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _flock(name: str, mode: int) -> Iterator[None]:
    fd = os.open(lock_dir() / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def busy() -> Iterator[None]:
    """Hold around CPU-heavy trial work; blocks while a measurement is waiting or running."""
    depth = getattr(_local, "busy_depth", 0)
    if depth:
        _local.busy_depth = depth + 1
        try:
            yield
        finally:
            _local.busy_depth = depth
        return
    _local.work_fd = _enter_work()
    try:
        _local.busy_depth = 1
        yield
    finally:
        _local.busy_depth = 0
        if _local.work_fd is not None:  # None: interrupted while re-entering at a checkpoint
            os.close(_local.work_fd)  # releases the work lock
        _local.work_fd = None


def _enter_work() -> int:
    """Pass the gate (blocks while a timer waits or times), then hold the work lock shared;
    the wait is added to :func:`busy_waited`. Returns the work lock's descriptor."""
    start = time.perf_counter()
    with _flock("gate", fcntl.LOCK_SH):
        fd = os.open(lock_dir() / "work", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    _local.busy_waited = busy_waited() + time.perf_counter() - start
    return fd


def checkpoint() -> None:
    """Inside a long ``busy()`` section (a GPTQ pass, BatchNorm recalibration): if a timer is
    waiting, let it time first, then go on; elsewhere, nothing. A timer waits for the work in
    flight to finish, so one section that runs for seconds held it that long (with 2 workers on
    refnet's rung 0 the timer waited 0.40 s a trial, median, beside a GPTQ stage that ran 1.6 s
    in one section). Costs one non-blocking lock attempt when no timer waits."""
    if not getattr(_local, "busy_depth", 0) or getattr(_local, "work_fd", None) is None:
        return
    gate = os.open(lock_dir() / "gate", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return  # nobody holds the gate: no timer is waiting
    except BlockingIOError:
        pass
    finally:
        os.close(gate)
    os.close(_local.work_fd)  # let the timer take the work lock
    _local.work_fd = None
    _local.work_fd = _enter_work()


def busy_waited() -> float:
    """Seconds this thread has waited so far to enter ``busy()``: while another process timed
    (or waited to), its work stood still. A trial's clock sets it apart from the stages' own
    time, so two workers' stages are not read as slower than they ran."""
    return float(getattr(_local, "busy_waited", 0.0))


@contextlib.contextmanager
def exclusive() -> Iterator[float]:
    """Hold while timing: no busy section runs anywhere on the machine. Yields the wait in s."""
    if getattr(_local, "busy_depth", 0):
        raise RuntimeError("cannot time inside a busy() section: it would wait for itself")
    start = time.perf_counter()
    with _flock("gate", fcntl.LOCK_EX), _flock("work", fcntl.LOCK_EX):
        yield time.perf_counter() - start
