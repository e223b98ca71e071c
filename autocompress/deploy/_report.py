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
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autocompress import _files
from autocompress.front import (
    Front,
    Member,
    floor_line,
    fmt_bytes,
    fp32_latency_ms,
    front_row,
    int8_note,
    latency_ms,
)
from autocompress.measure import cpu_line
from autocompress.record import SCHEME_LEGEND

if TYPE_CHECKING:
    from autocompress.study import BudgetClocks

AXES = {
    "accuracy": ("validation accuracy (%)", lambda m, f: 100.0 * m.result.accuracy),
    "latency": ("latency (ms)", latency_ms),  # the fp32 baseline at the one fp32 figure
    "size": ("packed size (kB)", lambda m, f: m.result.size_bytes / 1e3),
}
PAIRS = [("latency", "accuracy"), ("size", "accuracy"), ("latency", "size")]


def groups(front: Front) -> list[tuple[str, list[Member], dict[str, Any]]]:
    """The marker groups of every 2-D plot, in legend order; empty groups are left out.

    Infeasible trials (below the accuracy floor) and dominated ones are told apart.
    """
    members = {m.number for m in front.members}
    rest = [m for m in front.completed if m.number not in members and not m.baseline]
    knee = front.knee
    out = [
        ("dominated trials", [m for m in rest if m.feasible], {"color": "#b0b0b0", "size": 7}),
        (
            "below the accuracy floor (infeasible)",
            [m for m in rest if not m.feasible],
            {"color": "#e377c2", "size": 8, "symbol": "x"},
        ),
        ("Pareto front", list(front.members), {"color": "#1f77b4", "size": 10}),
        (
            "baselines",
            [m for m in front.completed if m.baseline],
            {"color": "#d62728", "size": 14, "symbol": "diamond-open"},
        ),
        (
            "knee",
            [knee] if knee is not None else [],
            {"color": "#2ca02c", "size": 18, "symbol": "star-open", "line": {"width": 2}},
        ),
    ]
    return [g for g in out if g[1]]  # an empty trace would still take a legend entry


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
    """One 2-D projection: each group its own trace, baselines and knee labelled on the plot."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, group, marker in groups(front):
        labelled = name in ("baselines", "knee")
        fig.add_trace(
            go.Scatter(
                x=[AXES[x][1](m, front) for m in group],
                y=[AXES[y][1](m, front) for m in group],
                mode="markers+text" if labelled else "markers",
                name=name,
                marker=marker,
                text=[_label(name, m) for m in group] if labelled else None,
                textposition="top center" if name == "baselines" else "bottom center",
                hovertext=[_hover(m, front) for m in group],
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    floor = getattr(front, "accuracy_floor", None)
    if floor is not None and "accuracy" in (x, y):
        line = {"line_dash": "dash", "line_color": "#e377c2"}
        label = f"accuracy floor {floor:.2%}"
        if y == "accuracy":
            fig.add_hline(y=100 * floor, annotation_text=label, **line)
        else:
            fig.add_vline(x=100 * floor, annotation_text=label, **line)
    fig.update_layout(
        title=f"{AXES[y][0]} vs {AXES[x][0]}",
        xaxis_title=AXES[x][0],
        yaxis_title=AXES[y][0],
        template="plotly_white",
        height=420,
    )
    return fig


def _label(group: str, m: Member) -> str:
    return f"knee (trial {m.number})" if group == "knee" else str(m.baseline)


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
                x=[AXES["latency"][1](m, front) for m in group],
                y=[AXES["size"][1](m, front) for m in group],
                z=[AXES["accuracy"][1](m, front) for m in group],
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
            "xaxis": {"title": AXES["latency"][0], "range": _range(front, "latency")},
            "yaxis": {"title": AXES["size"][0], "range": _range(front, "size")},
            "zaxis_title": AXES["accuracy"][0],
        },
        height=560,
    )
    return fig


def _range(front: Front, axis: str) -> list[float]:
    """From 0 to a tenth past the largest value: no marker sits on (or past) the box's edge."""
    values = [AXES[axis][1](m, front) for m in front.completed] or [1.0]
    return [0.0, 1.1 * max(values)]


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

    plan = member.plan.layers
    forward = [n for n in member.result.layers if n in plan]  # the model's forward order
    layers = forward + [n for n in plan if n not in forward]
    bits = [plan[n].weight_bits or 32 for n in layers]
    prune = [plan[n].prune_ratio for n in layers]
    kernels = [_kernel(member, n) for n in layers]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    fig.add_trace(
        go.Bar(
            x=layers, y=bits, name="weight bits (32 = fp32)", marker_color="#1f77b4",
            hovertext=kernels,
        ),
        1,
        1,
    )  # fmt: skip
    fig.add_trace(go.Bar(x=layers, y=prune, name="channels pruned", marker_color="#ff7f0e"), 2, 1)
    fig.update_yaxes(title_text="bits", row=1, col=1)
    fig.update_yaxes(title_text="pruned", range=[0, 1], row=2, col=1)
    fig.update_layout(
        title=f"trial {member.number}: {member.plan.summary()}",
        template="plotly_white",
        height=480,
    )
    return fig


def _kernel(member: Member, layer: str) -> str:
    """The layer's kernel (``LayerRecord.scheme``) and what it buys, for the bar's hover."""
    record = member.result.layers.get(layer)
    scheme = None if record is None else record.scheme
    if scheme is None:
        return "fp32"
    return f"{scheme}: {SCHEME_LEGEND['nbits' if scheme.startswith('nbits') else scheme]}"


def write_report(
    front: Front,
    path: str | Path,
    *,
    title: str,
    picked: Member | None = None,
    png: bool = False,
    test_accuracy: dict[int, float] | None = None,
    storage: str | None = None,
    clocks: Sequence[BudgetClocks] = (),
) -> list[Path]:
    """Write the HTML report (and PNGs beside it when ``png``); returns the files written.

    The front table comes first (with the fp32 reference, the verified test accuracy when
    ``test_accuracy`` has it, and the command that exports each row, naming ``storage``);
    ``clocks`` (``study.budget_clocks``): where the trials' time went, one line per budget.
    """
    import plotly.offline

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figs = figures(front, picked)
    body = [f"<h1>{html.escape(title)}</h1>", _summary(front, picked, clocks)]
    body.append(front_table(front, test_accuracy or {}, storage))
    for div_id, fig in figs.items():
        body.append(fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id))
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        f"<script>{plotly.offline.get_plotlyjs()}</script>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "code{font-size:85%}</style>"
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
    # kaleido, choreographer and the browser's stderr (logistro's "browser_proc") log through
    # `logging`, and kaleido's asyncio loop reports stray task errors on the "asyncio" logger;
    # with no handler there, logging's last resort printed such a record as a traceback on the
    # stderr of a run that succeeded (issue #20). For the PNGs' time their records go to our
    # debug log (-v shows them); a PNG that really fails is one AutocompressError line.
    import logging

    ours = logging.getLogger("autocompress.deploy.png")

    class ToDebug(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            ours.debug("%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)

    names = ("kaleido", "choreographer", "logistro", "browser_proc", "asyncio")
    loggers = [(logging.getLogger(n), logging.getLogger(n).propagate) for n in names]
    handler = ToDebug()
    out = []
    try:
        for logger, _ in loggers:
            logger.addHandler(handler)
            logger.propagate = False
        for div_id, fig in figs.items():
            target = stem.with_name(f"{stem.name}-{div_id}.png")
            try:
                fig.write_image(str(target), width=900, height=fig.layout.height or 500)
            except Exception as exc:  # kaleido's errors are many lines: keep the first
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise AutocompressError(f"PNG {target.name} failed: {first}") from exc
            out.append(target)
    finally:
        for logger, propagate in loggers:
            logger.removeHandler(handler)
            logger.propagate = propagate
    return out


def front_table(
    front: Front, test_accuracy: dict[int, float] | None = None, storage: str | None = None
) -> str:
    """The front as a table: the fp32 reference first, then the members, best accuracy first."""
    tested = test_accuracy or {}
    fp32 = [m for m in front.completed if m.baseline == "fp32"][:1]
    shown = fp32 + [m for m in front.members if m not in fp32]
    head = ["trial", "", "val accuracy"] + (["test accuracy"] if tested else [])
    head += ["latency (ms)", "x faster than fp32", "packed size", "x smaller than fp32", "steps"]
    rows = [
        "<h2>Pareto front</h2><table id='front-table'><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "<th style='text-align:left'>plan</th><th style='text-align:left'>export</th></tr>"
    ]
    for m in shown:
        row = front_row(m, front)
        tag = "fp32 reference" if m in fp32 and not row.on_front else row.tag
        test = f"<td>{tested[m.number]:.2%}</td>" if m.number in tested else "<td>-</td>"
        rows.append(
            f"<tr><td>{row.number}</td><td>{html.escape(tag)}</td><td>{row.accuracy:.2%}</td>"
            + (test if tested else "")
            + f"<td>{row.latency_ms:.4f}</td><td>{row.speedup:.2f}x</td>"
            f"<td>{fmt_bytes(row.size_bytes)}</td><td>{row.smaller:.1f}x</td>"
            f"<td>{row.steps}</td><td style='text-align:left'>{html.escape(row.plan)}</td>"
            f"<td style='text-align:left'><code>{html.escape(export_command(m, storage))}"
            "</code></td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def export_command(m: Member, storage: str | None) -> str:
    """The command that exports ``m``."""
    where = storage or "<study.journal>"
    return f"autocompress export {where} exported-{m.number}/ --trial {m.number}"


def _summary(front: Front, picked: Member | None, clocks: Sequence[BudgetClocks] = ()) -> str:
    ref = front.reference
    fp = front.members[0].result.fingerprint if front.members else {}
    chosen = picked or front.knee
    items = [
        f"{len(front.completed)} completed trials, {len(front.members)} on the front",
        f"hypervolume {front.hypervolume():.4f}",
        f"fp32 reference: validation accuracy {ref.get('val_accuracy', float('nan')):.2%}, "
        f"latency {fp32_latency_ms(front):.4f} ms (median over trials, timed beside each), "
        f"packed size {ref.get('size_bytes', float('nan')) / 1e3:.1f} kB",
        html.escape(floor_line(front)),
        *(html.escape(n) for n in filter(None, [int8_note(front)])),
        "speedup = x faster than the fp32 reference's latency above; smaller = x smaller than "
        "its packed size",
        f"measured on: {html.escape(cpu_line(fp))}, "
        f"{html.escape(str(fp.get('device', '?')))} "
        f"({html.escape(str(fp.get('runtime', '?')))}, batch {fp.get('batch_size', '?')}, "
        f"{fp.get('threads', '?')} thread(s))",
    ]
    if front.rungs is not None:
        taus = "; ".join(f.describe() for f in front.fidelity) or "no plan promoted yet"
        items.append(f"rungs {list(front.rungs)} fine-tuning steps; rank fidelity: {taus}")
    items += [f"trial time, {html.escape(c.describe())} (mean seconds)" for c in clocks]
    if chosen is not None:
        items.append(f"plan chart: trial {chosen.number}" + (" (picked)" if picked else " (knee)"))
    return "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _hover(m: Member, front: Front) -> str:
    row = front_row(m, front)
    tag = f" ({m.baseline})" if m.baseline else ""
    state = "" if row.on_front else (" below the floor" if not row.feasible else " dominated")
    return (
        f"trial {m.number}{tag}{state}<br>validation accuracy {row.accuracy:.2%}<br>"
        f"latency {row.latency_ms:.4f} ms ({row.speedup:.2f}x faster than fp32)<br>"
        f"packed size {row.size_bytes / 1e3:.1f} kB ({row.smaller:.1f}x smaller than fp32)<br>"
        f"{html.escape(m.plan.summary())}"
    )
