"""Recipe study: our fine-tuning against what a user runs without us, same widths and steps.

For each plan (uniform 8-bit + 25% pruned, 8-bit + 50%, 4-bit + 50%, and three mixed plans drawn
with a fixed seed) x fine-tuning budget x seed, every recipe variant runs the same worker a search
runs (``run_trial``: prune, fine-tune, realize, measure) and its deployable is re-loaded and
scored on the held-out test split:

- ``plain``: ``CompressionPlan.plain()``: torch-pruning L2 magnitude at the plan's widths
  (round_to 8, head kept), cross-entropy only, BatchNorm live, SGD with cosine decay, then int8
  post-training quantization (per-channel symmetric weights, MinMax activations: ONNX Runtime's
  ``quantize_static``, measured equal to ours within 0.1 pt in FINDINGS), at
  ``finetune.plain_lr`` (the afternoon's 0.01 in the CNN experiments). The user's afternoon.
- the named variants: our recipe with ``finetune.*`` / ``distill.*`` settings (``variants=``);
  a variant named ``plain-*`` runs the plain pipeline with its settings instead (e.g.
  ``plain-lr4:plain_lr=0.04``: the afternoon at another rate, to see what tuning it buys);
  ``teacher=reference`` distils from the reference although the experiment names a
  ``finetune.teacher`` (``variants='ours:;ref:teacher=reference'``: both teachers, one sitting).

Latency is the trial's own (timed beside fp32 in the same sitting); sizes are the deployable's
file bytes and the packed k-bit artifact's bytes. Rows, medians over seeds and the difference to
``plain`` go to docs/benchmarks/recipe-<tag>.{md,json}.

Run (opt-in; minutes per 1000-step row on 2 cores):
    python benchmarks/recipe.py experiments/fashion_mnist.yaml model.train.epochs=12 \
        budgets=60,1000 seeds=0,1,2 tag=fmnist
    python benchmarks/recipe.py ... variants='qat1:qat_fraction=1;qat25:qat_fraction=0.25'
    python benchmarks/recipe.py ... variants='ours:;plain-lr4:plain_lr=0.04'
    python benchmarks/recipe.py ... plans=4b-62.5% budgets=1000,3000   (any uniform plan)
    python benchmarks/recipe.py ... plain=0 variants=f5:feature_weight=5 \
        with=docs/benchmarks/recipe-fmnist-xeon-3seeds.json   (a stored study's rows beside)
"""

from __future__ import annotations

import dataclasses
import io
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from autocompress.config import load_experiment
from autocompress.measure import this_cpu, top1_accuracy
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.runtimes import get_runtime, widest_exact_bits
from autocompress.study import experiment_task
from autocompress.worker import Task, run_trial, trial_context

OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks"
DEFAULT_VARIANTS = "ours:"  # the experiment's own recipe


Settings = dict[str, float | str]


def parse_variants(text: str) -> dict[str, Settings]:
    """``name:key=value,key=value;name2:...`` -> {name: {key: value}} (numbers as floats,
    words such as ``optimizer=adamw`` as strings)."""
    out: dict[str, Settings] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, settings = part.partition(":")
        pairs = (kv.split("=", 1) for kv in filter(None, settings.split(",")))
        out[name] = {k.strip(): _value(v.strip()) for k, v in pairs}
    return out


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def study_plans(names: list[str], head: str | None, seed: int = 0) -> dict[str, CompressionPlan]:
    """The uniform plans a user would try, and three mixed ones (fixed seed)."""

    def uniform(bits: int, ratio: float) -> CompressionPlan:
        return CompressionPlan({n: LayerPlan(bits, 0.0 if n == head else ratio) for n in names})

    plans = {"8b-25%": uniform(8, 0.25), "8b-50%": uniform(8, 0.5), "4b-50%": uniform(4, 0.5)}
    rng = random.Random(seed)
    for i in range(3):
        layers = {
            n: LayerPlan(rng.choice((4, 6, 8)), 0.0 if n == head else rng.choice((0.0, 0.25, 0.5)))
            for n in names
        }
        plans[f"mixed-{i + 1}"] = CompressionPlan(layers)
    return plans


def uniform_plan(label: str, names: list[str], head: str | None) -> CompressionPlan:
    """``<bits>b-<percent>%`` (e.g. ``4b-62.5%``): every layer at those bits, every layer but the
    head pruned by that share, so deeper cuts than the study's own plans can be asked for."""
    bits, _, ratio = label.removesuffix("%").partition("b-")
    try:
        plan = {n: LayerPlan(int(bits), 0.0 if n == head else float(ratio) / 100) for n in names}
    except ValueError:
        raise SystemExit(
            f"plans: {label!r} is neither a study plan nor <bits>b-<percent>% (e.g. 4b-62.5%)"
        ) from None
    return CompressionPlan(plan)


def recipe_plan(plan: CompressionPlan, variant: str, settings: Settings) -> CompressionPlan:
    if variant == "plain" or variant.startswith("plain-"):
        return plan.plain()
    defaults = DistillPlan()  # the recipe's own T and alpha unless a variant sets them
    distill = DistillPlan(
        temperature=float(settings.get("temperature", defaults.temperature)),
        alpha=float(settings.get("alpha", defaults.alpha)),
    )
    return dataclasses.replace(plan, distill=distill)


def recipe_task(task: Task, budget: int, seed: int, settings: Settings) -> Task:
    """The task of one row. ``teacher=reference`` distils from the reference although the
    experiment names a ``finetune.teacher``: both teachers side by side in one sitting."""
    known = {f.name for f in dataclasses.fields(task.finetune)} - {"teacher"}
    # each setting in its field's type (numbers parse as floats; counts are integers)
    overrides = {k: type(getattr(task.finetune, k))(v) for k, v in settings.items() if k in known}
    finetune = dataclasses.replace(task.finetune, steps=budget, seed=seed, **overrides)
    teacher = settings.get("teacher")
    if teacher is None:
        return dataclasses.replace(task, finetune=finetune)
    if teacher != "reference":
        sys.exit(f"variants: teacher={teacher!r}; the one choice is teacher=reference")
    finetune = dataclasses.replace(finetune, teacher=None)
    return dataclasses.replace(task, finetune=finetune, teacher_checkpoint=None)


def run_row(
    task: Task, plan: CompressionPlan, label: str, variant: str, seed: int
) -> dict[str, Any]:
    start = time.perf_counter()
    plan = plan.capped(widest_exact_bits(task.target))  # as a search does: 7 where int8 saturates
    output = run_trial(plan.to_dict(), task.to_dict())
    ctx = trial_context(task)
    deployable = get_runtime(task.target.runtime).load(output.artifact, task.target)
    assert ctx.data.test is not None
    r = output.result
    return {
        "plan": label,
        "variant": variant,
        "budget": task.finetune.steps,
        "seed": seed,
        "val_accuracy": r.accuracy,
        "test_accuracy": top1_accuracy(deployable.predict, ctx.data.test()),
        "latency_ms": r.latency_ms,
        "latency_ratio": r.latency_ratio,
        "deploy_bytes": r.deploy_bytes,
        "packed_bytes": r.size_bytes,
        "wall_s": time.perf_counter() - start,
        "plan_summary": plan.summary(),
    }


def _stored_rows(path: str | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``with=<recipe json>``: that study's rows for the plans, budgets and seeds run here and
    variants not run here (e.g. its plain and ours rows beside a new variant run with plain=0).
    Fair only from the same recipe code and CPU model, where rows reproduce: check one."""
    if path is None:
        return []
    ran = {(r["plan"], r["budget"], r["seed"]) for r in rows}
    mine = {r["variant"] for r in rows}
    return [
        r
        for r in json.loads(Path(path).read_text())["rows"]
        if (r["plan"], r["budget"], r["seed"]) in ran and r["variant"] not in mine
    ]


def summarise(rows: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """Median test accuracy over seeds per (plan, budget, variant), and each variant - plain."""
    out = []
    for plan, budget in sorted(
        {(r["plan"], r["budget"]) for r in rows}, key=lambda k: (k[1], k[0])
    ):
        line: dict[str, Any] = {"plan": plan, "budget": budget}
        for v in ["plain", *variants]:
            accs = [
                r["test_accuracy"]
                for r in rows
                if (r["plan"], r["budget"], r["variant"]) == (plan, budget, v)
            ]
            line[v] = statistics.median(accs) if accs else None
        for v in variants:
            if line[v] is not None and line["plain"] is not None:
                line[f"{v}-plain"] = line[v] - line["plain"]
        out.append(line)
    return out


def _teacher_line(config: Any, teacher: Any) -> str:
    """Who the students distil from, when it is not the reference (``finetune.teacher``), and
    what training it cost: the plain pipeline has no teacher, so a gain over it is only fair
    with the teacher's extra training stated beside it."""
    spec = config.finetune.teacher
    if spec is None:
        return ""
    meta = teacher.meta
    cost = meta.get("train_seconds")
    trained = "" if cost is None else f", trained in {cost:.0f} s on {meta.get('trained_on')}"
    return (
        f"; teacher {spec.name} {spec.kwargs} ({meta.get('params')} parameters), "
        f"{spec.train.epochs:g} epochs{', augmented' if spec.train.augment else ''}{trained}, "
        f"val {teacher.val_accuracy:.2%}, test {teacher.test_accuracy:.2%}"
    )


def markdown(summary: list[dict[str, Any]], variants: list[str], info: dict[str, Any]) -> str:
    head = ["plan", "steps", "plain", *variants, *(f"{v} - plain" for v in variants)]
    lines = [
        f"# Recipe study ({info['tag']})",
        "",
        f"Reference: {info['reference']}. CPU: {info.get('cpu', 'not recorded')}. "
        f"Test accuracy on the held-out split, median over seeds "
        f"{info['seeds']}; variants: {info['variants']}. Command: `{info['command']}`"
        + (f" Also {info['stored']} (same CPU model)." if "stored" in info else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for s in summary:
        cells = [s["plan"], str(s["budget"])]
        cells += [_pct(s[v]) for v in ["plain", *variants]]
        cells += [_pts(s.get(f"{v}-plain")) for v in variants]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _pts(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.2f} pt"


def main(argv: list[str]) -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):  # redirected to a log: each row as it lands
        sys.stdout.reconfigure(line_buffering=True)
    args = dict(
        a.split("=", 1)
        for a in argv
        if "=" in a and not a.startswith(("model.", "data.", "finetune.", "target."))
    )
    overrides = [a for a in argv if a.startswith(("model.", "data.", "finetune.", "target."))]
    path = next((a for a in argv if a.endswith(".yaml")), "experiments/fashion_mnist.yaml")
    budgets = [int(b) for b in args.get("budgets", "60").split(",")]
    seeds = [int(s) for s in args.get("seeds", "0").split(",")]
    variants = parse_variants(args.get("variants", DEFAULT_VARIANTS))
    # plain=0: variants only, where the plain rows of these plans, budgets and seeds are stored
    # from the same CPU model (with=): rows reproduce there (the Xeon study's 60-step rows came
    # back bit-identical, a 1000-step row within 0.02 pt: its logit table filled differently)
    plain = args.get("plain", "1") != "0"
    config = load_experiment(path, overrides)
    reference, teacher, task = experiment_task(config)  # teacher: finetune.teacher, if set
    ctx = trial_context(task)
    plans = study_plans([layer.name for layer in ctx.layers], ctx.head)
    if "plans" in args:
        names = [layer.name for layer in ctx.layers]
        plans = {
            k: plans.get(k) or uniform_plan(k, names, ctx.head) for k in args["plans"].split(",")
        }
    rows = []
    for budget in budgets:
        for label, plan in plans.items():
            for seed in seeds:
                for variant, settings in (({"plain": {}} if plain else {}) | variants).items():
                    row = run_row(
                        recipe_task(task, budget, seed, settings),
                        recipe_plan(plan, variant, settings),
                        label,
                        variant,
                        seed,
                    )
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    stored = _stored_rows(args.get("with"), rows)
    info = {
        "tag": args.get("tag", "fmnist"),
        "reference": f"{config.model.name} {config.model.kwargs}, {config.model.train.epochs:g} "
        f"epochs, val {reference.val_accuracy:.2%}, test {reference.test_accuracy:.2%}"
        + _teacher_line(config, teacher),
        "seeds": seeds,
        "cpu": this_cpu(),
        "variants": {k: v for k, v in variants.items()},
        "command": "python benchmarks/recipe.py " + " ".join(argv),
    }
    if stored:
        info["stored"] = f"{len(stored)} rows from {args['with']}"
    names = list(
        dict.fromkeys([*(r["variant"] for r in stored if r["variant"] != "plain"), *variants])
    )
    rows = stored + rows
    summary = summarise(rows, names)
    OUT.mkdir(parents=True, exist_ok=True)
    stem = OUT / f"recipe-{info['tag']}"
    stem.with_suffix(".json").write_text(
        json.dumps({**info, "rows": rows, "summary": summary}, indent=2)
    )
    stem.with_suffix(".md").write_text(markdown(summary, names, info))
    print(markdown(summary, names, info))


if __name__ == "__main__":
    main(sys.argv[1:])
