"""Promoting chosen plans by hand (``autocompress refine``): the same promotions as the rungs'
(a waiting trial with the parent's parameters and a ``rung``), for plans a user names or the
best front members, to the top rung's budget or another one.

Kept apart from :mod:`_rungs` (the automatic ladder) because it is a verb's logic: it checks
what the user asked for and says why it cannot be done, one line each.
"""

from __future__ import annotations

import bisect

import optuna
from optuna.trial import TrialState

from autocompress.errors import ConfigError
from autocompress.front import build_front, rank_order
from autocompress.record import Promotion, Rung, read_trial
from autocompress.record import attrs as A
from autocompress.study._rungs import enqueue_rung, ladder, same_promotion
from autocompress.study._setup import SearchSetup


def promote_chosen(
    study: optuna.Study,
    setup: SearchSetup,
    trials: list[int] | None,
    members: int | None,
    steps: int | None,
    lr: float | None,
) -> tuple[int, list[int]]:
    """The manual verb's choice: ``trials``, or the ``members`` best plans of the front (by
    the promotion rank) not yet at ``steps`` (default: the top rung). (budget, queued)."""
    steps_ = ladder(setup)
    if steps is None and len(steps_) < 2:
        raise ConfigError(
            "this search has one rung (search.rungs unset): give the budget, e.g. --steps 1000"
        )
    budget = int(steps if steps is not None else steps_[-1])
    if trials is None:
        trials = _best_plans(study, members or 3, budget)
    return budget, enqueue_promotions(study, list(trials), budget, lr, setup)


def enqueue_promotions(
    study: optuna.Study, numbers: list[int], steps: int, lr: float | None, setup: SearchSetup
) -> list[int]:
    """Promote the plans of completed trials ``numbers`` to ``steps`` of fine-tuning, once each.

    The manual verb (``autocompress refine``): the rung is the ladder's rung of ``steps``, or
    for a budget off the ladder the rung above the highest budget under it. Returns the
    numbers newly queued; a promotion already queued, running or done with the same budget is
    skipped (one that failed is queued again), so calling this again after a crash is safe.
    """
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    for n in numbers:
        t = by_number.get(n)
        if t is None or t.state != TrialState.COMPLETE:
            raise ConfigError(
                f"trial {n} is not a completed trial of study {study.study_name!r}; "
                "choose one from `autocompress status` or the front"
            )
        record = read_trial(t)
        if record.plan is None or record.plan.distill is None:
            raise ConfigError(
                f"trial {n} is a post-training model (fp32 or int8 PTQ) with no fine-tuning to "
                "lengthen; promote a fine-tuned plan"
            )
        if record.result is not None and record.result.finetune_steps >= steps:
            raise ConfigError(
                f"trial {n} was fine-tuned for {record.result.finetune_steps} steps already; "
                f"promote it to more than that (--steps)"
            )
    queued = []
    for n in numbers:
        rung = Rung(bisect.bisect_left(ladder(setup), steps), int(steps), n, lr)
        if any(
            same_promotion(read_trial(t).rung, rung) and t.state != TrialState.FAIL for t in trials
        ):
            continue
        A.add_promotions(study, [Promotion(n, rung.level, rung.steps)])
        enqueue_rung(study, by_number[n], rung)
        queued.append(n)
    return queued


def _best_plans(study: optuna.Study, k: int, budget: int) -> list[int]:
    """The ``k`` best front members (non-dominated sort, hypervolume contribution) that a
    fine-tuning budget of ``budget`` steps would lengthen."""
    front = build_front(study)
    pool = [m for m in front.members if m.plan.distill is not None and m.steps < budget]
    order = rank_order(
        [[m.objectives[o] for o in front.objectives] for m in pool], front.directions
    )
    return [pool[i].number for i in order[:k]]
