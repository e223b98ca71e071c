"""Does rung 0 need GPTQ? Re-run stored plans at rung 0 and rank them against 60 steps.

A ladder's rung-0 accuracy only ranks plans for promotion (a promoted plan starts afresh), and
on resnet18 GPTQ rounding was 12.5 s of a 27.4 s rung-0 trial (README). This script takes the
plans of a stored study that have a 60-step accuracy (``promoted``: a ladder's rung-1 trials,
60 steps, with their rung-0 parents; ``all60``: a one-rung search's 60-step trials), re-runs
each at rung 0 (no fine-tuning) with ``finetune.gptq_batches`` as given (0: nearest rounding),
and prints Kendall's tau of the re-run rung-0 accuracy against the stored 60-step accuracy, the
stored rung-0 tau beside it where there is one, and the mean seconds of a re-run trial. It runs
trials in this process, one at a time: run it with nothing else on the machine.

Run: python experiments/rung0_rounding_check.py runs/bench/<study>/study.journal promoted 0
Measured (Dec 7, Intel Xeon @ 2.80GHz with AVX-512 VNNI, 2 cores): resnet18 ``[0, 60]`` study,
promoted, 14 plans: nearest 0.39, stored GPTQ 0.28; resnet18 one-rung study, all60, 18 plans:
nearest 0.39 (4.1 s a trial), GPTQ 0.32 (11.8 s); refnet ``[0, 60, 1000]`` seeds 0-2, promoted
(15, 20, 23 plans): nearest 0.77, 0.86, 0.77, stored GPTQ 0.75, 0.84, 0.83.
"""

from __future__ import annotations

import copy
import sys
import time
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from autocompress.front import kendall_tau
from autocompress.worker import run_trial


def _pairs(trials: list[Any], which: str) -> list[tuple[dict, float | None, float]]:
    """(plan, stored rung-0 accuracy or None, stored 60-step accuracy) per plan."""
    out = []
    for t in trials:
        if t.state.name != "COMPLETE" or "result" not in t.user_attrs:
            continue
        rung, result = t.user_attrs.get("rung") or {}, t.user_attrs["result"]
        plan = t.user_attrs["plan"]
        if which == "promoted" and rung.get("level") == 1 and rung.get("steps") == 60:
            parent = trials[rung["parent"]].user_attrs
            out.append((parent["plan"], parent["result"]["accuracy"], result["accuracy"]))
        elif (
            which == "all60"
            and not rung
            and plan.get("distill")
            and result.get("finetune_steps") == 60
        ):
            out.append((plan, None, result["accuracy"]))
    return out


def main(path: str, which: str, gptq_batches: int) -> None:
    storage = JournalStorage(JournalFileBackend(path))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    study = optuna.load_study(study_name=name, storage=storage)
    task = copy.deepcopy(study.user_attrs["task"])
    task["finetune"]["gptq_batches"] = gptq_batches
    rows = []
    for plan, stored0, acc60 in _pairs(study.get_trials(deepcopy=False), which):
        rung0 = {**plan, "distill": {**plan["distill"], "steps": 0}}
        start = time.perf_counter()
        rerun = run_trial(rung0, task).result.accuracy
        rows.append((stored0, rerun, acc60, time.perf_counter() - start))
    rerun_tau = kendall_tau([r[1] for r in rows], [r[2] for r in rows])
    print(
        f"{path}: {len(rows)} plans; tau of rung 0 (gptq_batches={gptq_batches}) to 60 steps "
        f"{rerun_tau}, {sum(r[3] for r in rows) / max(1, len(rows)):.1f} s a trial"
    )
    if rows and rows[0][0] is not None:
        print(f"  stored rung 0: tau {kendall_tau([r[0] for r in rows], [r[2] for r in rows])}")


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
