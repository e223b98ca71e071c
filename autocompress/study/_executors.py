"""Executors run trials on plain data and hand back outcomes; the driver alone talks to Optuna.

The seam is three methods: ``submit`` a plan, ``wait`` for finished outcomes (with a timeout, so
the driver can heartbeat), ``close``. :class:`LocalExecutor` runs one trial at a time in a worker
thread of the driver process (the default, and what tests use); the Ray executor lives in
``_ray_executor`` and is imported only when asked for.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from autocompress.errors import AutocompressError, HopelessTrialError, TrialTimeoutError
from autocompress.record import TrialOutput, TrialResult


@dataclass(frozen=True)
class Outcome:
    """How one trial ended."""

    number: int
    kind: str  # "ok" | "failed" | "hopeless" | "timeout" | "crashed"
    output: TrialOutput | None = None  # run_trial's output when kind == "ok"
    reason: str | None = None  # one line, stored on the trial when it did not succeed
    early_accuracy: float | None = None  # for hopeless trials

    @property
    def result(self) -> TrialResult | None:
        return None if self.output is None else self.output.result


class Executor(Protocol):
    """Runs trials; at most ``capacity`` in flight."""

    capacity: int

    def submit(self, number: int, plan: dict[str, Any], task: dict[str, Any]) -> None:
        """Start trial ``number``; returns at once. Called only while fewer than capacity run."""
        ...

    def wait(self, timeout: float) -> list[Outcome]:
        """Outcomes finished since the last call; blocks up to ``timeout`` s for at least one."""
        ...

    def close(self) -> None:
        """Stop workers; trials still running are abandoned (the driver re-queues them)."""
        ...


def execute(
    plan: dict[str, Any], task: dict[str, Any], number: int, objects: Any = None
) -> Outcome:
    """Run one trial and classify how it ended; never raises (a worker must report, not die).

    The trial's fine-tuning steps are reported under ``number`` while it runs (the progress
    display reads them: ``autocompress.worker.running_steps``); the context variable is set in
    this thread, the one that runs the trial.
    """
    from autocompress.worker import CURRENT_TRIAL, clear_steps, run_trial

    token = CURRENT_TRIAL.set(number)
    try:
        return Outcome(number, "ok", output=run_trial(plan, task, objects=objects))
    except HopelessTrialError as exc:
        return Outcome(number, "hopeless", reason=str(exc), early_accuracy=exc.accuracy)
    except TrialTimeoutError as exc:
        return Outcome(number, "timeout", reason=str(exc))
    except AutocompressError as exc:
        return Outcome(number, "failed", reason=str(exc))
    except Exception as exc:  # a bug or a library failure: keep the study going, keep the reason
        return Outcome(number, "failed", reason=failure_reason(exc))
    finally:
        CURRENT_TRIAL.reset(token)
        clear_steps(number)


def failure_reason(exc: BaseException) -> str:
    """One line: the exception type and message, and where in our code it came from."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "autocompress" in f.filename]
    where = ""
    if frames:
        last = frames[-1]
        where = f" (at {last.name}, {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message[:300]}{where}"


class LocalExecutor:
    """Trials in worker threads of this process, one at a time by default.

    A thread (not the driver's own loop) so the driver keeps heartbeating while a trial trains.
    ``n_workers > 1`` runs several at once in threads; that suits cheap or I/O-bound work
    functions (tests, remote services). Real trials in parallel belong on the Ray executor,
    where each worker is a process with its own torch threads and latency lock.
    """

    def __init__(
        self,
        objects: Any = None,
        work: Callable[..., Outcome] | None = None,
        n_workers: int = 1,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, got {n_workers}")
        self.capacity = n_workers
        self._objects = objects
        self._work = work or execute
        self._done: queue.Queue[Outcome] = queue.Queue()
        self._threads: set[threading.Thread] = set()

    def submit(self, number: int, plan: dict[str, Any], task: dict[str, Any]) -> None:
        self._threads = {t for t in self._threads if t.is_alive()}
        if len(self._threads) >= self.capacity:
            raise RuntimeError(f"LocalExecutor runs at most {self.capacity} trials at a time")
        thread = threading.Thread(
            target=lambda: self._done.put(self._work(plan, task, number, self._objects)),
            name=f"autocompress-trial-{number}",
            daemon=True,
        )
        self._threads.add(thread)
        thread.start()

    def wait(self, timeout: float) -> list[Outcome]:
        try:
            out = [self._done.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self._done.empty():
            out.append(self._done.get_nowait())
        return out

    def close(self) -> None:
        self._threads = set()  # a daemon thread still running dies with the process
