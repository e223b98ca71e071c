"""A standalone HTML report of a study: the front in 2-D and 3-D, history, the picked plan.

One file with plotly.js inlined: it opens offline and can be archived with the run. Every
figure is built by a small function from a :class:`Front` (plain data), so the figures can also be
used in a notebook (``figures(front)``). PNG copies go through kaleido, which drives a Chrome
binary; Debian's ``chromium`` is found automatically (or name one with ``BROWSER_PATH``).

Nothing secret goes into the report: the study name, objectives, measurements and plans only (no
storage URL, no experiment file contents).
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path
from typing import Any

from autocompress import _files
from autocompress.front import Front, Member, front_row

AXES = {
    "accuracy": ("accuracy (%)", lambda m: 100.0 * m.result.accuracy),
    "latency": ("latency (ms)", lambda m: m.result.latency_ms),
    "size": ("size (kB)", lambda m: m.result.size_bytes / 1e3),
}
PAIRS = [("latency", "accuracy"), ("size", "accuracy"), ("latency", "size")]


def figures(front: Front, picked: Member | None = None) -> dict[str, Any]:
    """The report's figures by div id (plotly ``Figure`` objects)."""
    out = {f"pareto-{y}-{x}": pareto_2d(front, x, y) for x, y in PAIRS}
    out["pareto-3d"] = pareto_3d(front)
    out["hypervolume"] = hypervolume_history(front)
    chosen = picked or front.knee
    if chosen is not None:
        out["picked-plan"] = plan_chart(chosen)
    return out


def pareto_2d(front: Front, x: str, y: str) -> Any:
    """One 2-D projection: other trials, the front, the baselines (each its own trace, if any)."""
    import plotly.graph_objects as go

    members = {m.number for m in front.members}
    others = [m for m in front.completed if m.number not in members and not m.baseline]
    baselines = [m for m in front.completed if m.baseline]
    fig = go.Figure()
    for name, group, marker in (
        ("other trials", others, {"color": "#b0b0b0", "size": 7}),
        ("Pareto front", front.members, {"color": "#1f77b4", "size": 10}),
        ("baselines", baselines, {"color": "#d62728", "size": 14, "symbol": "diamond-open"}),
    ):
        if not group:  # an empty trace would still take a legend entry
            continue
        fig.add_trace(
            go.Scatter(
                x=[AXES[x][1](m) for m in group],
                y=[AXES[y][1](m) for m in group],
                mode="markers",
                name=name,
                marker=marker,
                text=[_hover(m, front) for m in group],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title=f"{AXES[y][0]} vs {AXES[x][0]}",
        xaxis_title=AXES[x][0],
        yaxis_title=AXES[y][0],
        template="plotly_white",
        height=420,
    )
    return fig


def pareto_3d(front: Front) -> Any:
    import plotly.graph_objects as go

    members = {m.number for m in front.members}
    fig = go.Figure()
    for name, group, color in (
        ("other trials", [m for m in front.completed if m.number not in members], "#b0b0b0"),
        ("Pareto front", front.members, "#1f77b4"),
    ):
        if not group:  # an empty trace would still take a legend entry
            continue
        fig.add_trace(
            go.Scatter3d(
                x=[AXES["latency"][1](m) for m in group],
                y=[AXES["size"][1](m) for m in group],
                z=[AXES["accuracy"][1](m) for m in group],
                mode="markers",
                name=name,
                marker={"color": color, "size": 4},
                text=[_hover(m, front) for m in group],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        title="the front in 3-D",
        scene={
            "xaxis_title": AXES["latency"][0],
            "yaxis_title": AXES["size"][0],
            "zaxis_title": AXES["accuracy"][0],
        },
        height=560,
    )
    return fig


def hypervolume_history(front: Front) -> Any:
    import plotly.graph_objects as go

    history = front.hypervolume_history()
    fig = go.Figure(
        go.Scatter(
            x=[n for n, _ in history],
            y=[hv for _, hv in history],
            mode="lines+markers",
            name="hypervolume",
        )
    )
    fig.update_layout(
        title="hypervolume of the front after each trial (normalised space, reference (1, 1, 1))",
        xaxis_title="trial",
        yaxis_title="hypervolume",
        template="plotly_white",
        height=360,
    )
    return fig


def plan_chart(member: Member) -> Any:
    """Per-layer weight bits and pruning ratio of one plan."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers = list(member.plan.layers)
    bits = [p.weight_bits or 32 for p in member.plan.layers.values()]
    prune = [p.prune_ratio for p in member.plan.layers.values()]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.add_trace(
        go.Bar(x=layers, y=bits, name="weight bits (32 = fp32)", marker_color="#1f77b4"), 1, 1
    )
    fig.add_trace(go.Bar(x=layers, y=prune, name="channels pruned", marker_color="#ff7f0e"), 2, 1)
    fig.update_yaxes(title_text="bits", row=1, col=1)
    fig.update_yaxes(title_text="pruned", range=[0, 1], row=2, col=1)
    fig.update_layout(
        title=f"trial {member.number}: {member.plan.summary()}",
        template="plotly_white",
        height=480,
    )
    return fig


def write_report(
    front: Front,
    path: str | Path,
    *,
    title: str,
    picked: Member | None = None,
    png: bool = False,
) -> list[Path]:
    """Write the HTML report (and PNGs beside it when ``png``); returns the files written."""
    import plotly.offline

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figs = figures(front, picked)
    body = [f"<h1>{html.escape(title)}</h1>", _summary(front, picked)]
    for div_id, fig in figs.items():
        body.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))
    body.append(front_table(front))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<script>{plotly.offline.get_plotlyjs()}</script>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>"
        "</head><body>" + "\n".join(body) + "</body></html>"
    )
    _files.write_text(path, page)
    written = [path]
    if png:
        written += write_pngs(figs, path.with_suffix(""))
    return written


def write_pngs(figs: dict[str, Any], stem: Path) -> list[Path]:
    """PNG copies through kaleido; needs a Chrome binary (Debian: apt-get install chromium)."""
    from autocompress.errors import AutocompressError

    browser = (
        os.environ.get("BROWSER_PATH") or shutil.which("chromium") or shutil.which("google-chrome")
    )
    if browser is None:
        raise AutocompressError(
            "PNG export needs Chrome or Chromium (apt-get install chromium, or set BROWSER_PATH)"
        )
    os.environ.setdefault("BROWSER_PATH", browser)
    out = []
    for div_id, fig in figs.items():
        target = stem.with_name(f"{stem.name}-{div_id}.png")
        fig.write_image(str(target), width=900, height=fig.layout.height or 500)
        out.append(target)
    return out


def front_table(front: Front) -> str:
    rows = [
        "<h2>Pareto front</h2><table id='front-table'><tr><th>trial</th><th></th>"
        "<th>accuracy</th><th>latency (ms)</th><th>speedup</th><th>size (kB)</th>"
        "<th>smaller</th><th style='text-align:left'>plan</th></tr>"
    ]
    for row in (front_row(m, front) for m in front.members):
        rows.append(
            f"<tr><td>{row.number}</td><td>{html.escape(row.tag)}</td>"
            f"<td>{row.accuracy:.2%}</td><td>{row.latency_ms:.4f}</td>"
            f"<td>{row.speedup:.2f}x</td><td>{row.size_bytes / 1e3:.1f}</td>"
            f"<td>{row.smaller:.1f}x</td>"
            f"<td style='text-align:left'>{html.escape(row.plan)}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def _summary(front: Front, picked: Member | None) -> str:
    ref = front.reference
    fp = front.members[0].result.fingerprint if front.members else {}
    chosen = picked or front.knee
    items = [
        f"{len(front.completed)} completed trials, {len(front.members)} on the front",
        f"hypervolume {front.hypervolume():.4f}",
        f"fp32 reference: validation accuracy {ref.get('val_accuracy', float('nan')):.2%}, "
        f"latency {_reference_latency(front):.4f} ms (median over trials, timed beside each), "
        f"size {ref.get('size_bytes', float('nan')) / 1e3:.1f} kB",
        f"measured on: {html.escape(str(fp.get('cpu', '?')))}, "
        f"{html.escape(str(fp.get('device', '?')))} "
        f"({html.escape(str(fp.get('runtime', '?')))}, batch {fp.get('batch_size', '?')}, "
        f"{fp.get('threads', '?')} thread(s))",
    ]
    if chosen is not None:
        items.append(f"plan chart: trial {chosen.number}" + (" (picked)" if picked else " (knee)"))
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _reference_latency(front: Front) -> float:
    import statistics

    values = [
        m.result.reference_latency_ms
        for m in front.completed
        if m.result.reference_latency_ms is not None
    ]
    return statistics.median(values) if values else float("nan")


def _hover(m: Member, front: Front) -> str:
    r = m.result
    tag = f" ({m.baseline})" if m.baseline else ""
    ratio = r.latency_ratio or float("nan")
    return (
        f"trial {m.number}{tag}<br>accuracy {r.accuracy:.2%}<br>"
        f"latency {r.latency_ms:.4f} ms ({1 / ratio:.2f}x fp32)<br>"
        f"size {r.size_bytes / 1e3:.1f} kB<br>{html.escape(m.plan.summary())}"
    )
