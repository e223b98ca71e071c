"""Does the re-time after a search bring unsettled trials back to their plan's true latency?

Takes two stored studies whose trial k has the same plan in both (``throughput_check.py`` writes
such a pair: the same seeded sampler with 1 and 2 workers), copies their run directories (the
originals stay as they were), resumes each copy from the experiment it stored (nothing is left
to run, so the driver goes straight to its re-time of the trials whose timing never settled) and
prints, for every re-timed trial, its latency ratio to fp32 as first timed and as the front now
shows it beside the same plan's ratio in the other study, and the disagreement between the two
studies over those plans before and after (|log(ratio a / ratio b)|, median and max).

Run: python experiments/retime_check.py runs/throughput-1w-r0 runs/throughput-2w-r0
     (seconds: only the unsettled trials are timed; the copies go to runs/retime-check-*)
"""

from __future__ import annotations

import math
import shutil
import statistics
import sys
from pathlib import Path

from autocompress import load, search
from autocompress.config import ExperimentConfig
from autocompress.front import build_front
from autocompress.record import read_study, read_trial


def ratios(study) -> dict[int, float]:
    """Trial number -> latency / fp32 as the front shows it (a kept re-time applied)."""
    return {m.number: m.latency_ratio for m in build_front(study).completed if m.latency_ratio}


def resume_copy(source: Path) -> tuple[dict[int, float], dict[int, float], list[int]]:
    """(ratios before, ratios after, re-timed trials) of a resumed copy of ``source``."""
    copy = source.parent / f"retime-check-{source.name}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy)
    study = load(copy / "study.journal", run_dir=copy).study
    before = {
        t.number: read_trial(t).result.latency_ratio
        for t in study.trials
        if read_trial(t).result is not None and read_trial(t).result.latency_ratio
    }
    experiment = dict(read_study(study).experiment)
    experiment["run_dir"] = str(copy)
    experiment["search"] = {**experiment["search"], "executor": "local", "n_workers": 1}
    result = search(ExperimentConfig.from_dict(experiment), progress=True)
    return before, ratios(result.study), sorted(read_study(result.study).retimes)


def main(a: str, b: str) -> None:
    (a_before, a_after, a_re), (b_before, b_after, b_re) = (resume_copy(Path(p)) for p in (a, b))
    plans = sorted(set(a_re) | set(b_re))
    print(f"\n{'trial':>5}  {'study':>5}  {'first':>7}  {'now':>7}  {'other':>7}")

    def gap(x: dict[int, float], y: dict[int, float], n: int) -> float:
        return abs(math.log(x[n] / y[n]))

    for n in plans:
        for label, before, after, other, re in (
            ("a", a_before, a_after, b_after, a_re),
            ("b", b_before, b_after, a_after, b_re),
        ):
            if n in re:
                print(f"{n:>5}  {label:>5}  {before[n]:7.3f}  {after[n]:7.3f}  {other[n]:7.3f}")
    shared = [n for n in plans if n in a_before and n in b_before]
    for name, x, y in (("first", a_before, b_before), ("now", a_after, b_after)):
        gaps = [gap(x, y, n) for n in shared]
        if gaps:
            print(
                f"{name:>5}: |log(a/b)| over {len(gaps)} re-timed plans: median "
                f"{statistics.median(gaps):.3f}, max {max(gaps):.3f}"
            )


if __name__ == "__main__":
    main(*sys.argv[1:3])
