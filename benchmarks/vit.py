"""Benchmark (#19): a small ViT on Fashion-MNIST through the default path, and its Linear schemes.

One sitting, on the experiment's target (ONNX Runtime, one pinned core, batch 1):

1. the search of ``experiments/vit_fashion_mnist.yaml`` (``n`` plans; baselines fp32, uniform
   static int8 and uniform dynamic int8: what ``quantize_static`` / ``quantize_dynamic`` give a
   user), reusing a finished study;
2. verification: every front member and every baseline re-timed side by side and scored on the
   held-out test split;
3. the issue's criteria: the fastest member within 1 pt of fp32 *test* accuracy against the
   fastest uniform int8 baseline (static or dynamic): speed and size ratios (targets 1.5x, 4x);
4. the same plan with its quantized Linear layers on each scheme (static int8, dynamic int8,
   MatMulNBits 4-bit block 32), fine-tuned alike, each timed beside fp32 by ``run_trial``: is
   4-bit weight-only faster than int8 on this CPU, and by how much.

Run (opt-in; the reference trains once, ~15 min on 2 quiet cores; ~25 s per trial):
    python benchmarks/vit.py n=24
Writes docs/benchmarks/vit-fmnist.{json,md}.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import autocompress
from autocompress.config import load_experiment
from autocompress.plan import CompressionPlan
from autocompress.record import read_study
from autocompress.worker import Task, run_trial

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"
INT8 = ("int8", "int8-dynamic")
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
    result = autocompress.search(config, progress=False)
    rows, fp32_test = result.verify(_numbers(result))
    criteria = _criteria(result, rows, fp32_test)
    schemes = _schemes(result, criteria["member"])
    data = {
        "cpu": _cpu(),
        "command": "python benchmarks/vit.py " + " ".join(argv),
        "reference": result.front.reference,
        "fp32_test": fp32_test,
        "rows": [r.to_dict() for r in rows],
        "criteria": criteria,
        "schemes": schemes,
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vit-fmnist.json").write_text(json.dumps(data, indent=2, default=str))
    (OUT / "vit-fmnist.md").write_text(markdown(data))
    print(markdown(data))


def _numbers(result: Any) -> list[int]:
    """The front's members and every baseline (dominated ones too: they are the yardstick)."""
    front = result.front
    numbers = {m.number for m in front.members}
    numbers |= {m.number for m in front.completed if m.baseline}
    return sorted(numbers)


def _criteria(result: Any, rows: list[Any], fp32_test: float) -> dict[str, Any]:
    """Fastest member within 1 pt of fp32 test accuracy vs the fastest uniform int8 baseline."""
    sizes = {m.number: m.size_bytes for m in result.front.completed}
    baselines = [r for r in rows if r.baseline in INT8]
    best_int8 = min(baselines, key=lambda r: r.verified_latency_ms)
    close = [r for r in rows if not r.baseline and r.test_accuracy >= fp32_test - 0.01]
    member = min(close, key=lambda r: r.verified_latency_ms) if close else None
    out: dict[str, Any] = {
        "fastest_int8": {
            "trial": best_int8.trial,
            "kind": best_int8.baseline,
            "ms": best_int8.verified_latency_ms,
            "bytes": sizes[best_int8.trial],
        },
        "member": None if member is None else member.trial,
    }
    if member is not None:
        out.update(
            member_test=member.test_accuracy,
            member_ms=member.verified_latency_ms,
            member_bytes=sizes[member.trial],
            speedup=best_int8.verified_latency_ms / member.verified_latency_ms,
            smaller=sizes[best_int8.trial] / sizes[member.trial],
        )
    return out


def _schemes(result: Any, number: int | None) -> list[dict[str, Any]]:
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
        plan = CompressionPlan(layers, member.plan.distill)
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
        "| trial | baseline | test acc | verified ms | ratio to fp32 |",
        "|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['trial']} | {r['baseline'] or ''} | {r['test_accuracy']:.2%} | "
            f"{r['verified_latency_ms']:.4f} | {r['verified_ratio']:.2f} |"
        )
    lines += ["", f"Fastest uniform int8 baseline: {c['fastest_int8']}."]
    if c.get("member") is not None:
        lines.append(
            f"Fastest member within 1 pt of fp32 test: trial {c['member']} "
            f"({c['member_test']:.2%}), {c['speedup']:.2f}x faster and {c['smaller']:.2f}x "
            "smaller than it (targets 1.5x, 4x)."
        )
    else:
        lines.append("No member within 1 pt of fp32 test accuracy.")
    if data["schemes"]:
        lines += [
            "",
            "Same plan, quantized Linear layers on each scheme (timed beside fp32):",
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


def _cpu() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("Model name")
        )
        return f"{name}, {platform.machine()}"
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


if __name__ == "__main__":
    main(sys.argv[1:])
