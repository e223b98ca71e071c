"""The Ray executor: N trials in flight on a local Ray or an existing cluster.

Ray is reached through ``autocompress._ray`` (the one module that imports it), and only when a
search asks for ``executor: ray``. Each trial is a Ray task running :func:`execute` on plain data
with one CPU (Ray then sets one thread per worker, so trials do not fight over cores). A task
that raises is an outcome like any other; a worker process that dies (OOM, SIGKILL) surfaces as
a Ray error and is reported as ``crashed`` with the reason; a task past ``trial_timeout_s`` is
cancelled.
Measurement isolation holds across Ray workers because the lock is machine-wide (``flock``).

FINDINGS: ``ray.init(num_cpus=2, include_dashboard=False)`` starts offline in 4-5 s; Ray Tune's
Optuna bridge was 3-5x slower and duplicated trials on restore, hence plain tasks + ask/tell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from autocompress import _ray
from autocompress.study._executors import Outcome, execute, failure_reason

CANCEL_GRACE_S = 30.0


class RayExecutor:
    """Keeps up to ``n_workers`` trials in flight as Ray tasks."""

    def __init__(
        self,
        *,
        n_workers: int,
        address: str | None = None,
        objects: Any = None,
        trial_timeout_s: float | None = None,
        work: Callable[..., Outcome] = execute,
    ) -> None:
        self._owns_ray = not _ray.is_initialized() and not address
        _ray.ensure_ray(address, num_cpus=os.cpu_count() if not address else None)
        self.capacity = n_workers
        self._task = _ray.remote(work, num_cpus=1)
        self._objects = None if objects is None else _ray.put(objects)
        self._timeout = trial_timeout_s
        self._running: dict[Any, tuple[int, float]] = {}

    def submit(self, number: int, plan: dict[str, Any], task: dict[str, Any]) -> None:
        ref = self._task.remote(plan, task, number, self._objects)
        self._running[ref] = (number, time.monotonic())

    def wait(self, timeout: float) -> list[Outcome]:
        ready = _ray.wait_ready(list(self._running), timeout)
        outcomes = [self._collect(ref) for ref in ready]
        outcomes += self._cancel_overdue()
        return outcomes

    def close(self) -> None:
        for ref in list(self._running):
            _ray.cancel(ref)
        self._running.clear()
        if self._owns_ray:
            _ray.shutdown()

    def _collect(self, ref: Any) -> Outcome:
        number, _ = self._running.pop(ref)
        value, failure, cause = _ray.collect(ref)
        if failure is None:
            return value
        if failure == "cancelled":
            return Outcome(number, "timeout", reason="trial cancelled after its time budget")
        if failure == "failed":  # execute() never raises, so this is Ray failing the task
            return Outcome(number, "failed", reason=failure_reason(cause or RuntimeError("?")))
        text = str(cause).strip()  # the worker died: OOM killer, SIGKILL, node lost
        reason = text.splitlines()[0][:300] if text else ""
        return Outcome(
            number, "crashed", reason=f"worker process died: {type(cause).__name__}: {reason}"
        )

    def _cancel_overdue(self) -> list[Outcome]:
        if self._timeout is None:
            return []
        now, out = time.monotonic(), []
        for ref, (number, started) in list(self._running.items()):
            if now - started > self._timeout + CANCEL_GRACE_S:
                _ray.cancel(ref)
                self._running.pop(ref)
                out.append(
                    Outcome(
                        number,
                        "timeout",
                        reason=f"trial exceeded search.trial_timeout_s={self._timeout:g} s",
                    )
                )
        return out
