"""From a benchmark's studies to plain figures: what each search offers and what it cost.

``summarise`` reads every arm's study (its front, trial records and the verification rows) and
returns plain dicts, which the sitting stores as JSON and the verdicts and the report read; the
protocol that runs the arms is ``fmnist.py``.
"""

from __future__ import annotations

import datetime
import statistics
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import TrialState

from autocompress.front import Member, PickError, normalized_hypervolume
from autocompress.record import read_trial

from _fmnist_verdicts import (
    best_sampled,
    dominates,
    latency_key,
    meets_aim,
    same_budget,
    verified_hypervolume,
    versus_int8,
)


@dataclass
class Arm:
    """One search (or the baselines study) and what it cost."""

    label: str
    sampler: str
    seed: int
    n_trials: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    result: Any = None
    verified: dict[int, Any] = field(default_factory=dict)
    latency_at: dict[int, dict[int, float]] = field(default_factory=dict)  # batch -> trial -> ms
    refine_s: float = 0.0  # wall time of the refinement trials
    refine_cpu_s: float = 0.0  # their busy CPU seconds
    reused: bool = False
    rungs: tuple[int, ...] | None = None  # a multi-fidelity search's ladder (search.rungs)
    eta: int = 3
    max_steps: int | None = None  # search.max_steps of a multi-fidelity search
    max_minutes: float | None = None  # its search.max_trial_minutes (set before it runs)

    @property
    def multi_fidelity(self) -> bool:
        return self.rungs is not None


def is_promoted(record: Any) -> bool:
    """A promoted (refined) trial: the same plan as its parent, with a longer budget."""
    return record.rung is not None and record.rung.parent is not None


def is_refinement(arm: Arm, record: Any) -> bool:
    """A promotion made after the search (``refine``); a multi-fidelity search's own
    promotions are part of the search."""
    return not arm.multi_fidelity and is_promoted(record)


def every_rung(arm: Arm) -> list[Member]:
    """Every completed trial, lower rungs of promoted plans included: the fine-tuned baselines
    at the search's budget and at the refinement budget are both held against the members."""
    front = arm.result.front
    return sorted([*front.completed, *front.lower_rungs], key=lambda m: m.number)


def shown(arm: Arm) -> list[Member]:
    """The members a search offers a user: its front, or, for a multi-fidelity search, the
    front of its fully trained members (what ``pick`` and ``export`` take by default)."""
    front = arm.result.front
    if not arm.multi_fidelity:
        return list(front.members)
    try:
        return list(front.at_top_rung().members)
    except PickError:  # no plan reached the top rung
        return []


def ladder_counts(arm: Arm) -> dict[str, Any]:
    """Distinct plans evaluated at each rung, and Kendall's tau between consecutive rungs."""
    front = arm.result.front
    levels = [0] * len(arm.rungs or (0,))
    for m in front.completed:  # each plan once, at its highest rung: it passed every lower one
        if not m.baseline or m.plan.distill is not None:
            for level in range(m.rung + 1):
                levels[level] += 1
    ladder = list(arm.rungs or (0,))
    spent = sum(n * steps for n, steps in zip(levels, ladder, strict=True))
    # continuing a promoted plan from its parent's weights would save the parent's steps
    saved = sum(levels[k] * ladder[k - 1] for k in range(1, len(ladder)))
    return {
        "plans_per_rung": levels,
        "rank_fidelity": [f.to_dict() for f in front.fidelity],
        "finetune_steps": spent,
        "steps_continuation_saves": saved,
    }


def equal_cpu(arm: Arm, arms: list[Arm]) -> dict[str, Any]:
    """``arm`` (multi-fidelity) stopped at the CPU its seed's default search + refinement used."""
    base = next(
        (
            a
            for a in arms[1:]
            if a.seed == arm.seed and a.sampler == arm.sampler and not a.multi_fidelity
        ),
        None,
    )
    int8 = next((m for m in arm.result.front.completed if m.baseline == "int8"), None)
    if base is None or int8 is None or not base.cpu_s:
        return {}
    return {"at_default_cpu": at_cpu(arm, base.cpu_s + base.refine_cpu_s, int8)}


Span = tuple[datetime.datetime, datetime.datetime]


def busy_cutoff(spans: list[Span], share: float) -> datetime.datetime:
    """The moment ``share`` of the study's busy time (when any trial ran) had passed.

    Busy time, not the wall clock from the first trial: a study resumed in a later sitting
    (a larger time cap) has an idle gap of hours between its sittings, which a wall-clock cut
    would count as search time."""
    merged: list[list[datetime.datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    left = share * sum((end - start).total_seconds() for start, end in merged)
    for start, end in merged:
        if left <= (end - start).total_seconds():
            return start + datetime.timedelta(seconds=left)
        left -= (end - start).total_seconds()
    return merged[-1][1]


def at_cpu(arm: Arm, budget_s: float, int8: Member) -> dict[str, Any]:
    """The multi-fidelity search as it stood when it had spent ``budget_s`` CPU seconds (the
    machine ran nothing else, so its CPU grew with its busy time): its fully trained members then,
    their hypervolume (validation figures, reference point (1, 1, 1)) and the fastest plan the
    sampler chose within 0.5 pt of fp32 validation accuracy, against int8 PTQ's search figures.
    An anytime view: the same search, stopped at the default search's cost."""
    front = arm.result.front
    trials = arm.result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    share = min(1.0, budget_s / arm.cpu_s) if arm.cpu_s else 1.0
    cutoff = busy_cutoff([(t.datetime_start, t.datetime_complete) for t in trials], share)
    done = {t.number for t in trials if t.datetime_complete <= cutoff}
    # fully trained by then: at the top rung (its plan's highest) or post-training
    final = [m for m in every_rung(arm) if m.number in done and m.feasible and m.final]
    hv = normalized_hypervolume(final, front.objectives, front.reference, [1.0] * 3)
    fp32 = float(front.reference.get("val_accuracy", 0.0))
    band = [m for m in final if m.result.accuracy >= fp32 - 0.005 and origin(arm, m) == "sampler"]
    best = min(band, key=lambda m: m.result.latency_ms, default=None)
    return {
        "cpu_s": budget_s,
        "share_of_run": share,
        "fully_trained": sum(m.plan.distill is not None for m in final),
        "hypervolume_val": hv,
        "sampled_within_0.5pt_val": None
        if best is None
        else {
            "trial": best.number,
            "val_accuracy": best.result.accuracy,
            "speedup_vs_int8": int8.result.latency_ms / best.result.latency_ms,
            "smaller_vs_int8": int8.result.size_bytes / best.result.size_bytes,
            "plan": best.plan.summary(),
        },
    }


def search_hypervolume(arm: Arm) -> float:
    """Hypervolume of the search's own trials (refinements excluded), fixed point (1, 1, 1)."""
    front = arm.result.front
    own = [
        m
        for m in front.completed
        if m.parent is None and m.feasible and m.fingerprint_key == front.fingerprint_key
    ]
    return normalized_hypervolume(own, front.objectives, front.reference, [1.0, 1.0, 1.0])


def hypervolume_at(arm: Arm, k: int) -> float:
    """Hypervolume of the search's first ``k`` own trials: random search at 2n, judged at n too,
    tells a better sampler from a larger budget."""
    front = arm.result.front
    own = sorted(
        (
            m
            for m in front.completed
            if m.parent is None and m.fingerprint_key == front.fingerprint_key
        ),
        key=lambda m: m.number,
    )[:k]
    feasible = [m for m in own if m.feasible]
    return normalized_hypervolume(feasible, front.objectives, front.reference, [1.0, 1.0, 1.0])


def warm_start_hypervolume(arm: Arm) -> float:
    """Hypervolume of the baselines and warm-start trials alone: what the search had before its
    sampler chose anything (random search, which has no warm start, keeps its baselines)."""
    front = arm.result.front
    given = [
        m
        for m in front.completed
        if (m.baseline or m.warm_start)
        and m.feasible
        and m.fingerprint_key == front.fingerprint_key
    ]
    return normalized_hypervolume(given, front.objectives, front.reference, [1.0, 1.0, 1.0])


def origin(arm: Arm, m: Member) -> str:
    """Who chose ``m``'s plan: "baseline", "warm start" (a hand-made plan enqueued before the
    sampler's) or "sampler"; a promoted (refined) member takes the origin of the trial its
    plan entered the study as, down the ladder."""
    trials = arm.result.study.get_trials(deepcopy=False)  # in number order
    record = read_trial(trials[m.number])
    while record.rung is not None and record.rung.parent is not None:
        record = read_trial(trials[record.rung.parent])
    if record.baseline:
        return "baseline"
    return "warm start" if record.warm_start else "sampler"


def point(arm: Arm, m: Member) -> dict[str, Any]:
    v = arm.verified[m.number]
    distill = m.plan.distill
    return {
        "arm": arm.label,
        "trial": m.number,
        "baseline": m.baseline,
        "refines": m.parent,
        "rung": m.rung,
        "warm_start": m.warm_start,
        "origin": origin(arm, m),
        "finetuned": distill is not None,
        "steps": None if distill is None else distill.steps,  # None: the search's budget
        "val_accuracy": m.result.accuracy,
        "test_accuracy": v.test_accuracy,
        "search_latency_ms": m.result.latency_ms,
        "latency_ms": v.verified_latency_ms,
        "latency_ratio": v.verified_ratio,  # to fp32 timed beside it (nan: no reference)
        "retimes": v.retimes,  # extra sittings: its fp32 ran off the others' (deploy/_verify.py)
        "disturbed": v.disturbed,  # still off after them: its ratio is the least trustworthy
        **{f"latency_b{b}_ms": at[m.number] for b, at in arm.latency_at.items()},
        "size_bytes": m.result.size_bytes,
        "plan": m.plan.summary(),
    }


def trial_wall_median(arm: Arm) -> float:
    trials = arm.result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    records = [(t, read_trial(t)) for t in trials]
    ran = [t for t, r in records if r.duplicate_of is None and not is_promoted(r)]
    return statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in ran)


def summarise(arms: list[Arm], reference_test: float) -> dict[str, Any]:
    base_arm = arms[0]
    completed = every_rung(base_arm)
    baselines = {
        m.baseline: point(base_arm, m) for m in completed if m.baseline and m.parent is None
    }
    by_number = {m.number: m for m in completed}
    for m in completed:
        if m.parent is not None:  # a fine-tuned baseline with the refinement budget
            kind = by_number[m.parent].baseline
            baselines[f"{kind} {m.steps} steps"] = point(base_arm, m)
    int8 = baselines["int8"]
    n = min(arm.n_trials for arm in arms[1:])  # the default search's budget
    searches = []
    for arm in arms[1:]:
        front = [point(arm, m) for m in shown(arm)]
        floor = baselines["fp32"]["test_accuracy"] - 0.005
        close = [p for p in front if p["test_accuracy"] >= floor and p["baseline"] != "fp32"]
        best = min(close, key=latency_key, default=None)
        smallest = min(close, key=lambda p: p["size_bytes"], default=None)
        aim = [p for p in close if meets_aim(int8, p)]
        fastest_aim = min(aim, key=latency_key, default=None)
        sampled = [p for p in aim if p.get("origin") == "sampler"]
        sampled_aim = min(sampled, key=latency_key, default=None)
        found = [p for p in front if not p["baseline"]]  # the search's own finds (and refined)
        pairs = [(k, b, p) for k, b in baselines.items() for p in found if dominates(b, p)]
        dominated = [(k, p["trial"]) for k, b, p in pairs if same_budget(b, p)]
        across = [(k, p["trial"]) for k, b, p in pairs if not same_budget(b, p)]
        searches.append(
            {
                "arm": arm.label,
                "sampler": arm.sampler,
                "seed": arm.seed,
                "n_trials": arm.n_trials,
                "hypervolume": search_hypervolume(arm),
                "hypervolume_at_n": hypervolume_at(arm, n),
                "hypervolume_warm_starts": warm_start_hypervolume(arm),
                "warm_starts": [p["trial"] for p in front if p.get("warm_start")],
                "hypervolume_refined": normalized_hypervolume(
                    shown(arm), arm.result.front.objectives, arm.result.front.reference, [1.0] * 3
                ),
                "hypervolume_verified": verified_hypervolume(front, baselines["fp32"]),
                "mf_sampled": best_sampled(int8, close),
                "rungs": None if arm.rungs is None else list(arm.rungs),
                "eta": arm.eta if arm.multi_fidelity else None,
                **(ladder_counts(arm) if arm.multi_fidelity else {}),
                **(equal_cpu(arm, arms) if arm.multi_fidelity else {}),
                "front_size": len(front),
                "refined": [p["trial"] for p in front if p["refines"] is not None],
                "wall_s": arm.wall_s,
                "cpu_s": arm.cpu_s,
                "refine_s": arm.refine_s,
                "refine_cpu_s": arm.refine_cpu_s,
                "trial_wall_median_s": trial_wall_median(arm),
                "within_0.5pt": versus_int8(int8, best),
                "smallest_within_0.5pt": versus_int8(int8, smallest),
                "meets_aim": versus_int8(int8, fastest_aim),
                "meets_aim_sampled": versus_int8(int8, sampled_aim),
                "dominated_by_baseline": dominated,
                "dominated_across_budgets": across,
                "front": front,
            }
        )
    hv = {
        s: statistics.median(x["hypervolume"] for x in searches if x["sampler"] == s)
        for s in {x["sampler"] for x in searches}
    }
    hv_n = {
        s: statistics.median(x["hypervolume_at_n"] for x in searches if x["sampler"] == s)
        for s in {x["sampler"] for x in searches}
    }
    return {
        "n": n,
        "median_hypervolume_at_n": hv_n,
        "reference_test_accuracy": reference_test,
        "baselines": baselines,
        "baselines_wall_s": base_arm.wall_s,
        "baselines_cpu_s": base_arm.cpu_s,
        "searches": searches,
        "median_hypervolume": hv,
    }
