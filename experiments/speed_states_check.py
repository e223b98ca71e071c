"""Does this machine switch speeds, and do fp32 and int8 models slow down alike when it does?

The latency protocol times each candidate beside the fp32 reference so that drift cancels in the
ratio. That holds only if a slower machine slows both models by the same factor. This script
times three stored deployables of one study back to back on the timing core (one pinned thread,
median of a few hundred calls each), every ~2 s for ``seconds``, with the machine's steal time,
and prints each reading, then groups the readings by the third model's speed (fast: within 25%
of its fastest reading) and prints each group's medians and the third model's ratio to the
first. Measured on a 2-core AMD EPYC VM (Dec 8; refnet fp32, uniform int8, a pruned int8 plan):
fast 0.327 / 0.127 / 0.060 ms, slow 0.353 / 0.168 / 0.093 ms, the ratio 0.186 against 0.260.
Run it with nothing else on the machine.

Run: python experiments/speed_states_check.py <run_dir> <fp32 trial> <int8 trial> <trial> [seconds]
     (e.g. runs/throughput-1w-r0 0 1 7 90, after experiments/throughput_check.py rungs=0)
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from autocompress.measure import default_cores


def session(run_dir: Path, trial: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    model = next((run_dir / "trials" / f"{trial:05d}").glob("*.onnx"))
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def median_ms(s: ort.InferenceSession, feed: dict[str, np.ndarray], calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        s.run(None, feed)
        times.append(time.perf_counter_ns() - t)
    return float(np.median(times)) / 1e6


def steal() -> int:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def main(run_dir: Path, trials: list[int], seconds: float) -> None:
    os.sched_setaffinity(0, set(default_cores()))
    sessions = [session(run_dir, t) for t in trials]
    first = sessions[0].get_inputs()[0]
    shape = [1 if not isinstance(d, int) else d for d in first.shape]
    feed = {first.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    for s in sessions:
        median_ms(s, feed, 50)  # warm
    readings: list[tuple[float, ...]] = []
    start, stolen = time.time(), steal()
    while time.time() - start < seconds:
        reading = tuple(
            median_ms(s, feed, n) for s, n in zip(sessions, (200, 400, 400), strict=True)
        )
        now = steal()
        print(
            f"{time.time() - start:6.1f} s  " + "  ".join(f"{ms:.4f}" for ms in reading)
            + f"  ratio {reading[2] / reading[0]:.3f}  steal +{now - stolen}",
            flush=True,
        )  # fmt: skip
        readings.append(reading)
        stolen = now
        time.sleep(0.5)
    fastest = min(r[2] for r in readings)
    for name, group in (
        ("fast", [r for r in readings if r[2] <= 1.25 * fastest]),
        ("slow", [r for r in readings if r[2] > 1.25 * fastest]),
    ):
        if group:
            medians = [statistics.median(r[i] for r in group) for i in range(3)]
            ratio = statistics.median(r[2] / r[0] for r in group)
            print(
                f"{name}: {len(group)} readings, trials {trials} "
                + " / ".join(f"{m:.4f}" for m in medians) + f" ms, ratio {ratio:.3f}"
            )  # fmt: skip


if __name__ == "__main__":
    args = sys.argv[1:]
    main(Path(args[0]), [int(a) for a in args[1:4]], float(args[4]) if len(args) > 4 else 90.0)
