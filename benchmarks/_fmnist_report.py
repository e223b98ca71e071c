"""The benchmark's markdown and plot, written from a sitting's figures alone.

``render`` redraws them from the stored JSON without opening a study or measuring anything, so
a change of layout never changes a figure.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

from _fmnist_verdicts import (
    AIM_SMALLER,
    AIM_SPEEDUP,
    BATCHES_AFTER,
    MF_HV_GAIN,
    MF_PLANS_RATIO,
    MF_SMALLER,
    MF_SPEEDUP,
    batch_speedups,
    clears_mf_bar,
    sitting_gains,
)


def _retimed(summary: dict[str, Any]) -> str:
    """How many verified points were re-timed because the fp32 beside them ran off the others'
    (``deploy/_verify.py``), and how many stayed off; empty for files stored before that."""
    found = list(summary["baselines"].values()) + [
        p for s in summary["searches"] for v in s.values() if isinstance(v, list) for p in v
    ]  # fmt: skip
    points = [p for p in found if isinstance(p, dict) and "retimes" in p]
    if not points:
        return ""
    retimed = sum(1 for p in points if p.get("retimes"))
    still = sum(1 for p in points if p.get("disturbed"))
    return (
        f" Re-timed because the fp32 beside them ran off the others': {retimed} "
        f"of {len(points)} rows" + (f", {still} still off (marked disturbed)." if still else ".")
    )


def markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    b = summary["baselines"]
    extra = BATCHES_AFTER[0]
    lines = [
        f"# Fashion-MNIST benchmark ({meta['experiment']}), batch {meta['batch']}",
        "",
        f"Command: `{meta['command']}`  ",
        f"Device: {meta['device']}  ",
        f"Date: {meta['date']}; all latencies re-measured in one verification sitting after the "
        "searches (median of the protocol's repeats, one pinned core); test accuracy on the "
        "held-out 10,000 images; size is the packed artifact's bytes." + _retimed(summary),
        "",
        "| model | val acc | test acc | latency ms | x int8 speed | size kB | x int8 size "
        f"| x int8 speed, batch {extra} | plan |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    int8 = b["int8"]
    for kind, p in b.items():
        lines.append(
            f"| {kind} (baseline) | {p['val_accuracy']:.2%} | {p['test_accuracy']:.2%} | "
            f"{p['latency_ms']:.4f} | {int8['latency_ms'] / p['latency_ms']:.2f} | "
            f"{p['size_bytes'] / 1e3:.1f} | {int8['size_bytes'] / p['size_bytes']:.2f} | "
            f"{_ratio(batch_speedups(int8, p).get(f'speedup_vs_int8_b{extra}'))} | "
            f"{_cell(p.get('plan', ''))} |"
        )
    for s in summary["searches"]:
        p = s["within_0.5pt"]
        if p is None:
            lines.append(f"| {s['arm']}: none within 0.5 pt of fp32 | | | | | | | | |")
            continue
        lines.append(
            f"| {s['arm']}: fastest within 0.5 pt of fp32 (trial {p['trial']}"
            f"{'' if p['refines'] is None else ', refines ' + str(p['refines'])}) | "
            f"{p['val_accuracy']:.2%} | {p['test_accuracy']:.2%} | {p['latency_ms']:.4f} | "
            f"{p['speedup_vs_int8']:.2f} | {p['size_bytes'] / 1e3:.1f} | "
            f"{p['smaller_vs_int8']:.2f} | {_ratio(p.get(f'speedup_vs_int8_b{extra}'))} | "
            f"{_cell(p.get('plan', ''))} |"
        )
    lines += [
        "",
        "| search | sampler | seed | trials | hypervolume (search) "
        f"| hypervolume, first {summary.get('n', '?')} trials "
        "| hypervolume, baselines + warm starts alone | front | wall min "
        "| median trial s | CPU min | refined | refine min | baseline dominates (same budget) "
        "| across budgets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary["searches"]:
        lines.append(
            f"| {s['arm']} | {s['sampler']} | {s['seed']} | {s['n_trials']} | "
            f"{s['hypervolume']:.4f} | {_hv(s.get('hypervolume_at_n'))} | "
            f"{_hv(s.get('hypervolume_warm_starts'))} | {s['front_size']} | "
            f"{s['wall_s'] / 60:.1f} | "
            f"{s['trial_wall_median_s']:.1f} | {_minutes(s['cpu_s'])} | "
            f"{', '.join(map(str, s['refined'])) or '-'} | {s['refine_s'] / 60:.1f} | "
            f"{', '.join(f'{k} > trial {t}' for k, t in s['dominated_by_baseline']) or 'no'} | "
            f"{', '.join(f'{k} > {t}' for k, t in s.get('dominated_across_budgets', [])) or '-'} |"
        )
    hv = ", ".join(f"{k} {v:.4f}" for k, v in sorted(summary["median_hypervolume"].items()))
    lines += [
        "",
        f"Median hypervolume of the searches' own trials (reference point (1, 1, 1)): {hv}.",
        "The default search starts from the uniform plans a user would try by hand "
        "(`search.warm_start: [uniform]`, within its budget); random search starts from the "
        "baselines alone. The column 'baselines + warm starts alone' is the hypervolume "
        "before the sampler chose any plan.",
        "",
        *multi_fidelity(summary, meta),
        *targets(summary, meta),
    ]
    return "\n".join(lines)


def multi_fidelity(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """Each multi-fidelity search beside the default search (+ refinement) of its seed, on
    #21's criteria: CPU, hypervolume of what a user is offered, a sampled plan's ratios, the
    plans seen at rung 0 per plan fully trained, and the rungs' rank fidelity."""
    mf = [s for s in summary["searches"] if s.get("rungs")]
    if not mf:
        return []
    default = meta["default_sampler"]
    plain = {
        s["seed"]: s for s in summary["searches"] if s["sampler"] == default and not s.get("rungs")
    }
    lines = [
        "## Multi-fidelity search against the default search + refinement (same seed)",
        "",
        "Hypervolume of what each search offers a user (the default search's front with its "
        "refined members; the multi-fidelity search's fully trained members and post-training "
        "baselines), on validation figures and on the verification sitting's test figures. "
        "CPU: busy seconds of the machine, search and refinement.",
        "",
        "| search | CPU min | hypervolume (val) | hypervolume (test, verified) | plans per rung "
        "| rung-0 plans per fully trained | Kendall tau (steps: tau over plans) "
        f"| fastest sampled plan within 0.5 pt (>= {MF_SPEEDUP}x, >= {MF_SMALLER:g}x) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in [*plain.values(), *mf]:
        counts = s.get("plans_per_rung") or []
        ratio = counts[0] / counts[-1] if len(counts) > 1 and counts[-1] else None
        taus = "; ".join(
            f"{f['steps'][0]}->{f['steps'][1]}: {_ratio(f['tau'])} over {f['plans']}"
            for f in s.get("rank_fidelity", [])
        )
        sampled = s.get("mf_sampled")
        lines.append(
            f"| {s['arm']} | {_minutes((s['cpu_s'] or 0) + s.get('refine_cpu_s', 0.0))} | "
            f"{_hv(s.get('hypervolume_refined'))} | {_hv(s.get('hypervolume_verified'))} | "
            f"{' / '.join(map(str, counts)) or '-'} | {_ratio(ratio)} | {taus or '-'} | "
            f"{_cell(_describe(sampled)) if sampled else 'none'} |"
        )
    lines.append("")
    for s in mf:
        base = plain.get(s["seed"])
        sampled = s.get("mf_sampled")
        met = sampled is not None and clears_mf_bar(
            sampled["speedup_vs_int8"], sampled["smaller_vs_int8"]
        )
        lines.append(
            f"- {s['arm']}: a plan the sampler chose within 0.5 pt, >= {MF_SPEEDUP}x faster and "
            f">= {MF_SMALLER:g}x smaller than int8: **{'met' if met else 'missed'}**"
            + (f" ({_describe(sampled)})" if sampled else " (no sampled plan in the band)")
        )
        if base is not None:
            lines += _sitting_gains(s, base)
            gain = s["hypervolume_verified"] - base["hypervolume_verified"]
            cpu = (s["cpu_s"] or 0) + s.get("refine_cpu_s", 0.0)
            cpu_base = (base["cpu_s"] or 0) + base.get("refine_cpu_s", 0.0)
            lines.append(
                f"- {s['arm']}: verified hypervolume {gain:+.4f} against {base['arm']} + "
                f"refinement (target >= +{MF_HV_GAIN}: "
                f"**{'met' if gain >= MF_HV_GAIN else 'missed'}**)"
                f", at {cpu / 60:.1f} vs {cpu_base / 60:.1f} CPU min "
                f"(**{'no more' if cpu <= cpu_base else 'more'}** CPU)."
            )
        cut = s.get("at_default_cpu")
        if cut is not None and base is not None:
            best = cut["sampled_within_0.5pt_val"]
            lines.append(
                f"- {s['arm']} stopped at {base['arm']}'s CPU ({cut['cpu_s'] / 60:.1f} min, "
                f"{cut['share_of_run']:.0%} of its run; trial completion times): "
                f"{cut['fully_trained']} plans fully trained, hypervolume (val) "
                f"{cut['hypervolume_val']:.4f} vs {base['hypervolume_refined']:.4f}; fastest "
                "sampled plan within 0.5 pt of fp32 (val): "
                + (
                    f"trial {best['trial']} ({best['val_accuracy']:.2%} val, "
                    f"{best['speedup_vs_int8']:.2f}x faster, {best['smaller_vs_int8']:.2f}x "
                    f"smaller than int8, search figures) [{best['plan']}]"
                    if best
                    else "none"
                )
                + "."
            )
        if s.get("finetune_steps"):
            saved = s["steps_continuation_saves"]
            lines.append(
                f"- {s['arm']}: {s['finetune_steps']} fine-tuning steps over the ladder; "
                f"continuing each promoted plan from its parent's weights would have saved "
                f"{saved} ({saved / s['finetune_steps']:.1%})."
            )
        counts = s.get("plans_per_rung") or [0]
        ratio = counts[0] / counts[-1] if counts[-1] else 0.0  # none fully trained: no front
        lines.append(
            f"- {s['arm']}: {counts[0]} plans at rung 0, {counts[-1]} fully trained: "
            f"{_ratio(ratio if counts[-1] else None)}x (target >= {MF_PLANS_RATIO:g}x with at "
            f"least one fully trained: **{'met' if ratio >= MF_PLANS_RATIO else 'missed'}**)."
        )
    return [*lines, ""]


def _sitting_gains(mf: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """The verified hypervolume gain in each verification sitting (``sittings=``), if several."""
    gains = sitting_gains(mf, base)
    if not gains:
        return []
    return [
        f"- {mf['arm']}: verified hypervolume gain in each of {len(gains)} verification "
        f"sittings: {', '.join(f'{g:+.4f}' for g in gains)} (median "
        f"{statistics.median(gains):+.4f}, spread {max(gains) - min(gains):.4f}); the lines "
        "below are the first sitting's."
    ]


def targets(summary: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """The issue's criteria, judged from the figures above (written, never hand-edited)."""
    default = meta["default_sampler"]
    ours = [s for s in summary["searches"] if s["sampler"] == default]
    lines = ["## Against the targets (figures above, this sitting)", ""]
    for s in ours:
        lines.append(f"- {s['arm']}: {_aim_line(s)}")
    hv = summary["median_hypervolume"]
    if "random" in hv and default in hv:
        each = ", ".join(
            f"s{s['seed']} {s['hypervolume']:.4f}/{r['hypervolume']:.4f}"
            for s in ours
            for r in summary["searches"]
            if r["sampler"] == "random" and r["seed"] == s["seed"]
        )
        verdict = "met" if hv[default] >= hv["random"] else "missed"
        at_n = summary.get("median_hypervolume_at_n", {})
        same = (
            f"; at the same {summary['n']} trials: {at_n[default]:.4f} vs {at_n['random']:.4f}"
            if "random" in at_n and default in at_n
            else ""
        )
        lines.append(
            f"- Median hypervolume, {default} at n vs random at 2n: **{verdict}**, "
            f"{hv[default]:.4f} vs {hv['random']:.4f} (per seed {default}/random: {each}{same})."
        )
    walls = ", ".join(f"{s['wall_s'] / 60:.1f}" for s in ours)
    verdict = "met" if all(s["wall_s"] <= 45 * 60 for s in ours) else "missed"
    refines = ", ".join(f"{s['refine_s'] / 60:.1f}" for s in ours)
    lines.append(
        f"- {ours[0]['n_trials'] if ours else '?'}-trial search within 45 min: **{verdict}** "
        f"({walls} min; refinement after it: {refines} min)."
    )
    dominated = [s["arm"] for s in ours if s["dominated_by_baseline"]]
    lines.append(
        "- No baseline dominates a front member at the same fine-tuning budget: "
        + (f"**missed** on {', '.join(dominated)}." if dominated else "**met** (every seed).")
    )
    return [*lines, ""]


def _aim_line(s: dict[str, Any]) -> str:
    """Met (with the member) or missed (with the nearest members in the 0.5 pt band)."""
    bar = f">= {AIM_SPEEDUP}x faster and >= {AIM_SMALLER}x smaller than int8 within 0.5 pt"
    if s["meets_aim"] is not None:
        met = f"{bar}: **met** by {_describe(s['meets_aim'])}"
        if s["meets_aim"].get("origin") != "warm start":  # sittings before origins: no origin
            return met
        sampled = s.get("meets_aim_sampled")
        return met + (
            f"; among plans the sampler chose: {_describe(sampled)}"
            if sampled
            else "; no plan the sampler chose meets it (only warm starts)"
        )
    if s["within_0.5pt"] is None:
        return f"{bar}: **missed**, no member within 0.5 pt of fp32"
    return (
        f"{bar}: **missed**; fastest in the band {_describe(s['within_0.5pt'])}; smallest "
        f"{_describe(s['smallest_within_0.5pt'])}"
    )


def _describe(p: dict[str, Any]) -> str:
    refined = "" if p["refines"] is None else f", refines {p['refines']}"
    refined += ", a warm start" if p.get("origin") == "warm start" else ""
    return (
        f"trial {p['trial']}{refined} ({p['test_accuracy']:.2%} test, "
        f"{p['speedup_vs_int8']:.2f}x faster, {p['smaller_vs_int8']:.2f}x smaller)"
        + (f" [{p['plan']}]" if p.get("plan") else "")
    )


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Verified test accuracy vs verified latency: every front, the baselines marked."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in summary["searches"]:
        pts = sorted(s["front"], key=lambda p: p["latency_ms"])
        fig.add_trace(
            go.Scatter(
                x=[p["latency_ms"] for p in pts],
                y=[p["test_accuracy"] for p in pts],
                mode="markers+lines",
                name=f"{s['arm']} front",
                text=[p["plan"] for p in pts],
            )
        )
    slowest = max(p["latency_ms"] for p in summary["baselines"].values())
    for kind, p in summary["baselines"].items():
        fig.add_trace(
            go.Scatter(
                x=[p["latency_ms"]],
                y=[p["test_accuracy"]],
                mode="markers+text",
                marker={"symbol": "x", "size": 12, "color": "black"},
                text=[kind],
                # labels lean inwards so the plot's edges do not cut them
                textposition="top right" if p["latency_ms"] < slowest / 2 else "top left",
                name=kind,
            )
        )
    fig.update_layout(
        title="Fashion-MNIST: verified test accuracy vs latency (fronts and baselines)",
        xaxis_title="latency, ms (ONNX Runtime, one pinned core)",
        yaxis_title="test accuracy",
        width=900,
        height=600,
    )
    try:
        fig.write_image(path.with_suffix(".png"))
        return path.with_suffix(".png")
    except Exception as exc:  # no Chrome for kaleido: keep an HTML file instead
        print(f"PNG export unavailable ({exc}); writing HTML", file=sys.stderr)
        fig.write_html(path.with_suffix(".html"), include_plotlyjs="cdn")
        return path.with_suffix(".html")


def write_report(summary: dict[str, Any], meta: dict[str, Any], stem: Path) -> None:
    """The markdown table and the plot, from the figures alone (``render`` redraws them)."""
    figure = plot(summary, stem)
    stem.with_suffix(".md").write_text(
        markdown(summary, meta) + f"\n![Pareto fronts]({figure.name})\n"
    )
    print(markdown(summary, meta))
    print(f"wrote {stem}.md, {figure} (figures in {stem}.json)")


def render(path: Path) -> None:
    """Rewrite a sitting's markdown and plot from its JSON: no study is opened, nothing is
    measured again (for a change of layout; the figures stay those of the sitting)."""
    data = json.loads(path.read_text())
    meta = data.pop("meta")
    write_report(data, meta, path.with_suffix(""))


def _cell(text: str) -> str:
    """Text for a markdown table cell: plan summaries separate their parts with '|'."""
    return text.replace("|", "\\|")


def _hv(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _minutes(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds / 60:.1f}"
