"""Named kill points for the fault-injection tests (``tests/test_faults.py``).

``AUTOCOMPRESS_KILL_AT=driver.artifacts:2`` makes the process SIGKILL itself the 2nd time it passes
the point ``driver.artifacts``; ``trial.finetune:1@0.4`` kills it 0.4 s after it first enters
fine-tuning (mid-stage); unset (always, outside those tests) a point costs one dict lookup.
Points sit where a crash would hurt most: between a write and the write that makes it visible
(artifacts before ``tell``, ``tell`` before a budget slot is replaced, a stale trial closed before
its plan is re-queued) and inside every trial stage.
"""

from __future__ import annotations

import os
import signal
import threading

_hits: dict[str, int] = {}


def point(name: str) -> None:
    """SIGKILL this process here if the environment asks for it (test-only)."""
    wanted = os.environ.get("AUTOCOMPRESS_KILL_AT")
    if not wanted:
        return
    target, _, rest = wanted.partition(":")
    if target != name:
        return
    nth, _, delay = rest.partition("@")
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != int(nth or 1):
        return
    if delay:
        timer = threading.Timer(float(delay), os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    else:
        os.kill(os.getpid(), signal.SIGKILL)
