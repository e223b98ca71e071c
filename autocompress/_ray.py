"""The Ray adapter: the one module that imports ``ray``, and only when a Ray feature is used.

Two features use Ray: the Ray executor (``study/_ray_executor.py``, N trials in flight) and
remote timing (``worker/_remote.py``, a target that names Ray node resources). Both go through
the handful of calls below, so a change of Ray's API is mended in one place and
``import autocompress`` never loads Ray.

FINDINGS: ``ray.init(num_cpus=2, include_dashboard=False)`` starts offline in 4-5 s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

from autocompress.errors import ConfigError

# Worker processes see the same lock directory, checkpoint cache and data as the driver.
_FORWARDED_ENV = ("AUTOCOMPRESS_LOCK_DIR", "AUTOCOMPRESS_CACHE", "AUTOCOMPRESS_DATA")

Failure = Literal["cancelled", "failed", "crashed"]


def is_initialized() -> bool:
    import ray

    return bool(ray.is_initialized())


def ensure_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to ``address`` (a cluster) or start a local Ray, once per process.

    With no ``address`` (``search.ray_address`` unset), ``$RAY_ADDRESS`` names the cluster, as
    it does for every Ray program; without either, a fresh local Ray starts.
    """
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
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


def shutdown() -> None:
    import ray

    ray.shutdown()


def remote(
    fn: Callable[..., Any], *, num_cpus: float, resources: Mapping[str, float] | None = None
) -> Any:
    """``fn`` as a Ray task (never retried: a trial that failed is an outcome, not a glitch)."""
    import ray

    options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": 0}
    if resources:
        options["resources"] = dict(resources)
    return ray.remote(**options)(fn)


def put(value: Any) -> Any:
    import ray

    return ray.put(value)


def get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


def wait_ready(refs: list[Any], timeout: float) -> list[Any]:
    """The finished refs: waits up to ``timeout`` for the first, then takes all that are done."""
    import ray

    if not refs:
        return []
    ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
    if ready:
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
    return list(ready)


def cancel(ref: Any) -> None:
    import ray

    ray.cancel(ref, force=True)


def collect(ref: Any) -> tuple[Any, Failure | None, BaseException | None]:
    """``(value, None, None)``, or ``(None, kind, cause)`` when Ray could not deliver a value.

    ``cancelled``: the task was cancelled; ``failed``: the task raised (``cause`` is what it
    raised); ``crashed``: its worker process died (OOM killer, SIGKILL, node lost).
    """
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

    try:
        return get(ref), None, None
    except TaskCancelledError as exc:
        return None, "cancelled", exc
    except RayTaskError as exc:
        return None, "failed", exc.cause or exc
    except (RayError, GetTimeoutError) as exc:
        return None, "crashed", exc


def node_with(wanted: Mapping[str, float]) -> bool:
    """Whether a live node of the connected cluster has ``wanted`` resources."""
    import ray

    return any(
        all(n.get("Resources", {}).get(k, 0) >= v for k, v in wanted.items())
        for n in ray.nodes()
        if n.get("Alive")
    )


def node_id() -> str:
    """The id of the node this code runs on (inside a Ray task)."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
