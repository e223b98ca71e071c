"""Benchmark (#19): a small ViT on Fashion-MNIST through the default path, and its Linear schemes.

One sitting, on the experiment's target (ONNX Runtime, one pinned core, batch 1):

1. the search of ``experiments/vit_fashion_mnist.yaml`` (``n`` plans on its rungs; baselines fp32,
   uniform static int8 and uniform dynamic int8: what ``quantize_static`` / ``quantize_dynamic``
   give a user, and the plain pipeline at 25% / 50% pruned: magnitude pruning, cross-entropy
   fine-tuning, static int8), reusing a finished study;
2. verification: every front member and every baseline re-timed side by side and scored on the
   held-out test split;
3. the issue's criteria: the fastest member within 1 pt of fp32 *test* accuracy against the
   fastest uniform int8 baseline (static or dynamic): speed and size ratios (targets 1.5x, 4x);
   and every front member held against the plain pipeline (dominated or not, on verified figures);
4. the same plan with its quantized Linear layers on each scheme (static int8, dynamic int8,
   MatMulNBits 4-bit block 32), fine-tuned alike for ``scheme_steps`` (default 60: latency and
   size do not depend on it), each timed beside fp32 by ``run_trial``: is 4-bit weight-only faster
   than int8 on this CPU, and by how much.

5. optionally (``long=1000 long_trials=41,54``), chosen plans fine-tuned longer than the top rung
   (promoted through ``autocompress.refine``), verified beside the rest: does a longer budget bring
   the fast pruned plans, ours and the plain pipeline's, into the 1 pt band?

Every row says what put its plan in the study (a baseline, a warm start, the sampler). A user's
own plan joins as a warm-start file (``search.warm_start``), e.g. the hand plan in
``benchmarks/plans/vit-attn4-mlp3-half.json`` (attention 4-bit, MLP 3-bit, half the heads and
MLP units, dynamic int8 kernels), which becomes trial 5 after the five baselines.

Run (opt-in; the reference ships in experiments/checkpoints, trained on a GPU):
    python benchmarks/vit.py n=36 search.executor=ray search.n_workers=2
    python benchmarks/vit.py n=36 search.executor=ray search.n_workers=2 \
        'search.warm_start=[uniform,../benchmarks/plans/vit-attn4-mlp3-half.json]' \
        long=1000 long_trials=4,5
Writes docs/benchmarks/vit-fmnist.{json,md}.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import autocompress
from autocompress.config import load_experiment
from autocompress.measure import this_cpu
from autocompress.plan import CompressionPlan
from autocompress.record import read_study
from autocompress.worker import Task, run_trial

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
INT8 = ("int8", "int8-dynamic")
PLAIN = ("plain-prune25", "plain-prune50")
SCHEMES = {
    "int8-static": (None, None),
    "int8-dynamic": ("dynamic", None),
    "nbits4/b32": ("nbits", 32),
}


def main(argv: list[str]) -> None:
    args = dict(
        a.split("=", 1) for a in argv if "=" in a and not a.startswith(("search.", "model."))
    )
    n = int(args.get("n", "24"))
    overrides = [f"search.n_trials={n}", *(a for a in argv if a.startswith(("search.", "model.")))]
    config = load_experiment(ROOT / "experiments" / "vit_fashion_mnist.yaml", overrides)
    result = _plain_at_top_rung(config, autocompress.search(config, progress=False))
    long = int(args.get("long", "0"))
    chosen = [int(t) for t in args.get("long_trials", "").split(",") if t]
    result, longer = _longer(config, result, chosen, long) if long else (result, [])
    rows, fp32_test = result.verify(sorted(set(_numbers(result)) | set(longer)))
    criteria = _criteria(result, rows, fp32_test)
    schemes = _schemes(result, criteria["member"], int(args.get("scheme_steps", "60")))
    data = {
        "cpu": this_cpu(),
        "command": "python benchmarks/vit.py " + " ".join(argv),
        "reference": result.front.reference,
        "fp32_test": fp32_test,
        "rows": [r.to_dict() for r in rows],
        "criteria": criteria,
        "schemes": schemes,
        "scheme_steps": int(args.get("scheme_steps", "60")),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vit-fmnist.json").write_text(json.dumps(data, indent=2, default=str))
    (OUT / "vit-fmnist.md").write_text(markdown(data))
    print(markdown(data))


def _plain_at_top_rung(config: Any, result: Any) -> Any:
    """The plain pipeline fine-tuned as long as our fully trained members: a user's afternoon
    at the same budget (promoted through ``autocompress.refine`` where the search did not)."""
    top = result.front.rungs[-1] if result.front.rungs else config.finetune.steps
    plain = [m.number for m in result.front.completed if m.baseline in PLAIN]
    return _longer(config, result, plain, top)[0]


def _longer(config: Any, result: Any, trials: list[int], steps: int) -> tuple[Any, list[int]]:
    """``trials``' plans fine-tuned for ``steps`` (once: a re-run finds them), their numbers."""
    from autocompress.front import plan_key

    every = result.front.completed + result.front.lower_rungs
    plans = {m.number: plan_key(m.plan) for m in every}
    unknown = sorted(set(trials) - set(plans))
    if unknown:
        raise SystemExit(f"long_trials: no completed trial {unknown} in the study; fix the list")
    have = {plans[m.number] for m in every if m.steps == steps}
    todo = [t for t in trials if plans[t] not in have]
    if todo:
        result = autocompress.refine(config, todo, steps=steps, progress=False)
    wanted = {plans[t] for t in trials}
    every = result.front.completed + result.front.lower_rungs
    return result, sorted(
        m.number for m in every if m.steps == steps and plan_key(m.plan) in wanted
    )


def _numbers(result: Any) -> list[int]:
    """The front's members and every baseline (dominated ones too: they are the yardstick)."""
    front = result.front
    numbers = {m.number for m in front.members}
    numbers |= {m.number for m in front.completed if m.baseline}
    return sorted(numbers)


def _criteria(result: Any, rows: list[Any], fp32_test: float) -> dict[str, Any]:
    """Fastest member within 1 pt of fp32 test accuracy vs the fastest uniform int8 baseline."""
    sizes = {m.number: m.size_bytes for m in result.front.completed}
    steps = {m.number: m.steps for m in result.front.completed}
    every = {m.number: m for m in result.front.completed + result.front.lower_rungs}
    # what put each row's plan in the study: a baseline, a warm start (uniform ladder, a user's
    # plan file), or the sampler; a promotion inherits its parent's kind
    kinds = {r.trial: _kind(every, r.trial) for r in rows}
    baselines = [r for r in rows if r.baseline in INT8]
    best_int8 = min(baselines, key=_latency_key)
    close = [r for r in rows if not r.baseline and r.test_accuracy >= fp32_test - 0.01]
    member = min(close, key=_latency_key) if close else None
    out: dict[str, Any] = {
        "fastest_int8": {
            "trial": best_int8.trial,
            "kind": best_int8.baseline,
            "ms": best_int8.verified_latency_ms,
            "bytes": sizes[best_int8.trial],
        },
        "member": None if member is None else member.trial,
        "steps": {r.trial: steps[r.trial] for r in rows},
        "kinds": kinds,
        "bytes": {r.trial: sizes[r.trial] for r in rows},
        "dominated_by_plain": _dominated_by_plain(rows, sizes),
    }
    if member is not None:
        slow, fast = _comparable(best_int8, member)
        out.update(
            member_test=member.test_accuracy,
            member_ms=member.verified_latency_ms,
            member_bytes=sizes[member.trial],
            member_steps=steps[member.trial],
            member_kind=kinds[member.trial],
            member_plan=every[member.trial].plan.summary(),
            speedup=slow / fast,
            smaller=sizes[best_int8.trial] / sizes[member.trial],
        )
    return out


def _kind(every: dict[int, Any], number: int) -> str:
    """baseline kind, ``warm start: <kind>`` or ``sampled``, following promotions to the
    trial that first ran the plan."""
    member = every[number]
    while member.parent is not None and member.parent in every:
        member = every[member.parent]
    if member.baseline:
        return str(member.baseline)
    return f"warm start: {member.warm_start}" if member.warm_start else "sampled"


def _dominated_by_plain(rows: list[Any], sizes: dict[int, int]) -> dict[int, int]:
    """Front member -> the plain-pipeline baseline that dominates it on verified figures
    (latency as the ratio to fp32 timed beside each, as the speedup compares it)."""
    plain = [r for r in rows if r.baseline in PLAIN]
    out = {}
    for r in rows:
        if r.baseline:
            continue
        for p in plain:
            lp, lr = _comparable(p, r)
            no_worse = (
                p.test_accuracy >= r.test_accuracy
                and lp <= lr
                and sizes[p.trial] <= sizes[r.trial]
            )
            better = (
                p.test_accuracy > r.test_accuracy or lp < lr or sizes[p.trial] < sizes[r.trial]
            )
            if no_worse and better:
                out[r.trial] = p.trial
                break
    return out


def _comparable(a: Any, b: Any) -> tuple[float, float]:
    """Both rows' ratios to fp32 when both were timed beside it (drift between two
    artifacts' turns cancels), else both milliseconds: never a ratio against milliseconds."""
    if math.isfinite(a.verified_ratio) and math.isfinite(b.verified_ratio):
        return float(a.verified_ratio), float(b.verified_ratio)
    return float(a.verified_latency_ms), float(b.verified_latency_ms)


def _latency_key(r: Any) -> float:
    """What "fastest" sorts by: the ratio to fp32 where it was timed."""
    return float(r.verified_ratio) if math.isfinite(r.verified_ratio) else r.verified_latency_ms


def _schemes(result: Any, number: int | None, steps: int) -> list[dict[str, Any]]:
    """The chosen member's plan with its quantized Linear layers on each scheme."""
    if number is None:
        return []
    member = result.front.pick(number=number, any_rung=True)
    task = Task.from_dict(dict(read_study(result.study).task))
    linear = {n for n in member.plan.quantized_layers if n != "patch"}
    out = []
    for name, (scheme, block) in SCHEMES.items():
        layers = {
            n: dataclasses.replace(
                p,
                weight_bits=(4 if scheme == "nbits" else 8) if n in linear else p.weight_bits,
                scheme=scheme if n in linear else None,
                block_size=block if n in linear else None,
            )
            for n, p in member.plan.layers.items()
        }
        plan = CompressionPlan(layers, dataclasses.replace(member.plan.distill, steps=steps))
        output = run_trial(plan.to_dict(), task.to_dict())
        r = output.result
        out.append(
            {
                "scheme": name,
                "val_accuracy": r.accuracy,
                "latency_ms": r.latency_ms,
                "latency_ratio": r.latency_ratio,
                "size_bytes": r.size_bytes,
                "deploy_bytes": r.deploy_bytes,
            }
        )
    return out


def markdown(data: dict[str, Any]) -> str:
    c = data["criteria"]
    lines = [
        "# ViT on Fashion-MNIST (#19)",
        "",
        f"CPU: {data['cpu']}. Command: `{data['command']}`. fp32 reference test accuracy "
        f"{data['fp32_test']:.2%}.",
        "",
        "| trial | kind | steps | test acc | verified ms | ratio to fp32 | bytes | dominated by |",
        "|---|---|---|---|---|---|---|---|",
    ]
    steps = {int(k): v for k, v in c.get("steps", {}).items()}
    kinds = {int(k): v for k, v in c.get("kinds", {}).items()}
    sizes = {int(k): v for k, v in c.get("bytes", {}).items()}
    dominated = {int(k): v for k, v in c.get("dominated_by_plain", {}).items()}
    for r in data["rows"]:
        t = r["trial"]
        lines.append(
            f"| {t} | {kinds.get(t, r['baseline'] or '')} | {steps.get(t, '')} | "
            f"{r['test_accuracy']:.2%} | {r['verified_latency_ms']:.4f} | "
            f"{r['verified_ratio']:.2f} | {sizes.get(t, 0):,} | {dominated.get(t, '')} |"
        )
    lines += ["", f"Fastest uniform int8 baseline: {c['fastest_int8']}."]
    if c.get("member") is not None:
        lines.append(
            f"Fastest member within 1 pt of fp32 test: trial {c['member']} "
            f"({c.get('member_kind', '?')}: {c.get('member_plan', '?')}; "
            f"{c['member_test']:.2%}, {c.get('member_steps')} steps), {c['speedup']:.2f}x "
            f"faster and {c['smaller']:.2f}x smaller than it (targets 1.5x, 4x)."
        )
    else:
        lines.append("No member within 1 pt of fp32 test accuracy.")
    lines.append(
        f"Front members dominated by the plain pipeline (test acc, verified ms, bytes): "
        f"{len(dominated)} of {sum(1 for r in data['rows'] if not r['baseline'])}."
    )
    if data["schemes"]:
        lines += [
            "",
            f"Same plan, quantized Linear layers on each scheme (fine-tuned "
            f"{data.get('scheme_steps', '?')} steps each, timed beside fp32):",
            "",
            "| scheme | val acc | ms | ratio to fp32 | packed bytes |",
            "|---|---|---|---|---|",
        ]
        for s in data["schemes"]:
            lines.append(
                f"| {s['scheme']} | {s['val_accuracy']:.2%} | {s['latency_ms']:.4f} | "
                f"{s['latency_ratio']:.2f} | {s['size_bytes']:,} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
