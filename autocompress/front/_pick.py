"""Choose one model from a front: by budget and preference, by trial number, or the knee.

Pure functions on :class:`Front`; the CLI's ``pick`` / ``export`` / ``verify`` and
``Front.pick`` all come here, so "which model did I get" has one answer.

Accuracy limits take one convention everywhere (CLI ``--min-accuracy``, ``pick(min_accuracy=)``,
``Front.pick``): a fraction (0.89) or percent (89). Values above 1 are percent; 1 and below are
fractions, so ``1`` means 100% (1% would be ``0.01``). See :func:`accuracy_fraction`.

When nothing meets the budget the error names the closest feasible points (smallest total relative
violation) with their figures, so the user sees what the budget would have to be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autocompress.errors import ConfigError

if TYPE_CHECKING:  # _front imports this module: Front.pick is pick()
    from autocompress.front._front import Front, Member

PREFERENCES = ("accuracy", "latency", "size", "knee")


class PickError(ConfigError):
    """No member of the front meets the request (exit code 2: the request must change)."""


@dataclass(frozen=True)
class Budget:
    """Limits a picked model must meet; None means no limit."""

    max_latency_ms: float | None = None
    min_accuracy: float | None = None  # fraction, 0-1 (``accuracy_fraction`` reads percent)
    max_size_bytes: float | None = None

    def violation(self, m: Member) -> float:
        """Sum of relative excesses over the limits (0 when every limit is met)."""
        r = m.result
        total = 0.0
        if self.max_latency_ms is not None:
            total += max(0.0, r.latency_ms / self.max_latency_ms - 1.0)
        if self.min_accuracy is not None:
            total += max(0.0, (self.min_accuracy - r.accuracy) / max(self.min_accuracy, 1e-9))
        if self.max_size_bytes is not None:
            total += max(0.0, r.size_bytes / self.max_size_bytes - 1.0)
        return total

    def describe(self) -> str:
        parts = []
        if self.max_latency_ms is not None:
            parts.append(f"latency <= {self.max_latency_ms:g} ms")
        if self.min_accuracy is not None:
            parts.append(f"accuracy >= {self.min_accuracy:.2%}")
        if self.max_size_bytes is not None:
            parts.append(f"size <= {self.max_size_bytes / 1e3:g} kB")
        return ", ".join(parts) or "no limits"


def pick(
    front: Front,
    *,
    number: int | None = None,
    max_latency_ms: float | None = None,
    min_accuracy: float | None = None,
    max_size_bytes: float | None = None,
    prefer: str = "accuracy",
) -> Member:
    """The member that meets every limit and is best by ``prefer`` (or trial ``number``).

    ``min_accuracy``: a fraction (0.89) or percent (89), see :func:`accuracy_fraction`.
    ``prefer``: "accuracy" (highest), "latency" (fastest), "size" (smallest), or "knee" (the
    knee of the members that meet the limits). ``number`` may name any completed trial of the
    front's device, on the front or not (a user may want a dominated baseline to compare).
    """
    if prefer not in PREFERENCES:
        raise PickError(f"prefer={prefer!r} is not a preference; use one of {PREFERENCES}")
    if number is not None:
        return _by_number(front, number)
    min_accuracy = accuracy_fraction(min_accuracy)
    if not front.members:
        raise PickError(
            f"the front is empty ({len(front.completed)} completed trials, none feasible); run "
            "more trials or relax search.max_accuracy_drop, then pick again"
        )
    budget = Budget(max_latency_ms, min_accuracy, max_size_bytes)
    fits = [m for m in front.members if budget.violation(m) == 0.0]
    if not fits:
        raise PickError(
            f"no front member meets {budget.describe()}; closest: {_closest(front, budget)}"
        )
    return _best(fits, prefer, front)


def accuracy_fraction(value: float | None) -> float | None:
    """An accuracy limit as a fraction: above 1 is percent (89 -> 0.89), 1 and below a fraction.

    So 0.89 and 89 both mean 89%, and 1 means 100%. Outside 0-100 it is an error.
    """
    if value is None:
        return None
    if not 0.0 <= value <= 100.0:
        raise PickError(
            f"min_accuracy={value:g} is not an accuracy; give a fraction (0.89) or percent (89)"
        )
    return value / 100.0 if value > 1.0 else float(value)


def _by_number(front: Front, number: int) -> Member:
    for m in [*front.completed, *front.lower_rungs]:
        if m.number == number:
            return m
    numbers = [m.number for m in front.members]
    raise PickError(
        f"trial {number} is not a completed trial of this study; front members: {numbers}"
    )


def _best(members: Sequence[Member], prefer: str, front: Front) -> Member:
    if prefer == "knee":
        sub = dataclasses.replace(front, members=list(members), completed=list(members))
        return sub.knee or members[0]
    # latency in the study's own objective (by default the ratio to fp32 timed beside each
    # candidate): milliseconds measured at different times carry the machine's drift
    if prefer == "accuracy":
        return max(members, key=lambda m: (m.result.accuracy, -m.objectives["latency"]))
    if prefer == "latency":
        return min(members, key=lambda m: (m.objectives["latency"], -m.result.accuracy))
    return min(members, key=lambda m: (m.result.size_bytes, -m.result.accuracy))


def _closest(front: Front, budget: Budget, k: int = 3) -> str:
    ranked = sorted(front.members, key=budget.violation)[:k]
    return "; ".join(describe(m) for m in ranked)


def describe(m: Member) -> str:
    """One line: trial number, accuracy, latency, size."""
    r = m.result
    tag = f" ({m.baseline})" if m.baseline else ""
    return (
        f"trial {m.number}{tag} {r.accuracy:.2%}, {r.latency_ms:.3f} ms, "
        f"{r.size_bytes / 1e3:.1f} kB, {r.finetune_steps} steps"
    )
