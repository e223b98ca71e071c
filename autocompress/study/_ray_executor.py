"""The Ray executor: N trials in flight on a local Ray or an existing cluster.

The only module (with ``measure/_remote.py``) that imports ``ray``, and only when a search asks
for ``executor: ray``. Each trial is a Ray task running :func:`execute` on plain data with one
CPU (Ray then sets one thread per worker, so trials do not fight over cores). A task that raises
is an outcome like any other; a worker process that dies (OOM, SIGKILL) surfaces as a Ray error
and is reported as ``crashed`` with the reason; a task past ``trial_timeout_s`` is cancelled.
Measurement isolation holds across Ray workers because the lock is machine-wide (``flock``).

FINDINGS: ``ray.init(num_cpus=2, include_dashboard=False)`` starts offline in 4-5 s; Ray Tune's
Optuna bridge was 3-5x slower and duplicated trials on restore, hence plain tasks + ask/tell.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

from autocompress.errors import ConfigError
from autocompress.study._executors import Outcome, execute, failure_reason

_FORWARDED_ENV = ("AUTOCOMPRESS_LOCK_DIR", "AUTOCOMPRESS_CACHE", "AUTOCOMPRESS_DATA")
CANCEL_GRACE_S = 30.0


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (a cluster) or start a local Ray, once per process."""
    if ray.is_initialized():
        return
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
        "runtime_env": {"env_vars": env} if env else None,
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # "local": a fresh cluster, never the leftovers of a killed driver's one
            ray.init(address="local", num_cpus=num_cpus, **kwargs)
    except ConnectionError as exc:
        raise ConfigError(
            f"search.ray_address {address!r}: no Ray cluster there ({exc}); start one with "
            "`ray start --head` or leave ray_address empty for a local Ray"
        ) from None


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
        self._owns_ray = not ray.is_initialized() and not address
        ensure_ray(address, num_cpus=os.cpu_count() if not address else None)
        self.capacity = n_workers
        self._task = ray.remote(num_cpus=1, max_retries=0)(work)
        self._objects = None if objects is None else ray.put(objects)
        self._timeout = trial_timeout_s
        self._running: dict[Any, tuple[int, float]] = {}

    def submit(self, number: int, plan: dict[str, Any], task: dict[str, Any]) -> None:
        ref = self._task.remote(plan, task, number, self._objects)
        self._running[ref] = (number, time.monotonic())

    def wait(self, timeout: float) -> list[Outcome]:
        if not self._running:
            return []
        ready, _ = ray.wait(list(self._running), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is done too
            ready, _ = ray.wait(list(self._running), num_returns=len(self._running), timeout=0)
        outcomes = [self._collect(ref) for ref in ready]
        outcomes += self._cancel_overdue()
        return outcomes

    def close(self) -> None:
        for ref in list(self._running):
            ray.cancel(ref, force=True)
        self._running.clear()
        if self._owns_ray:
            ray.shutdown()

    def _collect(self, ref: Any) -> Outcome:
        number, _ = self._running.pop(ref)
        try:
            return ray.get(ref)
        except TaskCancelledError:
            return Outcome(number, "timeout", reason="trial cancelled after its time budget")
        except RayTaskError as exc:  # execute() never raises, so this is Ray failing the task
            return Outcome(number, "failed", reason=failure_reason(exc.cause or exc))
        except (RayError, GetTimeoutError) as exc:  # worker died: OOM killer, SIGKILL, node lost
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            return Outcome(
                number, "crashed", reason=f"worker process died: {type(exc).__name__}: {reason}"
            )

    def _cancel_overdue(self) -> list[Outcome]:
        if self._timeout is None:
            return []
        now, out = time.monotonic(), []
        for ref, (number, started) in list(self._running.items()):
            if now - started > self._timeout + CANCEL_GRACE_S:
                ray.cancel(ref, force=True)
                self._running.pop(ref)
                out.append(
                    Outcome(
                        number,
                        "timeout",
                        reason=f"trial exceeded search.trial_timeout_s={self._timeout:g} s",
                    )
                )
        return out
