"""GPTQ's time in a trial, against an older GPTQ: same rounding, how much less time?

``backend/_gptq.py`` rounds every layer in one forward pass over the joined calibration batches
(each layer in its pre-hook), takes the Cholesky factor of ``H^-1`` from one factorization, and
runs its column loop on contiguous rows. This script re-runs the plans of a stored study at rung
0 (no fine-tuning, so GPTQ's share of a trial is largest) once with the current GPTQ and once
with a baseline, in this process, one trial at a time, alternating which goes first, and prints
the mean ``gptq`` stage seconds, trial seconds and validation accuracy of each and the
accuracy difference on each plan. The baseline is ``layer-by-layer`` (the current code
with the one-pass form off: one pass over the batches per layer, what batches of different
shapes still take) or the path of an older ``_gptq.py`` (e.g. ``git show
f9a98a1:autocompress/backend/_gptq.py > /tmp/gptq_before.py``). Run it with nothing else on
the machine.

Run: python experiments/gptq_speed_check.py runs/bench/<study>/study.journal <baseline> [max_plans]
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

import autocompress.backend
from autocompress.backend import _gptq
from autocompress.worker import run_trial


def _plans(trials: list[Any], limit: int) -> list[dict[str, Any]]:
    """Distinct completed sampled plans with sub-7-bit layers, at rung 0."""
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        plan = t.user_attrs.get("plan")
        if t.state.name != "COMPLETE" or not plan or not plan.get("distill"):
            continue
        bits = [layer.get("weight_bits") or 32 for layer in plan.get("layers", {}).values()]
        if not any(b < _gptq.GPTQ_BELOW for b in bits):
            continue
        rung0 = {**plan, "distill": {**plan["distill"], "steps": 0}}
        out.setdefault(repr(sorted(rung0.items())), rung0)
    return list(out.values())[:limit]


@contextlib.contextmanager
def _baseline(which: str) -> Iterator[None]:
    """The baseline GPTQ in place of the current one while a trial runs."""
    if which == "layer-by-layer":
        with mock.patch.object(_gptq, "_joined", lambda _inputs: None):
            yield
        return
    spec = importlib.util.spec_from_file_location("gptq_baseline", which)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with mock.patch.object(autocompress.backend, "gptq_round", module.gptq_round):
        yield


def _run(plan: dict[str, Any], task: dict[str, Any], baseline: str | None) -> tuple[float, ...]:
    """(gptq seconds, trial seconds, validation accuracy) of one rung-0 trial."""
    start = time.perf_counter()
    with _baseline(baseline) if baseline else contextlib.nullcontext():
        result = run_trial(plan, task).result
    seconds = time.perf_counter() - start
    return result.stage_seconds.get("gptq", 0.0), seconds, result.accuracy


def main(path: str, baseline: str, limit: int) -> None:
    storage = JournalStorage(JournalFileBackend(path))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    study = optuna.load_study(study_name=name, storage=storage)
    task = study.user_attrs["task"]
    rows = []  # (baseline, current) per plan
    for plan in _plans(study.get_trials(deepcopy=False), limit):
        if len(rows) % 2 == 0:  # alternate which runs first: caches are warm for the second
            current, base = _run(plan, task, None), _run(plan, task, baseline)
        else:
            base, current = _run(plan, task, baseline), _run(plan, task, None)
        rows.append((base, current))
    n = max(1, len(rows))
    for label, i in ((baseline, 0), ("current", 1)):
        gptq, trial, accuracy = (sum(r[i][k] for r in rows) / n for k in range(3))
        print(
            f"{label}: gptq {gptq:.2f} s, trial {trial:.2f} s, validation {accuracy:.2%} "
            f"(means over {len(rows)} plans)"
        )
    diffs = ", ".join(f"{(r[1][2] - r[0][2]) * 100:+.2f}" for r in rows)
    print(f"current minus baseline validation accuracy per plan (pt): {diffs}")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 8)
