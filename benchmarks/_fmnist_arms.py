"""The benchmark's arms: run (or reuse) a study, refine it, and account for what it cost.

Split from ``fmnist.py`` (which parses the command, verifies and reports): everything here is
about one arm's study and its bill. Cost is the machine's busy CPU time and the wall time of the
sittings that ran the study's own trials: a reused study costs the sitting that ran it (kept in
``runs/bench/timings-b<batch>.json``), a resumed one its earlier sittings plus this one, and a
refinement's time is counted apart from its search's.
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from autocompress import refine, search
from autocompress.record import read_trial
from autocompress.study import trial_minutes

from _fmnist_figures import Arm, is_refinement


@dataclass(frozen=True)
class Sitting:
    """What every arm of one benchmark run shares: the experiment, target batch, overrides."""

    experiment: str
    batch: int
    common: tuple[str, ...]
    tag: str = ""  # "" for the reference experiment, else "<experiment name>-"
    # SGD rate of the refined trials; None: the experiment's (finetune.lr, and plain_lr for the
    # plain baselines), as the multi-fidelity rungs train
    refine_lr: float | None = None

    def study_name(self, arm: Arm) -> str:
        return f"bench-{self.tag}{arm.label}-b{self.batch}"

    @property
    def stem(self) -> str:
        """File stem of the results: fmnist-b1 for the reference experiment."""
        return f"{self.tag or 'fmnist-'}b{self.batch}"


def overrides(arm: Arm, sitting: Sitting, baselines: tuple[str, ...]) -> list[str]:
    name = sitting.study_name(arm)
    return [
        *sitting.common,
        f"name={name}",
        f"run_dir=runs/bench/{name}",
        f"search.sampler={arm.sampler}",
        f"search.seed={arm.seed}",
        f"search.n_trials={arm.n_trials}",
        f"search.baselines=[{','.join(baselines)}]",
        # random search stays naive: no uniform warm start (the default search's own)
        *(["search.warm_start=[]"] if arm.sampler == "random" else []),
        *(
            [f"search.rungs=[{','.join(map(str, arm.rungs))}]", f"search.eta={arm.eta}"]
            if arm.rungs is not None
            else []
        ),
        *([f"search.max_steps={arm.max_steps}"] if arm.max_steps is not None else []),
        *([f"search.max_trial_minutes={arm.max_minutes}"] if arm.max_minutes else []),
    ]


def _cpu_s() -> float:
    """Busy CPU seconds of the whole machine (/proc/stat), falling back to this process tree.

    Ray's worker processes are children of the raylet, not of this driver, so rusage would miss
    them; the benchmark runs alone on the machine, so the machine's busy time is the search's.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_arm(
    arm: Arm, sitting: Sitting, baselines: tuple[str, ...], earlier: tuple[float, float]
) -> None:
    """Run (or reuse) the arm's study and time it.

    A study whose own trials all finished in an earlier sitting is *reused*: its cost is that
    sitting's. Whatever ran now on such a study (a refinement trial left running by a stopped
    sitting, which the driver re-queues) is refinement time, not the search's. A study that
    had finished trials before and ran more now (resumed, e.g. under a larger time cap) costs
    ``earlier`` (the wall and CPU seconds recorded for it) plus this sitting's.
    """
    started = datetime.datetime.now()
    start_wall, start_cpu = time.monotonic(), _cpu_s()
    settings = overrides(arm, sitting, baselines)
    arm.result = search(sitting.experiment, progress=True, overrides=settings)
    wall, cpu = time.monotonic() - start_wall, _cpu_s() - start_cpu
    arm.reused = not ran_trials_since(arm, started)
    if not arm.reused:
        resumed = ran_trials_before(arm, started)
        arm.wall_s = wall + (earlier[0] if resumed else 0.0)
        arm.cpu_s = cpu + (earlier[1] if resumed else 0.0)
    elif ran_trials_since(arm, started, refinements=True):
        arm.refine_s += wall


def ran_trials_since(arm: Arm, started: datetime.datetime, *, refinements: bool = False) -> bool:
    """Whether any of the search's own trials (or, with ``refinements``, any refinement trial)
    finished after ``started``."""
    return any(end >= started for end in _finished(arm, refinements))


def _finished(arm: Arm, refinements: bool) -> list[datetime.datetime]:
    """When each of the search's own trials (or its refinement trials) finished."""
    trials = arm.result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return [
        t.datetime_complete for t in trials if is_refinement(arm, read_trial(t)) == refinements
    ]


def refine_arm(
    arm: Arm,
    sitting: Sitting,
    trials: list[int] | None,
    members: int,
    steps: int,
    baselines: tuple[str, ...],
) -> None:
    """Refine ``trials`` (or ``members`` of the front's pool) with ``steps``; time it.

    ``arm.refine_s`` already holds the refinement time of earlier sittings of this study; the
    time of what is refined now is added to it.
    """
    start, cpu = time.monotonic(), _cpu_s()
    arm.result = refine(
        sitting.experiment,
        trials,
        members=members,
        steps=steps,
        lr=sitting.refine_lr,
        overrides=overrides(arm, sitting, baselines),
    )
    arm.refine_s += time.monotonic() - start
    arm.refine_cpu_s += _cpu_s() - cpu


def ran_trials_before(arm: Arm, started: datetime.datetime) -> bool:
    """Whether any of the search's own trials had finished before ``started`` (a resumed
    study: its earlier sittings' cost is part of it)."""
    return any(end < started for end in _finished(arm, refinements=False))


def study_span_s(arm: Arm) -> float:
    """First start to last finish of the search's own trials: the wall time of a study that ran
    in a sitting whose timings were lost (its CPU time cannot be known afterwards)."""
    trials = arm.result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ran = [t for t in trials if not is_refinement(arm, read_trial(t))]
    start = min(t.datetime_start for t in ran)
    return (max(t.datetime_complete for t in ran) - start).total_seconds()


def time_cap(
    arm: Arm, arms: list[Arm], cap: str, sitting: Sitting, members: int, steps: int
) -> float:
    """The multi-fidelity arm's ``search.max_trial_minutes``: ``cap`` minutes, or for
    ``default`` the trial-minutes its seed's default search and refinement spent (read from
    that study's storage, as the budget counts them), so the two compare at equal time by
    construction rather than cut afterwards. The default is refined first if it is not yet."""
    if cap != "default":
        return float(cap)
    base = next(
        a
        for a in arms
        if a.seed == arm.seed and a.sampler == arm.sampler and a.label != "baselines"
    )
    if base.result is None:
        raise SystemExit("mf_minutes=default: the seed's default search must run first")
    done = sum(m.parent is not None for m in base.result.front.completed)
    if done < members:
        refine_arm(base, sitting, None, members - done, steps, ("fp32", "int8"))
    return round(trial_minutes(base.result.study.get_trials(deepcopy=False)), 2)


def previous_costs(path: Path) -> dict[str, list[Any]]:
    """Wall, CPU and refinement seconds of an earlier sitting's searches (for reused studies)."""
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    out = {
        s["arm"]: [s["wall_s"], s["cpu_s"], s.get("refine_s", 0.0), s.get("refine_cpu_s", 0.0)]
        for s in data["searches"]
    }
    out["baselines"] = [data.get("baselines_wall_s", 0.0), data.get("baselines_cpu_s", 0.0), 0.0]
    return out


def stored_timings(path: Path) -> dict[str, list[Any]]:
    return json.loads(path.read_text()) if path.exists() else {}


def record_cost(path: Path, arm: Arm, previous: dict[str, list[Any]]) -> None:
    """Keep each arm's cost as soon as it is known, so a re-run that reuses it can report it."""
    wall: float = arm.wall_s
    cpu: float | None = arm.cpu_s
    if arm.reused:  # nothing ran now: the cost of the sitting that ran it, or its span
        wall, cpu = (previous.get(arm.label) or [0.0, None])[:2]
        wall, cpu = (wall, cpu) if wall else (study_span_s(arm), None)
    previous[arm.label] = [wall, cpu, arm.refine_s, arm.refine_cpu_s]
    path.write_text(json.dumps(previous, indent=2))
