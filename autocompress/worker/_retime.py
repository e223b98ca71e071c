"""Time a stored deployable again beside the fp32 reference: the worker side of the re-time.

A trial whose timing stayed unsettled (every sitting wide, or with its fp32 running slow) keeps
its steadiest sitting, which is pessimistic: disturbances only slow a model down. Once the
search's trials are done the driver has each such trial's deployable timed again from its file
(``study/_retime.py``), and this is that timing: plain data in, like ``run_trial``, so it runs in
any process, under the same protocol and lock as a trial's own sitting.
"""

from __future__ import annotations

from typing import Any

from autocompress.measure import Measurement
from autocompress.worker._context import UserObjects, trial_context
from autocompress.worker._task import Task
from autocompress.worker._trial import time_deployable


def retime_artifact(
    artifact: bytes,
    task_data: dict[str, Any],
    usual_reference_ms: float | None,
    *,
    objects: UserObjects | None = None,
) -> tuple[Measurement, dict[str, Any]]:
    """(the sitting, the device fingerprint) of ``artifact`` (a deployable's bytes) timed beside
    the task's fp32 reference; ``usual_reference_ms``: what a steady sitting's fp32 shows here
    (the study's own sittings), so a slow one is retried as in a trial."""
    task = Task.from_dict(task_data)
    ctx = trial_context(task, objects)
    deployable = ctx.runtime.load(artifact, task.target)
    return time_deployable(deployable, ctx, task, usual_reference_ms)
