"""Fronts and studies as tables: text for terminals, pandas for analysis.

One definition of the fp32 latency (:func:`fp32_latency_ms`: the median over trials of the
reference timed beside each) and of speedup (that figure / a member's milliseconds), so the same
milliseconds give the same speedup in the status table, the report, its hover and ``pick``.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from autocompress.front._front import Front, Member, build_front, members_of
from autocompress.record import read_trial


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f} ms"


def fp32_latency_ms(front: Front) -> float:
    """The fp32 reference's latency: the median over trials of the reference timed beside each.

    The one figure every table, plot and one-liner shows for fp32 (nan when nothing was timed).
    """
    values = [
        m.result.reference_latency_ms
        for m in front.completed
        if m.result.reference_latency_ms is not None
    ]
    return statistics.median(values) if values else math.nan


def latency_ms(m: Member, front: Front) -> float:
    """A member's latency as shown: the fp32 baseline is the reference, so it shows that."""
    return fp32_latency_ms(front) if m.baseline == "fp32" else m.result.latency_ms


@dataclass(frozen=True)
class FrontRow:
    """One member as every table shows it (terminal, HTML report, pick's one-liner)."""

    number: int
    tag: str  # the baseline's name, "from N" for a promoted trial, "knee", or ""
    accuracy: float
    latency_ms: float
    speedup: float  # x faster than fp32: fp32_latency_ms(front) / latency_ms (nan if unknown)
    size_bytes: int
    smaller: float  # x smaller than fp32: fp32 size / this size
    plan: str
    feasible: bool = True  # at or above the accuracy floor
    on_front: bool = True
    steps: int = 0  # the fine-tuning budget its figures were measured at (its rung's)


def front_row(m: Member, front: Front) -> FrontRow:
    knee = front.knee
    r = m.result
    mark = "knee" if knee is not None and m.number == knee.number else ""
    ms = latency_ms(m, front)
    return FrontRow(
        number=m.number,
        tag=m.baseline or (f"from {m.parent}" if m.parent is not None else mark),
        accuracy=r.accuracy,
        latency_ms=ms,
        speedup=fp32_latency_ms(front) / ms if ms > 0 else math.nan,
        size_bytes=r.size_bytes,
        smaller=front.reference.get("size_bytes", math.nan) / r.size_bytes,
        plan=m.plan.summary(),
        feasible=m.feasible,
        on_front=any(f.number == m.number for f in front.members),
        steps=m.steps,
    )


def floor_line(front: Front) -> str:
    """The accuracy floor in words (every view of a front shows it)."""
    if front.accuracy_floor is None:
        return "accuracy floor: none (search.max_accuracy_drop unset): every trial is feasible"
    fp32 = front.reference.get("val_accuracy", math.nan)
    return (
        f"accuracy floor: {front.accuracy_floor:.2%} validation accuracy "
        f"(fp32 {fp32:.2%} - {100 * (fp32 - front.accuracy_floor):.1f} pts); "
        "trials below it are infeasible"
    )


def int8_note(front: Front) -> str | None:
    """A line when uniform int8 is *slower* than fp32 on this machine (None when it is not).

    On small models the quantize/dequantize work at every int8 boundary costs more than the int8
    arithmetic saves (measured 1.9x slower on a tiny ViT); the search records that honestly, and
    a user reading the front needs to be told why no quantized member is fast.
    """
    int8 = next((m for m in front.completed if m.baseline == "int8"), None)
    ratio = None if int8 is None else int8.latency_ratio
    if int8 is None or ratio is None or not ratio > 1.0:
        return None
    return (
        f"note: uniform int8 (trial {int8.number}) is {ratio:.2f}x slower than fp32 here: for "
        "this model on this CPU the int8 kernels' quantize/dequantize overhead outweighs their "
        "arithmetic; quantized members save bytes, not time"
    )


def infeasible_warning(m: Member, front: Front) -> str | None:
    """A line for stderr when ``m`` is below the accuracy floor (None when it is not)."""
    if m.feasible:
        return None
    floor = "?" if front.accuracy_floor is None else f"{front.accuracy_floor:.2%}"
    return (
        f"autocompress: warning: trial {m.number} is infeasible: its validation accuracy "
        f"{m.result.accuracy:.2%} is below the accuracy floor {floor} (search.max_accuracy_drop)"
    )


def describe_row(m: Member, front: Front) -> str:
    """One line: trial, accuracy, latency and size with what they are against."""
    row = front_row(m, front)
    tag = f" ({row.tag})" if row.tag else ""
    state = "" if row.on_front else (" [infeasible]" if not row.feasible else " [dominated]")
    return (
        f"trial {row.number}{tag}{state} {row.accuracy:.2%}, {fmt_ms(row.latency_ms)} "
        f"({row.speedup:.2f}x faster than fp32), {fmt_bytes(row.size_bytes)} packed "
        f"({row.smaller:.1f}x smaller than fp32), {row.steps} fine-tuning steps"
    )


def format_front(front: Front) -> str:
    """The front as an aligned text table, best accuracy first, knee and baselines marked."""
    header = (
        f"{'trial':>5}  {'':9}{'accuracy':>9}  {'latency':>10}  {'speedup':>7}  "
        f"{'size':>10}  {'smaller':>7}  {'steps':>5}  plan"
    )
    lines = [
        f"fp32 reference: {fmt_ms(fp32_latency_ms(front))} (median over trials, timed beside "
        "each); speedup = x faster than fp32, smaller = x smaller than fp32 (packed bytes)",
        floor_line(front),
        *filter(None, [int8_note(front)]),
        header,
        "-" * len(header),
    ]
    for row in (front_row(m, front) for m in front.members):
        lines.append(
            f"{row.number:>5}  {row.tag.ljust(9)}{row.accuracy:>9.2%}  "
            f"{fmt_ms(row.latency_ms):>10}  {row.speedup:>6.2f}x  "
            f"{fmt_bytes(row.size_bytes):>10}  {row.smaller:>6.1f}x  {row.steps:>5}  {row.plan}"
        )
    if front.excluded_fingerprints:
        lines.append(
            f"(not shown: trials timed on other devices/runtimes {front.excluded_fingerprints})"
        )
    return "\n".join(lines)


def to_pandas(study: Any) -> Any:
    """All trials, one row each, with objectives, state, and flattened plan columns.

    ``feasible`` (every constraint met; NA for a trial that did not complete), ``on_front`` (a
    member of ``build_front``); ``bits.<layer>`` is a nullable integer, 32 for full precision;
    a missing value is NaN / NA, never None.
    """
    import pandas as pd

    rows = []
    completed = {m.number: m for m in members_of(study, all_rungs=True)}
    on_front = {m.number for m in build_front(study).members}
    for t in study.get_trials(deepcopy=False):
        record = read_trial(t)
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "baseline": record.baseline,
            "failure": record.failure,
        }
        member = completed.get(t.number)
        row["feasible"] = None if member is None else member.feasible
        row["on_front"] = t.number in on_front
        if member is not None:
            row.update({k: v for k, v in member.row().items() if k not in ("trial", "baseline")})
        plan = record.plan_data or {}
        for layer, lp in (plan.get("layers") or {}).items():
            row[f"bits.{layer}"] = lp.get("weight_bits") or 32  # None: full precision
            row[f"prune.{layer}"] = lp.get("prune_ratio")
        distill = plan.get("distill") or {}
        row["distill.temperature"] = distill.get("temperature")
        row["distill.alpha"] = distill.get("alpha")
        rows.append(row)
    return _typed(pd.DataFrame(rows))


def _typed(df: Any) -> Any:
    """Bits as Int64, feasibility as boolean, and NaN (not None) where an object is missing."""
    for column in df.columns:
        if column.startswith("bits."):
            df[column] = df[column].astype("Int64")
        elif column == "feasible":
            df[column] = df[column].astype("boolean")
        elif df[column].dtype == object:
            df[column] = df[column].where(df[column].notna(), math.nan)
    return df
