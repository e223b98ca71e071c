"""Where a study's trial time goes: per fine-tuning budget, the mean trial and its stages.

Each worker times its trial's stages (pruning, BatchNorm recalibration, fine-tuning, GPTQ
rounding, realizing, timing, ...) and the result stores them (``TrialResult.stage_seconds``).
``status`` shows them per budget because what a rung costs, and why, decides whether a ladder
pays on a model: on resnet18 a rung-0 trial took 27.4 s, of which GPTQ rounding 12.5 s, and a
60-step trial 53.6 s (README, ``[0, 60]``), figures that were only in the journal before.

Means, not medians: per budget, the stages' means and the mean time outside them (dispatch, a
worker's start, the driver's writes: a trial's storage clock minus its stages) add up to the
mean trial, so the line reads as a breakdown (the storage's and the worker's clocks can
disagree by a little: outside is never shown below 0). Waits at the measurement lock fall
inside the stage that waited (``measure`` for the exclusive timing lock, any CPU-heavy stage
for a timing in progress).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from optuna.trial import FrozenTrial, TrialState

from autocompress.record import read_trial
from autocompress.study._budget import trial_seconds

SHOWN = 0.05  # stages below this share of the mean trial are summed into one figure


@dataclass(frozen=True)
class BudgetClocks:
    """The completed trials of one fine-tuning budget: how many, the mean trial's seconds, the
    mean seconds of each stage (largest first) and outside the stages."""

    steps: int
    trials: int
    wall_s: float
    stages_s: dict[str, float] = field(default_factory=dict)
    outside_s: float = 0.0

    def describe(self) -> str:
        """One line: ``60 steps (14 trials): 53.6 s a trial = finetune 24.1, gptq 14.6, ...``."""
        shown = {k: v for k, v in self.stages_s.items() if v >= SHOWN * self.wall_s}
        rest = sum(self.stages_s.values()) - sum(shown.values())
        parts = [f"{name} {s:.1f}" for name, s in shown.items()]
        if len(shown) < len(self.stages_s):
            parts.append(f"{len(self.stages_s) - len(shown)} more stage(s) {rest:.1f}")
        parts.append(f"outside the stages {self.outside_s:.1f}")
        return (
            f"{self.steps} steps ({self.trials} trial(s)): {self.wall_s:.1f} s a trial = "
            + ", ".join(parts)
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "steps": self.steps,
            "trials": self.trials,
            "wall_s": self.wall_s,
            "stages_s": dict(self.stages_s),
            "outside_s": self.outside_s,
        }


def budget_clocks(trials: list[FrozenTrial]) -> list[BudgetClocks]:
    """Per fine-tuning budget (the steps each trial ran), lowest first, over the completed
    trials that ran (a duplicate, whose figures were copied, ran nothing and is left out)."""
    groups: dict[int, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        record = read_trial(t)
        result = record.result
        if result is None or record.duplicate_of is not None or not result.stage_seconds:
            continue  # a duplicate, or stored before stages were timed
        groups[result.finetune_steps].append((trial_seconds(t), dict(result.stage_seconds)))
    return [_summary(steps, rows) for steps, rows in sorted(groups.items())]


def _summary(steps: int, rows: list[tuple[float, dict[str, float]]]) -> BudgetClocks:
    n = len(rows)
    totals: dict[str, float] = defaultdict(float)
    for _, stages in rows:
        for name, seconds in stages.items():
            totals[name] += seconds
    stages_s = {k: v / n for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    wall = sum(w for w, _ in rows) / n
    return BudgetClocks(steps, n, wall, stages_s, max(0.0, wall - sum(stages_s.values())))
