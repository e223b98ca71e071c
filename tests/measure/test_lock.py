"""The measurement lock: timing never overlaps CPU-heavy work of any process on the machine."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import pytest

from autocompress.measure import busy, checkpoint, exclusive


def _worker(path: str, lock_dir: str, seconds: float) -> None:
    """Another process doing 'training steps': each one inside busy(), logged with times."""
    import os

    os.environ["AUTOCOMPRESS_LOCK_DIR"] = lock_dir
    from autocompress.measure import busy as worker_busy

    end = time.monotonic() + seconds
    with open(path, "a") as log:
        while time.monotonic() < end:
            with worker_busy():
                start = time.monotonic()
                x = 0
                for i in range(20000):  # ~ a millisecond of CPU work
                    x += i * i
                log.write(f"{start} {time.monotonic()}\n")
                log.flush()


def _long_section(path: str, lock_dir: str, seconds: float) -> None:
    """Another process in ONE long busy() section (a GPTQ pass), passing a checkpoint between
    chunks of work; logs each chunk, then the section's end."""
    import os

    os.environ["AUTOCOMPRESS_LOCK_DIR"] = lock_dir
    from autocompress.measure import busy as worker_busy
    from autocompress.measure import checkpoint as worker_checkpoint

    end = time.monotonic() + seconds
    with open(path, "a") as log, worker_busy():
        while time.monotonic() < end:
            worker_checkpoint()
            start = time.monotonic()
            x = 0
            for i in range(20000):
                x += i * i
            log.write(f"{start} {time.monotonic()}\n")
            log.flush()
    with open(path + ".end", "w") as done:
        done.write(str(time.monotonic()))


def _wait_for_work(log: Path, timeout_s: float = 60.0) -> None:
    """Until the worker has logged a chunk of work, so the lock is taken while work runs."""
    end = time.monotonic() + timeout_s
    while not (log.exists() and log.read_text().strip()):
        assert time.monotonic() < end, "the worker process never started working"
        time.sleep(0.02)


def _spawned(target, tmp_path: Path, monkeypatch, seconds: float) -> tuple[mp.Process, Path]:
    """``target`` working in another process on this test's locks, once it has logged work."""
    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path / "locks"))
    log = tmp_path / "work.log"
    worker = mp.get_context("spawn").Process(
        target=target, args=(str(log), str(tmp_path / "locks"), seconds)
    )
    worker.start()
    _wait_for_work(log)  # a spawned process imports for a while first (seconds on a slow CPU)
    return worker, log


def _intervals(path: Path) -> list[tuple[float, float]]:
    return [tuple(map(float, line.split())) for line in path.read_text().splitlines()]


def test_timing_never_overlaps_work_of_other_processes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path / "locks"))
    log = tmp_path / "work.log"
    ctx = mp.get_context("spawn")
    workers = [
        ctx.Process(target=_worker, args=(str(log), str(tmp_path / "locks"), 3.0))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    _wait_for_work(log)  # the workers are looping busy sections by now
    timed = []
    for _ in range(5):
        with exclusive():
            start = time.monotonic()
            time.sleep(0.05)
            timed.append((start, time.monotonic()))
        time.sleep(0.05)
    for w in workers:
        w.join()
    work = _intervals(log)
    assert len(work) > 50  # the workers really worked around the timing windows
    for t0, t1 in timed:
        overlapping = [(a, b) for a, b in work if a < t1 and b > t0]
        assert not overlapping, (t0, t1, overlapping[:3])


def test_timing_waits_for_work_in_flight_and_blocks_new_work(tmp_path: Path, monkeypatch) -> None:
    worker, log = _spawned(_worker, tmp_path, monkeypatch, 1.0)
    with exclusive() as waited:
        n_before = len(_intervals(log))
        time.sleep(0.3)
        assert len(_intervals(log)) == n_before  # no new work started while we hold the lock
    worker.join()
    assert waited < 0.5


def test_nested_busy_is_fine_but_timing_inside_busy_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path / "locks"))
    with busy(), busy(), pytest.raises(RuntimeError, match="inside a busy"), exclusive():
        pass
    with exclusive():
        pass


def test_a_timer_gets_in_at_a_long_sections_next_checkpoint(tmp_path: Path, monkeypatch) -> None:
    worker, log = _spawned(_long_section, tmp_path, monkeypatch, 3.0)
    with exclusive() as waited:
        start = time.monotonic()
        time.sleep(0.2)
        timed = (start, time.monotonic())
    worker.join()
    assert waited < 0.5  # a chunk, not the rest of a 3 s section
    assert float(Path(str(log) + ".end").read_text()) > timed[1]  # the section went on after
    overlapping = [(a, b) for a, b in _intervals(log) if a < timed[1] and b > timed[0]]
    assert not overlapping, overlapping[:3]


def test_a_checkpoint_outside_busy_does_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AUTOCOMPRESS_LOCK_DIR", str(tmp_path / "locks"))
    checkpoint()
    with busy():
        checkpoint()  # no timer waiting: goes straight on
    with exclusive():
        pass
