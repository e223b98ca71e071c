"""Fronts and studies as tables: text for terminals, pandas for analysis."""

from __future__ import annotations

from typing import Any

from autocompress.front._front import Front, members_of


def fmt_bytes(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def fmt_ms(ms: float) -> str:
    return f"{ms:.3f} ms"


def format_front(front: Front) -> str:
    """The front as an aligned text table, best accuracy first, knee and baselines marked."""
    ref = front.reference
    knee = front.knee
    header = (
        f"{'trial':>5}  {'':9}{'accuracy':>9}  {'latency':>10}  {'speedup':>7}  "
        f"{'size':>10}  {'smaller':>7}  plan"
    )
    lines = [header, "-" * len(header)]
    for m in front.members:
        r = m.result
        speed = 1.0 / r["latency_ratio"] if r.get("latency_ratio") else float("nan")
        smaller = ref.get("size_bytes", float("nan")) / r["size_bytes"]
        mark = "knee" if knee is not None and m.number == knee.number else ""
        tag = (m.baseline or (f"from {m.refines}" if m.refines is not None else mark)).ljust(9)
        lines.append(
            f"{m.number:>5}  {tag}{r['accuracy']:>9.2%}  {fmt_ms(r['latency_ms']):>10}  "
            f"{speed:>6.2f}x  {fmt_bytes(r['size_bytes']):>10}  {smaller:>6.1f}x  "
            f"{m.plan.summary()}"
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
        row: dict[str, Any] = {
            "trial": t.number,
            "state": t.state.name,
            "baseline": t.user_attrs.get("baseline"),
            "failure": t.user_attrs.get("failure"),
        }
        member = completed.get(t.number)
        if member is not None:
            row.update({k: v for k, v in member.row().items() if k not in ("trial", "baseline")})
        plan = t.user_attrs.get("plan") or {}
        for layer, lp in (plan.get("layers") or {}).items():
            row[f"bits.{layer}"] = lp.get("weight_bits")
            row[f"prune.{layer}"] = lp.get("prune_ratio")
        distill = plan.get("distill") or {}
        row["distill.temperature"] = distill.get("temperature")
        row["distill.alpha"] = distill.get("alpha")
        rows.append(row)
    return pd.DataFrame(rows)
