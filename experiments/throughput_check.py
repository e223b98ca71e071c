"""Does a second Ray worker pay on a 2-core machine, with latency isolation still in force?

Runs the default Fashion-MNIST search twice, with the same seeded random sampler (so trial k has
the same plan in both runs): once with 1 Ray worker, once with 2. Reports completed trials per
hour (from the first trial's start to the last trial's end, as the study stored them; Ray and
reference start-up excluded) and, for every plan measured in both runs, the ratio of its latency
measured with 2 trials in flight to the latency measured with 1 (isolation: should be ~1).

Run: python experiments/throughput_check.py [n_trials=10] [steps=60]   (about 10 minutes; opt-in)
     python experiments/throughput_check.py n_trials=24 rungs=0   (rung-0 trials: seconds each)
     dotted keys are the experiment's overrides (target.measure.reference_tolerance=0.05)
``rungs=0`` runs a one-rung multi-fidelity search (prune, recalibrate, snap, realize, time; no
fine-tuning), where orchestration matters most. Two shares of the wall time: ``outside_stages`` =
1 - (seconds in the trials' clocked stages) / (wall x workers): dispatch, result transfer, the
driver's writes (every step of a trial is clocked); ``idle`` = the
driver's own gaps between one trial's end and the next one's start, over the wall (1 worker).
What limits the speedup, measured: the timing sitting holds the machine exclusively (the
measurement lock), so with 2 workers at best everything else overlaps; the bound printed is
2 t / (t + timing) from the 1-worker run (t: wall per trial), and "work per trial 2w/1w" is how
much slower the overlapping stages run beside each other (cores sharing caches and memory), their
waits at the lock while the other worker timed booked apart ("held by the other's timing").
Writes runs/throughput_check[-rungs].json.
"""

from __future__ import annotations

import itertools
import json
import statistics
import sys
from pathlib import Path

from optuna.trial import TrialState

from autocompress import search
from autocompress.record import read_trial
from autocompress.worker._clock import WAITING

EXPERIMENT = "experiments/fashion_mnist.yaml"


def run(
    n_workers: int, n_trials: int, steps: int, rungs: str | None = None, extra: tuple = ()
) -> dict:
    name = f"throughput-{n_workers}w" + ("" if rungs is None else f"-r{rungs}")
    result = search(
        EXPERIMENT,
        progress=True,
        overrides=[
            f"search.n_trials={n_trials}",
            "search.executor=ray",
            f"search.n_workers={n_workers}",
            "search.sampler=random",
            "search.seed=0",
            f"finetune.steps={steps}",
            f"name={name}",
            f"run_dir=runs/{name}",
            *([] if rungs is None else [f"search.rungs=[{rungs}]"]),
            *extra,
        ],
    )
    trials = result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    start = min(t.datetime_start for t in trials)
    end = max(t.datetime_complete for t in trials)
    hours = (end - start).total_seconds() / 3600
    records = [read_trial(t) for t in trials]
    results = [r.result for r in records if r.result is not None]
    worked = sum(sum(r.stage_seconds.values()) for r in results)
    stages = sorted({k for r in results for k in r.stage_seconds})
    per_stage = {
        k: statistics.median(r.stage_seconds.get(k, 0.0) for r in results) for k in stages
    }
    waits = [r.latency.lock_wait_s for r in results]
    # the timing section (the measure stage less its lock wait: timer build + the sitting) holds
    # the machine exclusively; every other stage can overlap with another worker's
    timing = [r.stage_seconds.get("measure", 0.0) - r.latency.lock_wait_s for r in results]
    # the other stages' own time: a stage's wait at the lock while another trial timed is
    # booked apart (WAITING; before it was, it sat inside the stages and read as contention)
    work = [
        sum(v for k, v in r.stage_seconds.items() if k not in ("measure", WAITING))
        for r in results
    ]
    held = [r.stage_seconds.get(WAITING, 0.0) for r in results]
    return {
        "outside_stages": 1.0 - worked / (hours * 3600 * n_workers),
        "idle": _idle(trials) / (hours * 3600),
        "n_workers": n_workers,
        "completed": len(trials),
        "wall_s": hours * 3600,
        "trials_per_hour": len(trials) / hours,
        "median_stage_s": per_stage,
        "median_lock_wait_s": statistics.median(waits) if waits else None,
        "mean_timing_s": statistics.fmean(timing) if timing else None,
        "mean_work_s": statistics.fmean(work) if work else None,
        "mean_waiting_for_timing_s": statistics.fmean(held) if held else None,
        "mean_attempts": statistics.fmean(r.latency.attempts for r in results) if results else 0,
        "latency_ms": {
            json.dumps(r.plan_data, sort_keys=True): r.result.latency_ms
            for r in map(read_trial, trials)
            if r.result is not None
        },
    }


def _idle(trials: list) -> float:
    """Seconds between one trial's end and the next one's start (trials in start order)."""
    ordered = sorted(trials, key=lambda t: t.datetime_start)
    gaps = [
        (b.datetime_start - a.datetime_complete).total_seconds()
        for a, b in itertools.pairwise(ordered)
    ]
    return sum(g for g in gaps if g > 0)


def main(argv: list[str]) -> None:
    args = dict(a.split("=", 1) for a in argv)
    n_trials, steps = int(args.get("n_trials", 10)), int(args.get("steps", 60))
    extra = tuple(f"{k}={v}" for k, v in args.items() if "." in k)  # experiment overrides
    one = run(1, n_trials, steps, args.get("rungs"), extra)
    two = run(2, n_trials, steps, args.get("rungs"), extra)
    shared = sorted(set(one["latency_ms"]) & set(two["latency_ms"]))
    ratios = [two["latency_ms"][p] / one["latency_ms"][p] for p in shared]
    speedup = two["trials_per_hour"] / one["trials_per_hour"]
    per_trial = one["wall_s"] / one["completed"]
    # 2 workers overlap everything but the exclusive timing: per trial at best
    # (per_trial - timing) / 2 + timing, so the speedup is bounded by 2 t / (t + timing)
    bound = 2 * per_trial / (per_trial + one["mean_timing_s"])
    contention = two["mean_work_s"] / one["mean_work_s"]
    out = {
        "command": " ".join(["python", *sys.argv]),
        "one_worker": {k: v for k, v in one.items() if k != "latency_ms"},
        "two_workers": {k: v for k, v in two.items() if k != "latency_ms"},
        "speedup": speedup,
        "speedup_bound_serial_timing": bound,
        "work_per_trial_2w_over_1w": contention,
        "same_plan_latency_2w_over_1w": {
            "plans": len(ratios),
            "median": statistics.median(ratios) if ratios else None,
            "min": min(ratios, default=None),
            "max": max(ratios, default=None),
        },
    }
    for row in (one, two):
        print(
            f"{row['n_workers']} worker(s): {row['completed']} trials in {row['wall_s']:.0f} s "
            f"-> {row['trials_per_hour']:.0f} trials/hour, outside stages "
            f"{row['outside_stages']:.1%}, idle between trials {row['idle']:.1%}"
        )
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["median_stage_s"].items())
        print(
            f"  median s per stage: {stages}; lock wait {row['median_lock_wait_s']:.2f}; "
            f"timing {row['mean_timing_s']:.2f} s/trial (sittings {row['mean_attempts']:.2f}), "
            f"other work {row['mean_work_s']:.2f} s/trial, held by the other's timing "
            f"{row['mean_waiting_for_timing_s']:.2f} s/trial"
        )
    print(
        f"speedup 2 vs 1 worker: {speedup:.2f}x (bound with the timing serial: {bound:.2f}x; "
        f"work per trial with 2 in flight / with 1: {contention:.2f})"
    )
    if ratios:
        print(
            f"same plan, latency with 2 in flight / with 1: median {statistics.median(ratios):.3f}"
            f" range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} plans"
        )
    path = Path("runs/throughput_check" + ("" if "rungs" not in args else "-rungs") + ".json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
