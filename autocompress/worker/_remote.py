"""Timing on another machine: a target that names Ray node resources is timed on such a node.

The trial trains wherever it runs; its deployable's bytes (and the fp32 reference's) are shipped
in a Ray task that requires ``target.node_resources`` (e.g. ``{"edge_x86": 1}``), rebuilt there
by the same runtime, and timed under the same protocol and lock on that node. The fingerprint
names the node. The task asks for no CPU so that a node kept for timing is never filled by
training tasks waiting on it.
"""

from __future__ import annotations

import json
from typing import Any

from autocompress import _ray
from autocompress.config import TargetConfig, build, to_plain
from autocompress.errors import ConfigError, UnsupportedPlanError
from autocompress.measure import Measurement, time_beside_reference


def measure_on_node(
    runtime: str,
    artifact: bytes,
    reference: bytes,
    batch: Any,
    target: TargetConfig,
    ray_address: str | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """Time ``artifact`` beside ``reference`` on a node with ``target.node_resources``."""
    _ray.ensure_ray(ray_address)
    wanted = dict(target.node_resources)
    if not _ray.node_with(wanted):
        raise UnsupportedPlanError(no_node_message(wanted))
    task = _ray.remote(_time_here, num_cpus=0, resources=wanted)
    sitting, where = _ray.get(task.remote(runtime, artifact, reference, batch, to_plain(target)))
    return Measurement.from_dict(sitting), where


def no_node_message(wanted: dict[str, float]) -> str:
    return (
        f"target.node_resources {wanted} match no live Ray node; start the target node with "
        f"`ray start --resources '{json.dumps(wanted)}'` or fix the target"
    )


def check_target_node(target: TargetConfig, ray_address: str | None) -> None:
    """Before a search: refuse a target no node of the cluster can time (a config error)."""
    if not target.node_resources:
        return
    started = not _ray.is_initialized()
    _ray.ensure_ray(ray_address)
    try:
        if not _ray.node_with(dict(target.node_resources)):
            raise ConfigError(no_node_message(dict(target.node_resources)))
    finally:
        if started:  # leave the process as we found it; the executor connects on its own
            _ray.shutdown()


def _time_here(
    runtime: str, artifact: bytes, reference: bytes, batch: Any, target_data: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs on the target node: rebuild both deployables, time them, fingerprint this node."""
    from autocompress.runtimes import compute_precision, get_runtime

    target = build(TargetConfig, target_data, "target")
    rt = get_runtime(runtime)
    sitting, where = time_beside_reference(
        rt.load(artifact, target).timer(batch, target.threads),
        rt.load(reference, target).timer(batch, target.threads),
        target,
        versions=rt.versions(),
        input_shape=batch.shape[1:],
        precision=compute_precision(target),
        node=_ray.node_id(),
    )
    where["node_resources"] = dict(target.node_resources)
    return sitting.to_dict(), where
