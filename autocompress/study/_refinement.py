"""Refinement: front members fine-tuned again with a longer budget, as extra trials.

Searches rank plans with a short proxy budget (``finetune.steps``); the members a user would pick
deserve the long one (AMC and HAQ also fine-tune their final policy longer). A refinement
re-queues a completed trial's parameters with a ``refine`` attribute; the driver turns the
sampled plan into the same plan with the longer budget, so the worker needs nothing else.
"""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from autocompress.errors import ConfigError
from autocompress.front import build_front, refine_candidates
from autocompress.record import Refinement, read_study, read_trial
from autocompress.record import attrs as A
from autocompress.study._setup import SearchSetup


def enqueue_refinements(
    study: optuna.Study, numbers: list[int], steps: int, lr: float | None = None
) -> list[int]:
    """Queue, once each, the plans of completed trials ``numbers`` with ``steps`` of fine-tuning.

    A refinement is an ordinary trial (same plan, same measurement, its own number and
    artifacts) whose plan carries the longer budget. Returns the numbers newly queued; already
    queued or finished refinements with the same budget are skipped, so calling this again
    after a crash is safe.
    """
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    for n in numbers:
        t = trials.get(n)
        if t is None or t.state != TrialState.COMPLETE:
            raise ConfigError(
                f"trial {n} is not a completed trial of study {study.study_name!r}; "
                "choose one from `autocompress status` or the front"
            )
        plan = read_trial(t).plan
        if plan is None or plan.distill is None:
            raise ConfigError(
                f"trial {n} is a post-training model (fp32 or int8 PTQ) with no fine-tuning to "
                "lengthen; refine a fine-tuned member"
            )
    queued = []
    for n in numbers:
        want = Refinement(n, int(steps), lr)
        if any(
            read_trial(t).refine == want and t.state != TrialState.FAIL for t in trials.values()
        ):
            continue
        params = trials[n].system_attrs.get("fixed_params") or trials[n].params
        study.enqueue_trial(dict(params), user_attrs=A.slot_attrs(refine=want))
        queued.append(n)
    return queued


def refine_front(study: optuna.Study, setup: SearchSetup) -> list[int]:
    """The automatic refinement after the budget (``search.refine_members``): which members.

    The choice is stored on the study before anything is queued, so a resumed driver refines
    the same members even though refined trials have since changed the front.
    """
    k = setup.search.refine_members
    if k <= 0:
        return []
    chosen = read_study(study).refine_chosen
    if chosen is None:
        picked = refine_candidates(
            build_front(study), k, setup.accuracy_floor, setup.search.refine_slack
        )
        A.set_refine_chosen(study, picked)
        chosen = tuple(picked)
    return enqueue_refinements(
        study, list(chosen), setup.search.refine_steps, setup.search.refine_lr
    )
