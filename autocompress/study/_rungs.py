"""The rungs of a multi-fidelity search: budgets, promotions, and claiming a promoted trial.

Every plan the sampler proposes enters at the lowest rung (``search.rungs[0]`` fine-tuning
steps; 0: pruned, BN recalibrated, snapped, realized and measured, no fine-tuning). Each rung
evaluation is a trial of the same study with the same parameters: the driver turns the sampled
plan into the same plan with the rung's budget (``DistillPlan.steps``), so the worker needs
nothing else. Which plans go up is :func:`autocompress.front.select_promotions` (no Optuna);
this module reads the study for it, stores each decision, then enqueues the promoted trial
(a waiting trial with a ``rung`` attribute naming its parent). A driver killed in between
enqueues the stored decisions it finds without a trial; a decision is never made twice.

Optuna pops waiting trials in number order, and the budget slots were enqueued when the study
was made, so a promotion queued behind them would wait for the whole sampling budget. The
driver therefore claims waiting promotions itself (:func:`claim_promotion`: the same two storage
calls ``Study.ask`` makes, for a chosen trial), highest rung first, before asking for a slot.
Promoting chosen plans by hand (``autocompress refine``) is :mod:`_refine`, through the same
stored decisions and trials.

What the sampler learns from: each trial is told its own values, rung-0 entries and promoted
trials alike. A promoted trial repeats its parent's parameters with better (longer-budget)
figures, so TPE's "good" split leans to the plans the ladder already judged best: more weight
where a longer budget confirmed a plan, at the price of mixing fidelities in one model.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from autocompress import _faults as faults
from autocompress.front import (
    DIRECTIONS,
    Evaluation,
    plan_key,
    select_promotions,
)
from autocompress.plan import CompressionPlan
from autocompress.record import Promotion, Rung, StudyRecord, read_study, read_trial
from autocompress.record import attrs as A
from autocompress.study._budget import TimeBudget
from autocompress.study._setup import SearchSetup


def ladder(setup: SearchSetup) -> list[int]:
    """The rungs' step budgets (one rung of ``finetune.steps`` without ``search.rungs``)."""
    return setup.search.ladder(setup.task.finetune.steps)


def entry_rung(setup: SearchSetup) -> Rung | None:
    """The rung every plan enters at; None without ``search.rungs`` (today's single budget)."""
    return None if setup.search.rungs is None else Rung(0, ladder(setup)[0])


def budgeted(plan: CompressionPlan, rung: Rung | None) -> CompressionPlan:
    """``plan`` with the budget of ``rung``; post-training plans have none to set."""
    if rung is None or plan.distill is None:
        return plan
    return plan.with_budget(rung.steps, rung.lr)


def promote(
    study: optuna.Study, setup: SearchSetup, budget: TimeBudget | None = None
) -> list[int]:
    """Decide the promotions due now, store them, enqueue them; the parents' numbers.

    Decisions stored earlier but not enqueued (a driver killed in between) are enqueued first.
    A promotion is decided only within ``search.max_steps`` and the trial-time ``budget``.
    """
    steps = ladder(setup)
    if len(steps) < 2:
        return []
    trials = study.get_trials(deepcopy=False)
    info = read_study(study)
    pending = _pending(trials, info)
    new = _due(trials, info, setup.search.eta, steps)
    new = within_budget(new, steps_spent(trials, pending, steps[0]), setup.search.max_steps)
    new = within_time(new, budget)
    if new:
        A.add_promotions(study, new)  # the decision first: a resumed driver never re-decides
        faults.point("driver.promotion_decided")
    by_number = {t.number: t for t in trials}
    for p in [*pending, *new]:
        enqueue_rung(study, by_number[p.parent], Rung(p.level, p.steps, p.parent))
    return [p.parent for p in [*pending, *new]]


def fully_trained(trials: list[FrozenTrial], top: int) -> int:
    """Plans with a completed trial at rung ``top`` (each promotion's parent is one plan)."""
    parents = set()
    for t in trials:
        rung = read_trial(t).rung
        if t.state == TrialState.COMPLETE and rung is not None and rung.level == top:
            parents.add(rung.parent if rung.parent is not None else t.number)
    return len(parents)


def steps_left(study: optuna.Study, setup: SearchSetup) -> str | None:
    """Why a ladder's search ended with promotions it chose not run: ``search.max_steps`` was
    spent (one line; a run with a larger value goes on). None without a cap or a ladder, or
    when nothing the ladder chose was held back by it."""
    steps = ladder(setup)
    cap = setup.search.max_steps
    if cap is None or len(steps) < 2:
        return None
    trials = study.get_trials(deepcopy=False)
    info = read_study(study)
    pending = _pending(trials, info)
    spent = steps_spent(trials, pending, steps[0])
    due = _due(trials, info, setup.search.eta, steps)
    held = len(due) - len(within_budget(due, spent, cap))
    if not held:
        return None
    return (
        f"fine-tuning step budget spent: {spent} of search.max_steps={cap} steps; {held} "
        f"promotion(s) the ladder chose were not run (this search fully trained "
        f"{fully_trained(trials, len(steps) - 1)} plan(s)); raise search.max_steps and run the "
        "same command again to go on"
    )


def _due(
    trials: list[FrozenTrial], info: StudyRecord, eta: int, steps: list[int]
) -> list[Promotion]:
    """The promotions the ladder's rule chooses now, before any budget (highest rung first)."""
    evaluations, final = _evaluations(trials, info.promotions, len(steps) - 1)
    objectives = list(info.objectives)
    fp32 = info.reference.get("val_accuracy")
    chosen = select_promotions(
        evaluations,
        levels=len(steps),
        eta=eta,
        directions=[DIRECTIONS[o] for o in objectives],
        final=final,
        best_case=None
        if fp32 is None or "accuracy" not in objectives
        else (objectives.index("accuracy"), float(fp32)),
    )
    return [Promotion(e.number, e.level + 1, steps[e.level + 1]) for e in chosen]


def steps_spent(trials: list[FrozenTrial], pending: Sequence[Promotion], entry: int) -> int:
    """Fine-tuning steps the study has spent or committed: every trial's budget (its rung's
    steps; ``entry`` for a budget slot not started yet) but failed ones and duplicates (a
    copied result trains nothing), plus decided promotions not enqueued yet. Read from the
    storage, so exact across resume."""
    spent = sum(p.steps for p in pending)
    for t in trials:
        if t.state == TrialState.FAIL:
            continue
        record = read_trial(t)
        if record.rung is None:
            spent += entry if t.state == TrialState.WAITING else 0
        elif record.duplicate_of is None:
            spent += record.rung.steps
    return spent


def within_budget(
    promotions: list[Promotion], spent: int, max_steps: int | None
) -> list[Promotion]:
    """The promotions, in order (highest rung first, best first), that fit in ``max_steps``
    after ``spent``; a promotion that does not fit is skipped, a cheaper one after it may fit."""
    if max_steps is None:
        return promotions
    kept = []
    for p in promotions:
        if spent + p.steps <= max_steps:
            kept.append(p)
            spent += p.steps
    return kept


def within_time(promotions: list[Promotion], budget: TimeBudget | None) -> list[Promotion]:
    """The promotions, in order, whose expected durations fit in ``budget`` one after another;
    one that does not fit is skipped, a shorter one after it may fit."""
    if budget is None:
        return promotions
    kept = []
    for p in promotions:
        if budget.fits(p.steps):
            kept.append(p)
            budget = budget.after(p.steps)
    return kept


def claim_promotion(study: optuna.Study, budget: TimeBudget | None = None) -> Trial | None:
    """Run a waiting promotion next (highest rung first) that fits in the trial-time
    ``budget``, or None when none is waiting (or none fits).

    ``Study.ask`` pops the lowest-numbered waiting trial; this does what it does for a chosen
    one: set it RUNNING in the storage (atomic: False when another driver took it first).

    Two drivers deciding at the same moment can both store and enqueue the same promotion
    (the decision is read, then written: no storage offers a compare-and-set on a study
    attribute). The lowest-numbered of such twins is the promotion; a driver that claims a
    higher one closes it as a duplicate, so the plan is trained once at that budget.
    """
    trials = study.get_trials(deepcopy=False)
    waiting = [t for t in trials if t.state == TrialState.WAITING and A.is_promotion(t)]
    if budget is not None:
        waiting = [t for t in waiting if budget.fits(_rung(t).steps)]
    waiting.sort(key=lambda t: (-_level(read_trial(t).rung), t.number))
    storage = study._storage  # Optuna has no public pop-by-id
    for t in waiting:
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        study._thread_local.cached_all_trials = None  # as ask() does
        trial = Trial(study, t._trial_id)
        twin = _earlier_twin(trials, t)
        if twin is None:
            return trial
        A.set_failure(trial, f"duplicate promotion: trial {twin} is the same plan and budget")
        study.tell(trial, state=TrialState.FAIL)
    return None


def _earlier_twin(trials: list[FrozenTrial], t: FrozenTrial) -> int | None:
    """A lower-numbered trial with ``t``'s promotion (same parent and budget) not failed."""
    rung = read_trial(t).rung
    if rung is None:
        return None
    for other in trials:
        if other.number >= t.number:
            break
        if other.state != TrialState.FAIL and same_promotion(read_trial(other).rung, rung):
            return other.number
    return None


def rung_floor(study: optuna.Study, setup: SearchSetup, rung: Rung | None) -> float | None:
    """The validation accuracy a trial at ``rung`` is held to (its floor constraint).

    At the top rung (and without rungs) it is the search's accuracy floor. Below it, a short
    budget underestimates a plan by up to the gain a longer one brings, so the floor is lowered
    by the largest gain the study has measured from this rung to the top, plan by plan: a plan
    is marked infeasible only if even that gain could not lift it (the samplers read the
    constraint, and a floor applied to rung-0 accuracy would steer them away from every pruned
    plan). Until some plan has reached the top from this rung, no floor is known: 0.
    """
    floor = setup.accuracy_floor
    top = len(ladder(setup)) - 1
    if floor is None or rung is None or rung.level >= top:
        return floor
    accuracy: dict[tuple[str, int], float] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        record = read_trial(t)
        if record.plan is not None and record.result is not None:
            key = (plan_key(record.plan), _level(record.rung))
            accuracy[key] = max(accuracy.get(key, 0.0), record.result.accuracy)
    gains = [
        accuracy[(plan, top)] - acc
        for (plan, level), acc in accuracy.items()
        if level == rung.level and (plan, top) in accuracy
    ]
    return lowered_floor(floor, gains)


def lowered_floor(floor: float, gains: list[float]) -> float:
    """``floor`` lowered by the largest measured gain; 0 (no floor) when none is measured yet.
    A longer budget can also score lower (noise): the result is never above ``floor``."""
    return max(0.0, floor - max(0.0, *gains)) if gains else 0.0


def _evaluations(
    trials: list[FrozenTrial], decided: tuple[Promotion, ...], top: int
) -> tuple[list[Evaluation], list[list[float]]]:
    """One evaluation per plan and rung (completed), and the final front's candidates."""
    done = {(p.parent, p.level) for p in decided}
    rungs = [read_trial(t).rung for t in trials]
    done |= {(r.parent, r.level) for r in rungs if r is not None and r.parent is not None}
    groups: dict[tuple[str, int], list[FrozenTrial]] = {}
    final = []
    for t in trials:
        record = read_trial(t)
        if t.state != TrialState.COMPLETE or record.plan is None or t.values is None:
            continue
        level = _level(record.rung)
        groups.setdefault((plan_key(record.plan), level), []).append(t)
        feasible = all(v <= 0.0 for v in t.constraints.values()) if t.constraints else True
        if feasible and (level >= top or record.plan.distill is None):
            final.append(list(t.values))
    evaluations = []
    for (_, level), group in groups.items():
        first = min(group, key=lambda t: t.number)
        plan = read_trial(first).plan
        evaluations.append(
            Evaluation(
                number=first.number,
                level=level,
                values=tuple(first.values),
                promotable=plan is not None and plan.distill is not None and not plan.is_fp32,
                promoted=any((t.number, level + 1) in done for t in group),
            )
        )
    return sorted(evaluations, key=lambda e: e.number), final


def enqueue_rung(study: optuna.Study, parent: FrozenTrial, rung: Rung) -> None:
    """The parent's parameters again, with the rung (and its baseline kind: the plain
    baselines' plan is made from the sampled one by their kind)."""
    params = parent.system_attrs.get("fixed_params") or parent.params
    baseline = read_trial(parent).baseline
    study.enqueue_trial(dict(params), user_attrs=A.slot_attrs(baseline=baseline, rung=rung))
    faults.point("driver.promoted")


def _pending(trials: list[FrozenTrial], info: StudyRecord) -> list[Promotion]:
    """Promotions decided (stored) whose trial was not enqueued yet: a driver died between."""
    return [p for p in info.promotions if not _has_trial(trials, p)]


def _has_trial(trials: list[FrozenTrial], p: Promotion) -> bool:
    return any(
        same_promotion(read_trial(t).rung, Rung(p.level, p.steps, p.parent)) for t in trials
    )


def same_promotion(a: Rung | None, b: Rung) -> bool:
    """The same promotion: the same parent to the same budget."""
    return a is not None and a.parent == b.parent and a.steps == b.steps


def _rung(t: FrozenTrial) -> Rung:
    rung = read_trial(t).rung
    assert rung is not None  # a promotion always carries its rung
    return rung


def _level(rung: Rung | None) -> int:
    return 0 if rung is None else rung.level
