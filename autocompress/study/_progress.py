"""Progress of a running search: one line per finished trial and a status line.

Shows trials done / running / failed, the front's size and hypervolume, and an ETA from the mean
wall time of the trials finished in this session.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from optuna.trial import TrialState

from autocompress.front import build_front, fmt_bytes, fmt_ms
from autocompress.record import read_trial
from autocompress.study._setup import SearchSetup
from autocompress.study._storage import storage_label


class Progress:
    """An ``on_event`` callback for :func:`autocompress.study._driver.optimize`."""

    def __init__(
        self, setup: SearchSetup, *, enabled: bool = True, out: TextIO | None = None
    ) -> None:
        self.setup = setup
        self.enabled = enabled
        self.out = out or sys.stdout
        self.started: dict[int, float] = {}
        self.durations: list[float] = []
        self._say(
            f"autocompress: study {setup.name!r} in {storage_label(setup.storage, setup.run_dir)}"
            f" | {setup.search.n_trials} trials, sampler {setup.search.sampler}, "
            f"{setup.search.n_workers} worker(s), runtime {setup.task.target.runtime}"
        )
        ref = setup.reference
        self._say(
            f"reference fp32: val accuracy {ref['val_accuracy']:.2%}, "
            f"size {fmt_bytes(ref['size_bytes'])}, {int(ref['params'])} parameters"
        )

    def __call__(self, kind: str, info: dict[str, Any]) -> None:
        if kind == "started":
            self.started[info["trial"]] = time.monotonic()
        elif kind == "recovered":
            self._say(
                f"resumed: trials {info['trials']} were left running by a stopped driver; "
                "marked failed and re-queued"
            )
        elif kind == "refining":
            self._say(
                f"refining trials {info['trials']}: the same plans fine-tuned for "
                f"{info['steps']} steps (new trials of this study)"
            )
        elif kind == "finished":
            self._finished(info)
        elif kind == "duplicate":
            self._say(
                f"  trial {info['trial']:3d} same plan as trial {info['of']}: its "
                "measurements are reused (no retraining)"
            )
            self._status(info["study"])

    def _finished(self, info: dict[str, Any]) -> None:
        number, outcome, study = info["trial"], info["outcome"], info["study"]
        seconds = time.monotonic() - self.started.pop(number, time.monotonic())
        self.durations.append(seconds)
        trial = read_trial(study.trials[number])
        tag = f"{trial.baseline} baseline" if trial.baseline else "        "
        if trial.warm_start:
            tag = f"{trial.warm_start} start"
        if trial.refine is not None:
            tag = f"refines {trial.refine.of:3d}"
        if outcome.kind == "ok" and outcome.result is not None:
            r = outcome.result
            ratio = r.latency_ratio or float("nan")
            plan = "" if trial.plan is None else trial.plan.summary()
            self._say(
                f"  trial {number:3d} {tag}  acc {r.accuracy:.2%}  "
                f"lat {fmt_ms(r.latency_ms)} ({ratio:.2f}x fp32)  "
                f"size {fmt_bytes(r.size_bytes)}  {seconds:5.1f} s  [{plan}]"
            )
        else:
            self._say(f"  trial {number:3d} {tag}  {outcome.kind}: {outcome.reason}")
        self._status(study)

    def _status(self, study: Any) -> None:
        counts = {s: 0 for s in TrialState}
        for t in study.get_trials(deepcopy=False):
            counts[t.state] += 1
        done = counts[TrialState.COMPLETE]
        left = max(0, self.setup.search.n_trials - done)
        per_trial = sum(self.durations) / len(self.durations) if self.durations else 0.0
        eta = left * per_trial / max(1, self.setup.search.n_workers)
        front = build_front(study)
        self._say(
            f"  done {done}/{self.setup.search.n_trials} | running {counts[TrialState.RUNNING]} | "
            f"failed {counts[TrialState.FAIL]} | stopped early {counts[TrialState.PRUNED]} | "
            f"front {len(front.members)} | hypervolume {front.hypervolume():.4f} | "
            f"ETA {eta / 60:.1f} min"
        )

    def _say(self, text: str) -> None:
        if self.enabled:
            print(text, file=self.out, flush=True)
