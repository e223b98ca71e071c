"""The trial-time budget (``search.max_trial_minutes``): what the study has spent, what a trial
will cost, and whether the next one fits.

A user thinks of a search's cost in time, and a step cap does not bound it: on resnet18 a rung-0
trial (no fine-tuning) took 14.0 s against 30.0 s for a 60-step one, so 60 rung-0 plans cost
17.5 trial-minutes that ``search.max_steps`` never sees. The budget counts every trial's
duration as the storage records it (``datetime_start`` to ``datetime_complete``: all workers,
all drivers, every resume), so it is exact across SIGKILL and resume like the step budget.

A driver starts a trial only when the study's spent time, plus the expected rest of the trials
running (any driver's), plus this trial's expected duration stays within the budget. Expected
durations come from the study's own history: the median seconds per fine-tuning step times the
trial's steps, plus the median time a trial spends outside fine-tuning (pruning, BN
recalibration, realizing, timing). Before any trial finished nothing is known: the first
trials start while the budget is not spent. Drivers deciding at the same instant can each start
one trial the other's did not count: the budget is passed by at most one trial per extra driver.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from optuna.trial import FrozenTrial, TrialState

from autocompress.record import attrs as A
from autocompress.record import read_trial
from autocompress.study._recovery import HEARTBEAT_S


@dataclass(frozen=True)
class TimeBudget:
    """The study's trial time: the limit, what is spent or committed, and the cost model."""

    limit_s: float
    committed_s: float  # finished trials' durations + running trials' expected durations
    overhead_s: float = 0.0  # median seconds of a trial outside fine-tuning (0: none finished)
    per_step_s: float = 0.0  # median seconds per fine-tuning step (0: nothing fine-tuned yet)

    def cost_s(self, steps: int) -> float:
        """The expected duration of a trial fine-tuned for ``steps`` steps."""
        return self.overhead_s + steps * self.per_step_s

    def fits(self, steps: int) -> bool:
        """A trial of ``steps`` steps can start without passing the limit."""
        return self.committed_s < self.limit_s and (
            self.committed_s + self.cost_s(steps) <= self.limit_s
        )

    def after(self, steps: int) -> TimeBudget:
        """This budget once a trial of ``steps`` steps is committed."""
        return replace(self, committed_s=self.committed_s + self.cost_s(steps))


# Fewer fully trained plans than this and a ladder's front is thin: on the Dec 6-7 benchmarks
# the multi-fidelity search lost to one-rung search + refine where it fully trained 2-3 plans
# (resnet18) and won where it trained 4-5 (refnet, +0.04 to +0.11 hypervolume).
FEW_FULLY_TRAINED = 3


def per_fully_trained_s(budget: TimeBudget, ladder: list[int], eta: int) -> float:
    """Expected trial seconds one fully trained plan costs with its share of the lower rungs:
    promoting the top 1/eta of each rung, eta^k plans enter k rungs below the top for each one
    that reaches it. On the Dec 7 benchmarks this predicted what the searches did: resnet18,
    ``[0, 60, 1000]``, eta 4, 32.24 trial-minutes -> 2.2 (2 fully trained); refnet's three seeds
    (55.6, 66.3, 63.9 trial-minutes) -> 4.7, 5.0, 7.0 (5 each)."""
    top = len(ladder) - 1
    return sum(eta ** (top - i) * budget.cost_s(steps) for i, steps in enumerate(ladder))


def top_rung_note(
    budget: TimeBudget, ladder: list[int], eta: int, fully_trained: int | None = None
) -> str | None:
    """Why a multi-fidelity front came out thin, when the budget explains it: at the study's
    measured costs the budget fully trains fewer than three plans. What a ladder offers a user
    (``pick``, ``export``, the benchmark's hypervolume) is its fully trained plans, so on a model
    whose top rung is dear (resnet18 on two cores: 413 s a 1000-step trial, 2 plans fully
    trained where a one-rung search + refine kept 23 members; README) a larger budget serves
    the user better, and only the study's own clocks can tell them so. A lower top rung lost
    less there but still lost (``[0, 60, 250]`` by 0.04-0.05, ``[0, 60]`` by 0.03-0.04 of
    verified hypervolume against 0.15 for ``[0, 60, 1000]``), so the note also names the
    one-rung search + ``refine``.
    Holding the budget's end for the top rung instead (three plans fully trained whatever the
    exploration left) lost by more on resnet18 (README), so the search only says so.
    ``fully_trained``: how many plans the search did train fully. None until a fine-tuned
    trial has finished."""
    if budget.per_step_s <= 0 or len(ladder) < 2:
        return None
    each = per_fully_trained_s(budget, ladder, eta)
    about = budget.limit_s / each
    if about >= FEW_FULLY_TRAINED:
        return None
    did = "" if fully_trained is None else f" (this search: {fully_trained})"
    return (
        f"at this study's measured costs a fully trained plan takes {each / 60:.1f} "
        f"trial-minutes with its share of the lower rungs (a {ladder[-1]}-step trial alone "
        f"{budget.cost_s(ladder[-1]) / 60:.1f}), so search.max_trial_minutes="
        f"{budget.limit_s / 60:g} fully trains about {about:.1f} plans{did}, and pick and "
        "export take fully trained plans only (unless --any-rung): raise "
        "search.max_trial_minutes, lower the top rung of search.rungs, or search without "
        "search.rungs and refine the best members (on resnet18 no ladder measured beat that)"
    )


def time_budget(
    trials: list[FrozenTrial],
    max_minutes: float | None,
    now: datetime | None = None,
    default_steps: int = 0,
) -> TimeBudget | None:
    """The study's budget as its storage shows it now; None without ``max_minutes``.
    ``default_steps``: the experiment's ``finetune.steps``, what a fine-tuned plan without a
    budget of its own (a one-rung search's) trains for."""
    if max_minutes is None:
        return None
    now = now or datetime.now()
    overheads, per_step = _cost_model(trials)
    model = TimeBudget(
        float(max_minutes) * 60.0,
        0.0,
        statistics.median(overheads) if overheads else 0.0,
        statistics.median(per_step) if per_step else 0.0,
    )
    spent = trial_minutes(trials) * 60.0
    running = 0.0
    for t in trials:
        if t.state == TrialState.RUNNING and t.datetime_start is not None:
            elapsed = (now - t.datetime_start).total_seconds()
            running += max(elapsed, model.cost_s(_steps(t, default_steps)))
    return replace(model, committed_s=spent + running)


def trial_minutes(trials: list[FrozenTrial]) -> float:
    """The trial time a study has spent (finished trials), as ``search.max_trial_minutes``
    counts it: what ``status`` shows."""
    return sum(trial_seconds(t) for t in trials if t.state.is_finished()) / 60.0


def finetune_steps(trials: list[FrozenTrial]) -> int:
    """The fine-tuning steps a study's completed trials ran (a duplicate, whose figures were
    copied, ran none): what ``status`` shows beside the trial-minutes."""
    total = 0
    for t in trials:
        record = read_trial(t)
        if t.state == TrialState.COMPLETE and record.result and record.duplicate_of is None:
            total += record.result.finetune_steps
    return total


def waiting(trials: list[FrozenTrial]) -> tuple[int, int]:
    """(plans not sampled yet: budget slots and retries, promotions queued): the two kinds of
    WAITING trial a budget can leave, counted apart (a promotion is extra to the plan count)."""
    queued = [A.is_promotion(t) for t in trials if t.state == TrialState.WAITING]
    return len(queued) - sum(queued), sum(queued)


def trial_seconds(t: FrozenTrial) -> float:
    """How long ``t`` held a worker, from the storage's clock. A trial whose driver died (failed
    by recovery later) counts until its driver's last heartbeat, not until it was recovered."""
    if t.datetime_start is None or t.datetime_complete is None:
        return 0.0
    end = t.datetime_complete
    beat = read_trial(t).heartbeat if t.state == TrialState.FAIL else None  # only failed ones
    if beat is not None:
        end = min(end, datetime.fromtimestamp(beat) + timedelta(seconds=HEARTBEAT_S))
    return max(0.0, (end - t.datetime_start).total_seconds())


def _cost_model(trials: list[FrozenTrial]) -> tuple[list[float], list[float]]:
    """Per measured trial: seconds outside fine-tuning; per fine-tuned one: seconds per step.
    A duplicate (its figures copied from an earlier trial) trained nothing: left out."""
    overheads, per_step = [], []
    for t in trials:
        if t.state != TrialState.COMPLETE:
            continue
        record = read_trial(t)
        if record.result is None or record.duplicate_of is not None:
            continue
        tuned = record.result.finetune
        overheads.append(max(0.0, trial_seconds(t) - (tuned.seconds if tuned else 0.0)))
        if tuned is not None and tuned.steps:
            per_step.append(tuned.seconds_per_step)
    return overheads, per_step


def _steps(t: FrozenTrial, default_steps: int) -> int:
    """The fine-tuning steps ``t`` was started with (0: a post-training plan). A plan without
    its own budget trains ``default_steps``: counting it as 0 had a one-rung search expect a
    running 60-step trial to take its overhead alone (experiments/cost_model_check.py)."""
    plan = read_trial(t).plan
    if plan is None or plan.distill is None:
        return 0
    steps = plan.distill.steps
    return default_steps if steps is None else int(steps)
