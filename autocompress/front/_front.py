"""The Pareto front of a study as plain data: members, knee, hypervolume, table.

A member is a COMPLETE, feasible (all constraints <= 0), non-dominated trial measured with the
study's device fingerprint (figures from another machine or runtime are reported, never mixed in).
In a multi-fidelity search each plan counts once, at its highest rung: its trials at lower
budgets are the ranking that promoted it, not points of the front.
Hypervolume is computed in a normalised space so that it means the same across searches of one
model: error rate (1 - accuracy), latency as a fraction of the fp32 reference's, size as a fraction
of the fp32 model's; the reference point is (1, 1, 1) in that space unless one is given.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from autocompress import _files
from autocompress.front._html import front_html
from autocompress.front._pareto import hypervolume, knee_index, non_dominated
from autocompress.front._pick import PickError, describe, pick
from autocompress.front._promote import RankFidelity, plan_key, rank_fidelity
from autocompress.plan import CompressionPlan
from autocompress.record import (
    StudyRecord,
    TrialResult,
    objective_values,
    read_study,
    read_trial,
)

DIRECTIONS: dict[str, Literal["maximize", "minimize"]] = {
    "accuracy": "maximize",
    "latency": "minimize",
    "size": "minimize",
}
UNITS = {"accuracy": "fraction", "latency": "ms", "size": "bytes"}


@dataclass(frozen=True)
class Member:
    """One trial on the front (or any completed trial, for tables).

    Read the figures by their named properties: ``accuracy`` (fraction, 0-1), ``latency_ms``
    (milliseconds), ``latency_ratio`` (this latency / the fp32 reference's, timed in the same
    sitting: 0.35 is 2.9x faster), ``size_bytes`` (packed weights). ``objectives`` holds the
    values told to Optuna, in the study's own units (latency as the ratio by default).
    """

    number: int
    objectives: dict[str, float]  # accuracy (0-1), latency (study's unit: ratio or ms), size
    plan: CompressionPlan
    result: TrialResult
    baseline: str | None = None
    artifact_dir: str | None = None
    feasible: bool = True
    parent: int | None = None  # the trial this one was promoted from (the same plan)
    warm_start: str | None = None  # "uniform" / "sensitivity": enqueued before the sampler's
    rung: int = 0  # its rung in the ladder (0: where every plan enters)
    final: bool = True  # at the top rung, or post-training (no budget changes its figures)

    @property
    def steps(self) -> int:
        """The fine-tuning budget its figures were measured at (0: none)."""
        return self.result.finetune_steps

    @property
    def fingerprint_key(self) -> str | None:
        return self.result.fingerprint_key

    @property
    def accuracy(self) -> float:
        """Validation top-1 accuracy of the deployable, a fraction (0.91 is 91%)."""
        return self.result.accuracy

    @property
    def latency_ms(self) -> float:
        """Median latency of the deployable on the target, in milliseconds."""
        return self.result.latency_ms

    @property
    def latency_ratio(self) -> float | None:
        """Latency / the fp32 reference's, timed beside it (None when it was not timed)."""
        return self.result.latency_ratio

    @property
    def size_bytes(self) -> int:
        """The size objective: packed k-bit weights + scales + fp32 rest, in bytes."""
        return self.result.size_bytes

    def __repr__(self) -> str:
        return f"Member({describe(self)})"

    def row(self) -> dict[str, Any]:
        r = self.result
        return {
            "trial": self.number,
            "baseline": self.baseline or "",
            "parent": self.parent,
            "rung": self.rung,
            "steps": self.steps,
            "accuracy": r.accuracy,
            "latency_ms": r.latency_ms,
            "latency_ratio": r.latency_ratio,
            "size_bytes": r.size_bytes,
            "deploy_bytes": r.deploy_bytes,
            "params": r.params,
            "plan": self.plan.summary(),
            "artifact_dir": self.artifact_dir,
        }


@dataclass(frozen=True)
class Front:
    """Members of the front plus everything needed to judge it."""

    objectives: list[str]
    members: list[Member]
    completed: list[Member]
    reference: dict[str, float] = field(default_factory=dict)  # fp32 latency_ms, size_bytes
    excluded_fingerprints: dict[str, int] = field(default_factory=dict)
    accuracy_floor: float | None = None  # fraction; members below it are infeasible
    rungs: tuple[int, ...] | None = None  # the ladder's budgets (steps); None: one rung
    fidelity: list[RankFidelity] = field(default_factory=list)  # consecutive rungs' Kendall tau
    # the lower-rung trials of promoted plans (``completed`` shows each plan at its highest):
    # still pickable by number, e.g. to compare a plan's budgets
    lower_rungs: list[Member] = field(default_factory=list)

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[o] for o in self.objectives]

    @property
    def knee(self) -> Member | None:
        i = knee_index(
            [[m.objectives[o] for o in self.objectives] for m in self.members], self.directions
        )
        return None if i is None else self.members[i]

    def hypervolume(self, reference_point: Sequence[float] | None = None) -> float:
        return normalized_hypervolume(
            self.members, self.objectives, self.reference, reference_point
        )

    def pick(
        self,
        *,
        number: int | None = None,
        max_latency_ms: float | None = None,
        min_accuracy: float | None = None,
        max_size_bytes: float | None = None,
        prefer: str = "accuracy",
        any_rung: bool = False,
    ) -> Member:
        """One member by budget and preference; see :func:`autocompress.front.pick`.

        In a multi-fidelity search only members at the top rung (or post-training ones) are
        picked unless ``any_rung``: a lower rung's figures are a short budget's. A ``number``
        names any completed trial.

        ``min_accuracy`` as the CLI takes it: a fraction (0.89) or percent (89); values above 1
        are percent, so 1 means 100%. ``prefer``: "accuracy", "latency", "size" or "knee".

        ``front.pick(max_latency_ms=0.3, min_accuracy=89, prefer="size")``,
        ``front.pick(number=7)``, ``front.pick(prefer="knee")``
        """
        return pick(
            self if any_rung or number is not None else self.at_top_rung(),
            number=number,
            max_latency_ms=max_latency_ms,
            min_accuracy=min_accuracy,
            max_size_bytes=max_size_bytes,
            prefer=prefer,
        )

    def at_top_rung(self) -> Front:
        """The front of the members at the top rung only (see :attr:`Member.final`).

        Sorted again among the final trials, not filtered from :attr:`members`: a plan's short
        budget figures can dominate a fully trained member (a 60-step score above a 1000-step
        one), which would otherwise vanish from what ``pick`` and ``export`` see.
        """
        key = self.fingerprint_key
        final = _non_dominated(
            [
                m
                for m in self.completed
                if m.final and m.feasible and (key is None or m.fingerprint_key == key)
            ],
            self.objectives,
        )
        top = self.rungs[-1] if self.rungs else "?"
        if self.members and not final:
            raise PickError(
                f"no front member was fine-tuned at the top rung ({top} steps) yet; pick by trial "
                "number or with any_rung (--any-rung), or promote "
                "members with `autocompress refine`"
            )
        return dataclasses.replace(self, members=final)

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:  # one line: the members and figures live in the table
        return (
            f"Front({len(self.members)} members of {len(self.completed)} completed trials, "
            f"hypervolume {self.hypervolume():.4f}, objectives {'/'.join(self.objectives)})"
        )

    def _repr_html_(self) -> str:
        return front_html(self)

    def to_pandas(self) -> Any:
        """The members as a DataFrame, one row each (``Member.row()``), best accuracy first."""
        import pandas as pd

        knee = self.knee
        rows = [{**m.row(), "knee": m is knee} for m in self.members]
        return pd.DataFrame(rows, columns=None if rows else ["trial"])

    def hypervolume_history(self) -> list[tuple[int, float]]:
        """(trial number, hypervolume of the front of the trials completed up to it), per trial.

        Trials are taken in the order they were asked (their numbers), feasible ones of the
        front's device only, so the curve shows how the search improved its front over time.
        """
        history, seen = [], []
        for m in sorted(self.completed, key=lambda m: m.number):
            if m.feasible and (not self.members or m.fingerprint_key == self.fingerprint_key):
                seen.append(m)
            history.append(
                (m.number, normalized_hypervolume(seen, self.objectives, self.reference))
            )
        return history

    @property
    def fingerprint_key(self) -> str | None:
        return self.members[0].fingerprint_key if self.members else None

    def to_dict(self) -> dict[str, Any]:
        knee = self.knee
        return {
            "objectives": self.objectives,
            "reference": self.reference,
            "hypervolume": self.hypervolume(),
            "knee": None if knee is None else knee.number,
            "accuracy_floor": self.accuracy_floor,
            "rungs": None if self.rungs is None else list(self.rungs),
            "rank_fidelity": [f.to_dict() for f in self.fidelity],
            "members": [
                {
                    **m.row(),
                    "objectives": m.objectives,
                    "plan_dict": m.plan.to_dict(),
                    "fingerprint": dict(m.result.fingerprint),
                }
                for m in self.members
            ],
            "excluded_fingerprints": self.excluded_fingerprints,
        }

    def write_json(self, path: Path) -> None:
        _files.write_text(path, json.dumps(self.to_dict(), indent=2, sort_keys=True))


def members_of(study: optuna.Study, *, all_rungs: bool = False) -> list[Member]:
    """The COMPLETE trials of an autocompress study as Members, each plan at its highest rung.

    A plan promoted to a rung is shown by its trials there; its lower-rung trials are left out
    (``all_rungs`` keeps them). Trials of one plan at one rung (duplicates) are all kept.
    """
    info = read_study(study)
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        member = _member(t, info)
        if member is not None:
            out.append(member)
    return out if all_rungs else _highest_rung(out)


def _highest_rung(members: list[Member]) -> list[Member]:
    """Each plan's members at its highest rung only."""
    highest: dict[str, int] = {}
    for m in members:
        key = plan_key(m.plan)
        highest[key] = max(highest.get(key, 0), m.rung)
    return [m for m in members if m.rung == highest[plan_key(m.plan)]]


def build_front(study: optuna.Study, fingerprint_key: str | None = None) -> Front:
    """The feasible non-dominated set of ``study``, restricted to one device fingerprint."""
    info = read_study(study)
    objectives = list(info.objectives)
    every = members_of(study, all_rungs=True)
    completed = _highest_rung(every)
    shown = {m.number for m in completed}
    key = fingerprint_key or info.fingerprint_key
    if key is None and completed:
        key = completed[0].fingerprint_key
    same = [m for m in completed if key is None or m.fingerprint_key == key]
    excluded: dict[str, int] = {}
    for m in completed:
        if m not in same:
            excluded[str(m.fingerprint_key)] = excluded.get(str(m.fingerprint_key), 0) + 1
    return Front(
        objectives,
        _non_dominated([m for m in same if m.feasible], objectives),
        completed,
        dict(info.reference),
        excluded,
        accuracy_floor=info.accuracy_floor,
        rungs=info.rungs,
        fidelity=rank_fidelity([(plan_key(m.plan), m.rung, m.steps, m.accuracy) for m in every]),
        lower_rungs=[m for m in every if m.number not in shown],
    )


def _non_dominated(feasible: Sequence[Member], objectives: Sequence[str]) -> list[Member]:
    """The members no other one dominates, most accurate first."""
    if not feasible:
        return []
    idx = non_dominated(
        [[m.objectives[o] for o in objectives] for m in feasible],
        [DIRECTIONS[o] for o in objectives],
    )
    return sorted((feasible[i] for i in idx), key=lambda m: -m.objectives.get("accuracy", 0))


def normalized_hypervolume(
    members: Sequence[Member],
    objectives: Sequence[str],
    reference: dict[str, float],
    reference_point: Sequence[float] | None = None,
) -> float:
    """Hypervolume in (error, latency / fp32 latency, size / fp32 size) space."""
    if not members:
        return 0.0
    rows = []
    for m in members:
        row = []
        for o in objectives:
            row.append(_normalized(o, m, reference))
        rows.append(row)
    ref = list(reference_point) if reference_point is not None else [1.0] * len(objectives)
    return hypervolume(np.asarray(rows), ref)


def _normalized(objective: str, m: Member, reference: dict[str, float]) -> float:
    r = m.result
    if objective == "accuracy":
        return 1.0 - r.accuracy
    if objective == "latency":
        if r.latency_ratio is not None:
            return r.latency_ratio
        return r.latency_ms / reference.get("latency_ms", r.latency_ms)
    return r.size_bytes / float(reference.get("size_bytes") or r.size_bytes)


def _member(t: FrozenTrial, info: StudyRecord) -> Member | None:
    """The trial as a member; None for a COMPLETE trial without an autocompress result.

    A trial timed again after the search (``info.retimes``, kept: steadier than its own
    sitting) shows that sitting's latency, in its figures and its objective.
    """
    record = read_trial(t)
    if record.result is None:
        return None
    objectives = info.objectives
    values = t.values or []
    result = record.result
    retime = info.retimes.get(t.number)
    if retime is not None and retime.kept and len(values) == len(objectives):
        result = retime.applied(result)
        values = objective_values(result, objectives, info.latency_unit)
    top = None if info.rungs is None else len(info.rungs) - 1  # None: one rung, all final
    rung = 0 if record.rung is None else record.rung.level
    post_training = record.plan is None or record.plan.distill is None
    return Member(
        number=t.number,
        objectives={o: float(v) for o, v in zip(objectives, values, strict=False)},
        plan=record.plan or CompressionPlan({}),
        result=result,
        baseline=record.baseline,
        artifact_dir=record.artifact_dir,
        parent=None if record.rung is None else record.rung.parent,
        warm_start=record.warm_start,
        rung=rung,
        final=top is None or rung >= top or post_training,
        feasible=all(v <= 0.0 for v in t.constraints.values()) if t.constraints else True,
    )
