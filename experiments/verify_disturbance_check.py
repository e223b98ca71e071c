"""Does ``verify`` keep speedups true when another process disturbs the machine mid-verify?

Every candidate is timed beside the same fp32 model; ``deploy/_verify.py`` times again one whose
fp32 ran more than ``target.measure.reference_tolerance`` off the others' (``settle``), and
``measure`` retries a sitting whose fp32 ran off the ones timed before it. This script verifies a
stored study's completed trials quietly twice (the truth: each one's ratio to fp32, the mean of
the two), then with a disturber: a process on another core than the timing's copying 256 MB
arrays (memory-bound, what FINDINGS measured slowing a pinned int8 model by 77%) in bursts of
0.5-3 s with 1-4 s pauses (``same-core``: on the timing's core, as an oversubscribed VM's
neighbour would be). Disturbed rounds alternate without and with ``settle``; each prints
the error of every speedup against the truth (median, max, how many over 10%) and the extra
sittings taken. Run it with nothing else on the machine.

Run: python experiments/verify_disturbance_check.py runs/<study>/study.journal [rounds] [same-core]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import statistics
import sys
import time
from typing import Any

from autocompress import load
from autocompress.deploy import candidates_of_front, verify
from autocompress.measure._latency import default_cores
from autocompress.record import read_study


def disturb(core: int, seed: int, stop: Any) -> None:
    """Memory-bound bursts pinned to ``core`` until ``stop`` is set."""
    import numpy as np

    os.sched_setaffinity(0, {core})
    rng = random.Random(seed)
    a, b = np.ones(1 << 25), np.zeros(1 << 25)  # 256 MB each
    while not stop.is_set():
        end = time.monotonic() + rng.uniform(0.5, 3.0)
        while time.monotonic() < end:
            b[:] = a
        stop.wait(rng.uniform(1.0, 4.0))


def ratios(task: dict[str, Any], candidates: list[Any], settle: bool) -> tuple[list[float], int]:
    """Without settle: no tolerance (neither verify's re-timing nor measure's retry on fp32)."""
    measure = {**task["target"]["measure"]}
    if not settle:
        measure["reference_tolerance"] = float("inf")
    rows, _ = verify({**task, "target": {**task["target"], "measure": measure}}, candidates)
    return [r.verified_ratio for r in rows], sum(r.retimes for r in rows)


def errors(got: list[float], truth: list[float]) -> list[float]:
    return [abs(t / g - 1) for g, t in zip(got, truth, strict=True)]  # speedup = 1 / ratio


def main(journal: str, rounds: int, same_core: bool) -> None:
    result = load(journal)
    task = dict(read_study(result.study).task)
    done = [t.number for t in result.study.trials if t.state.name == "COMPLETE"]
    candidates = candidates_of_front(result.front, done, result.run_dir)
    timing_core = default_cores()[0]
    other = timing_core if same_core else min(set(os.sched_getaffinity(0)) - {timing_core})
    print(f"{len(candidates)} trials; timing on core {timing_core}, disturber on core {other}")
    quiet = [ratios(task, candidates, settle=False)[0] for _ in range(2)]
    truth = [statistics.mean(pair) for pair in zip(*quiet, strict=True)]
    print("quiet: speedups " + " ".join(f"{1 / r:.2f}" for r in truth))
    print(f"quiet sittings apart: max {max(errors(quiet[1], quiet[0])):.1%}")
    stop = mp.get_context("spawn").Event()
    proc = mp.get_context("spawn").Process(target=disturb, args=(other, 0, stop), daemon=True)
    proc.start()
    summary: dict[str, list[float]] = {"without settle": [], "with settle": []}
    try:
        for k in range(rounds):
            for arm in (("without settle", "with settle") if k % 2 == 0 else
                        ("with settle", "without settle")):  # fmt: skip
                start = time.perf_counter()
                got, retimes = ratios(task, candidates, settle=arm == "with settle")
                err = errors(got, truth)
                summary[arm] += err
                print(
                    f"round {k} {arm}: speedup error median {statistics.median(err):.1%}, max "
                    f"{max(err):.1%}, {sum(e > 0.1 for e in err)} of {len(err)} over 10%; "
                    f"{retimes} re-timed sittings; {time.perf_counter() - start:.0f} s",
                    flush=True,
                )
    finally:
        stop.set()
        proc.join(10)
    for arm, err in summary.items():
        print(
            f"all rounds {arm}: median {statistics.median(err):.1%}, max {max(err):.1%}, "
            f"{sum(e > 0.1 for e in err)} of {len(err)} over 10%"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3, "same-core" in sys.argv[3:])
