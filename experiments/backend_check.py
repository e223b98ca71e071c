"""Backend figures on the reference model: what one compression plan really buys.

Runs, through the same ``run_trial`` a search uses, the fp32 model, uniform int8 PTQ, and the
"later stages pruned 50% at 4 bits" plan (stem fp32, stage 1 int8, stages 2-3 at 4-bit weights
with half their channels removed, head int8) fine-tuned with KD at T = 1, 2, 4, 8 for the
experiment's step budget. Prints a markdown table (accuracy on the validation split, latency
and speed-up against the fp32 reference timed in the same sitting, size, trial wall time,
seconds per fine-tuning step, first and last KD loss) and writes it as JSON.

Run: python experiments/backend_check.py [experiments/fashion_mnist.yaml] [finetune.steps=200]
(about 5 minutes on 2 cores; opt-in, not part of the tests)
"""

from __future__ import annotations

import json
import sys
import time

from autocompress.config import load_experiment
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.study import experiment_task
from autocompress.worker import run_trial


def target_plan(layers: list[str], temperature: float) -> CompressionPlan:
    plan = {}
    for name in layers:
        if name.startswith(("layer2", "layer3")):
            plan[name] = LayerPlan(weight_bits=4, prune_ratio=0.5)
        elif name.startswith("stem"):
            plan[name] = LayerPlan(weight_bits=None)  # 1-channel int8 conv is slower than fp32
        else:
            plan[name] = LayerPlan(weight_bits=8)
    return CompressionPlan(layers=plan, distill=DistillPlan(temperature=temperature, alpha=0.7))


def main(argv: list[str]) -> None:
    path = argv[0] if argv and argv[0].endswith(".yaml") else "experiments/fashion_mnist.yaml"
    overrides = [a for a in argv if "=" in a] or ["finetune.steps=200"]
    config = load_experiment(path, overrides)
    reference, _, task = experiment_task(config)  # and its teacher, if it names one
    names = [
        n for n, m in reference.model.named_modules() if type(m).__name__ in ("Conv2d", "Linear")
    ]
    runs = [
        ("fp32", CompressionPlan.uniform(names, weight_bits=None)),
        ("int8 PTQ", CompressionPlan.uniform(names, weight_bits=8)),
    ]
    runs += [(f"pruned+4bit KD T={t:g}", target_plan(names, t)) for t in (1.0, 2.0, 4.0, 8.0)]
    rows = []
    for label, plan in runs:
        start = time.perf_counter()
        r = run_trial(plan.to_dict(), task.to_dict()).result
        ft = r.finetune
        rows.append(
            {
                "plan": label,
                "accuracy": r.accuracy,
                "latency_ms": r.latency_ms,
                "speedup": 1 / (r.latency_ratio or float("nan")),
                "size_bytes": r.size_bytes,
                "smaller": rows[0]["size_bytes"] / r.size_bytes if rows else 1.0,
                "wall_s": time.perf_counter() - start,
                "s_per_step": ft.seconds_per_step if ft else None,
                "first_loss": ft.first_loss if ft else None,
                "last_loss": ft.last_loss if ft else None,
                "params": r.params,
                "fingerprint": r.fingerprint_key,
            }
        )
        print(_row(rows[-1]), flush=True)
    out = config.run_path.parent / "backend_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"command": " ".join(["python", *sys.argv]), "rows": rows}, indent=2)
    )
    print(f"\nreference fp32 val accuracy (torch): {reference.val_accuracy:.2%}; written {out}")


def _row(r: dict) -> str:
    loss = f"{r['first_loss']:.3f} -> {r['last_loss']:.3f}" if r["first_loss"] is not None else "-"
    step = f"{r['s_per_step']:.3f}" if r["s_per_step"] else "-"
    return (
        f"| {r['plan']:22s} | {r['accuracy']:.2%} | {r['latency_ms']:.3f} ms | "
        f"{r['speedup']:.2f}x | {r['size_bytes'] / 1e3:.1f} kB | {r['smaller']:.1f}x | "
        f"{r['wall_s']:.0f} s | {step} | {loss} |"
    )


if __name__ == "__main__":
    print("| plan | val acc | latency | speed-up | size | smaller | wall | s/step | KD loss |")
    print("|---|---|---|---|---|---|---|---|---|")
    main(sys.argv[1:])
