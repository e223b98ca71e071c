"""How well does the trial-time budget predict a trial's duration? Read from stored studies.

``search.max_trial_minutes`` starts a trial only if its expected duration fits, and the
end-of-budget note estimates how many plans a ladder fully trains from the same figures
(``study/_budget.py``): the median seconds a trial spends outside fine-tuning plus the median
seconds per step times its steps. An alternative, each budget's own median trial duration (else
the nearest shorter budget's plus the steps between), was built and measured with this script
(Dec 7): no better, so the linear model stays (README, resnet18 section).

For every completed trial of each study, both models are fitted to the trials that finished
before it started (what the driver knew when it decided), and the absolute error of each
prediction against the trial's stored duration is taken; the script prints the median error
per study and fine-tuning budget. It reads journals only (no training, seconds of CPU).

Run: python experiments/cost_model_check.py runs/bench/*/study.journal
"""

from __future__ import annotations

import statistics
import sys

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from autocompress.record import read_trial
from autocompress.study._budget import time_budget, trial_seconds


def steps_of(t: FrozenTrial) -> int:
    """The fine-tuning steps the trial ran (0: none), from its result: a one-rung search's plans
    carry no budget of their own (the experiment's ``finetune.steps``)."""
    result = read_trial(t).result
    return 0 if result is None or result.finetune is None else int(result.finetune.steps)


def per_budget(before: list[FrozenTrial], steps: int, per_step_s: float) -> float | None:
    """The alternative: the median duration at ``steps``, else the nearest shorter fine-tuned
    budget's plus the steps between; None when neither is known (the linear model's case)."""
    known: dict[int, list[float]] = {}
    for o in before:
        record = read_trial(o)
        if o.state == TrialState.COMPLETE and record.result and record.duplicate_of is None:
            tuned = record.result.finetune
            known.setdefault(tuned.steps if tuned else 0, []).append(trial_seconds(o))
    if steps in known:
        return statistics.median(known[steps])
    below = [s for s in known if 0 < s < steps]
    if not below:
        return None
    return statistics.median(known[max(below)]) + (steps - max(below)) * per_step_s


def check(path: str) -> None:
    storage = JournalStorage(JournalFileBackend(path))
    name = storage.get_all_studies()[0].study_name
    trials = optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
    errors: dict[int, tuple[list[float], list[float]]] = {}
    for t in trials:
        if t.state != TrialState.COMPLETE or t.datetime_start is None:
            continue
        before = [
            o for o in trials if o.datetime_complete and o.datetime_complete <= t.datetime_start
        ]
        budget = time_budget(before, 1e6)
        if budget is None or budget.per_step_s <= 0:
            continue  # nothing fine-tuned yet: neither model knows a step's cost
        steps, actual = steps_of(t), trial_seconds(t)
        linear = budget.cost_s(steps)
        alternative = per_budget(before, steps, budget.per_step_s)
        alternative = linear if alternative is None else alternative
        pair = errors.setdefault(steps, ([], []))
        pair[0].append(abs(linear - actual) / actual)
        pair[1].append(abs(alternative - actual) / actual)
    print(path)
    for steps, (linear_err, alt_err) in sorted(errors.items()):
        print(
            f"  {steps:5d} steps, {len(linear_err):3d} trials: median |error| linear "
            f"{statistics.median(linear_err):.1%}, per-budget {statistics.median(alt_err):.1%}"
        )


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for journal in sys.argv[1:]:
        check(journal)
