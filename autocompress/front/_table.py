"""Fronts and studies as tables: text for terminals, pandas for analysis."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from autocompress.front._front import Front, Member, members_of
from autocompress.record import read_trial


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f} ms"


@dataclass(frozen=True)
class FrontRow:
    """One member as every table shows it (terminal, HTML report, pick's one-liner)."""

    number: int
    tag: str  # the baseline's name, "from N" for a refinement, "knee", or ""
    accuracy: float
    latency_ms: float
    speedup: float  # fp32 latency / this latency, timed in the same sitting (nan if unknown)
    size_bytes: int
    smaller: float  # fp32 size / this size
    plan: str


def front_row(m: Member, front: Front) -> FrontRow:
    knee = front.knee
    r = m.result
    mark = "knee" if knee is not None and m.number == knee.number else ""
    return FrontRow(
        number=m.number,
        tag=m.baseline or (f"from {m.refines}" if m.refines is not None else mark),
        accuracy=r.accuracy,
        latency_ms=r.latency_ms,
        speedup=1.0 / r.latency_ratio if r.latency_ratio else math.nan,
        size_bytes=r.size_bytes,
        smaller=front.reference.get("size_bytes", math.nan) / r.size_bytes,
        plan=m.plan.summary(),
    )


def format_front(front: Front) -> str:
    """The front as an aligned text table, best accuracy first, knee and baselines marked."""
    header = (
        f"{'trial':>5}  {'':9}{'accuracy':>9}  {'latency':>10}  {'speedup':>7}  "
        f"{'size':>10}  {'smaller':>7}  plan"
    )
    lines = [header, "-" * len(header)]
    for row in (front_row(m, front) for m in front.members):
        lines.append(
            f"{row.number:>5}  {row.tag.ljust(9)}{row.accuracy:>9.2%}  "
            f"{fmt_ms(row.latency_ms):>10}  {row.speedup:>6.2f}x  "
            f"{fmt_bytes(row.size_bytes):>10}  {row.smaller:>6.1f}x  {row.plan}"
        )
    if front.excluded_fingerprints:
        lines.append(
            f"(not shown: trials timed on other devices/runtimes {front.excluded_fingerprints})"
        )
    return "\n".join(lines)


def to_pandas(study: Any) -> Any:
    """All trials, one row each, with objectives, state, and flattened plan columns."""
    import pandas as pd

    rows = []
    completed = {m.number: m for m in members_of(study)}
    for t in study.get_trials(deepcopy=False):
        record = read_trial(t)
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "baseline": record.baseline,
            "failure": record.failure,
        }
        member = completed.get(t.number)
        if member is not None:
            row.update({k: v for k, v in member.row().items() if k not in ("trial", "baseline")})
        plan = record.plan_data or {}
        for layer, lp in (plan.get("layers") or {}).items():
            row[f"bits.{layer}"] = lp.get("weight_bits")
            row[f"prune.{layer}"] = lp.get("prune_ratio")
        distill = plan.get("distill") or {}
        row["distill.temperature"] = distill.get("temperature")
        row["distill.alpha"] = distill.get("alpha")
        rows.append(row)
    return pd.DataFrame(rows)
