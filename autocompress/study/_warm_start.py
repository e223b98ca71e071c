"""Plans enqueued before the sampler's own (``search.warm_start``).

``uniform`` (the default): the uniform plans a user would try by hand, every layer at the same
weight bits and pruning ratio as far as its rule allows, in this order:

    (8 bits, 25% pruned), (4, 25%), (4, unpruned), (8, 50%), (4, 50%)

Why: a model-based sampler learns from the trials it has. On the reference model only about one
random plan in ten clears the accuracy floor after the short fine-tuning budget, so after its
random start-up a multi-objective TPE search often held no feasible trial but the fp32 and int8
baselines; it then sampled next to them (few pruned channels, fp32 layers kept) and never reached
the fast end: a 40-trial search's hypervolume was below random search's at the same 40 trials
(docs/benchmarks, this machine, seed 0: 0.5660 vs 0.6049). Uniform int8 with 25% of the channels
removed cleared the floor there (89.98% val, 0.27x fp32 latency), so the sampler starts from
feasible points across the latency and size range, and the front holds the hand-picked uniform
plans for comparison. They take at most a quarter of the budget left after the baselines; the
first ones in the order above when that is less than the whole list.

``sensitivity``: low bits for the least sensitive layers first (``_sensitivity.py``).

A path to a plan file (``.json``, ``.yaml``: a ``CompressionPlan`` as ``plan.to_dict()`` writes
it, or an exported member's ``manifest.json``, whose ``plan`` it takes): the plan a user already
runs, or a member of another study of this model, measured in this study beside the sampler's
plans. Plan files come first and are never dropped by the quarter-of-the-budget cap (the user
asked for them); a plan the space cannot make is rejected before anything is written.

Every warm start is an ordinary trial (it counts against ``n_trials``), marked with the user
attribute ``warm_start`` = its kind (``plan`` for a plan file); plans equal to a baseline or to
each other are enqueued once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from autocompress.config import GENERATED_WARM_STARTS, NONE_BITS, Range
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.study._setup import SearchSetup
from autocompress.study._space import BoundSpace, Spec, allows

UNIFORM_LADDER = ((8, 0.25), (4, 0.25), (4, 0.0), (8, 0.5), (4, 0.5))  # (bits, ratio)
BUDGET_SHARE = 4  # warm starts take at most 1 / BUDGET_SHARE of the non-baseline budget


def warm_start_params(setup: SearchSetup, taken: list[dict[str, Any]]) -> list[tuple[str, dict]]:
    """(kind, params) to enqueue after the baselines, none equal to ``taken`` or to each other."""
    search = setup.search
    room = max(0, search.n_trials - len(search.baselines)) // BUDGET_SHARE
    files = [w for w in search.warm_start if w not in GENERATED_WARM_STARTS]
    mine = [
        ("plan", plan_params(setup.space, read_plan(f), f"search.warm_start: {f}")) for f in files
    ]
    if len(mine) > search.n_trials - len(search.baselines):
        raise ConfigError(
            f"search.warm_start: {len(mine)} plan files but room for "
            f"{search.n_trials - len(search.baselines)} trials after the baselines; raise "
            "search.n_trials or list fewer plans"
        )
    candidates: list[tuple[str, dict[str, Any]]] = []
    if "uniform" in search.warm_start:
        candidates += [("uniform", setup.space.uniform_params(b, r)) for b, r in UNIFORM_LADDER]
    if "sensitivity" in search.warm_start and setup.sensitivity:
        from autocompress.study._sensitivity import warm_start_params as guided

        candidates += [("sensitivity", p) for p in guided(setup.space, setup.sensitivity)]
    seen = list(taken)
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, params in mine:
        if params not in seen:
            seen.append(params)
            out.append((kind, params))
    room += len(out)
    for kind, params in candidates:
        if params in seen or len(out) >= room:
            continue
        seen.append(params)
        out.append((kind, params))
    return out


def plan_params(space: BoundSpace, plan: CompressionPlan, source: str) -> dict[str, Any]:
    """Parameter values that make ``plan`` (a user's own plan), for enqueueing.

    Every layer of the space needs an entry whose bits, ratio and scheme its rule allows, and
    layers that share a parameter need equal values; the first violation raises a one-line
    ``ConfigError`` naming ``source``, the layer and the fix. The plan's distillation is kept
    where the space allows it (the space's fixed values otherwise); its step budget is not: the
    study gives the plan its own.
    """
    missing = [s.layer for s in space.slots if s.layer not in plan.layers]
    extra = sorted(set(plan.layers) - set(space.layer_names))
    if missing or extra:
        which = f"lacks layer {missing[0]!r}" if missing else f"has no layer {extra[0]!r}"
        raise ConfigError(
            f"{source}: the plan {which} of this model's search space; a warm-start plan "
            "names every layer the space covers (export one from a study of this model)"
        )
    params: dict[str, Any] = {}
    for slot in space.slots:
        layer, rule = plan.layers[slot.layer], space.rule_of(slot.layer)
        bits = NONE_BITS if layer.weight_bits is None else layer.weight_bits
        bits = space.uncapped(rule.bit_choices, slot.bits_param, bits)  # 7 stored for an 8
        wanted: list[tuple[str, Any, Spec]] = [(slot.bits_param, bits, rule.bit_choices)]
        if slot.prune_param is not None:
            wanted.append((slot.prune_param, float(layer.prune_ratio), rule.prune))
        elif layer.prune_ratio:
            raise ConfigError(f"{source}: layer {slot.layer!r} {_never_pruned(layer, rule)}")
        if layer.weight_bits is not None:
            choices = rule.scheme if slot.scheme_param is not None else rule.scheme[:1]
            wanted.append((slot.scheme_param or "scheme", _scheme_choice(layer), choices))
        for name, value, spec in wanted:
            kind = name.split(".")[0]
            if not allows(spec, value):
                raise ConfigError(
                    f"{source}: layer {slot.layer!r} has {kind} {value!r}, which its rule does "
                    f"not allow ({_spec_text(spec)}); change the plan or add the value to the rule"
                )
            if params.setdefault(name, value) != value:  # only shared parameters get here
                raise ConfigError(
                    f"{source}: layer {slot.layer!r} has {kind} {value!r} but the layers sharing "
                    f"its parameter {name!r} have {params[name]!r}; give them equal values"
                )
    params = {k: v for k, v in params.items() if k not in ("prune", "scheme")}
    distill = space.space.config.distill
    if distill is not None:
        params.update(space.fixed_distill_params(distill))
        for name in ("temperature", "alpha") if plan.distill is not None else ():
            value = float(getattr(plan.distill, name))
            if f"distill.{name}" in params and allows(getattr(distill, name), value):
                params[f"distill.{name}"] = value
    return space.encode(params)


def _never_pruned(layer: LayerPlan, rule: Any) -> str:
    """Why a layer without a pruning parameter cannot take the plan's ratio, and the fix."""
    if rule.prunes:  # its rule prunes, this layer not: the head, or channels kept whole
        return (
            f"has prune {layer.prune_ratio!r}, but this model never prunes it (the classifier "
            "head, or channels a residual stream or attention heads keep whole); set its "
            "prune_ratio to 0.0 in the plan"
        )
    return (
        f"has prune {layer.prune_ratio!r}, but its rule has no prune choices; set its "
        "prune_ratio to 0.0 in the plan, or give the rule prune choices"
    )


def _scheme_choice(layer: LayerPlan) -> str:
    """A quantized layer's scheme as a space spells it (``parse_scheme``'s inverse)."""
    if layer.scheme is None:
        return "static"
    return f"{layer.scheme}/{layer.block_size}" if layer.block_size else layer.scheme


def _spec_text(spec: Spec) -> str:
    return f"{spec.low}..{spec.high}" if isinstance(spec, Range) else f"choices {list(spec)}"


def read_plan(path: str | Path) -> CompressionPlan:
    """A plan file (JSON or YAML: a plan, or an export's manifest holding one under ``plan``);
    one-line errors for a missing, unreadable or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search.warm_start: {path}: no such plan file; check the path")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"search.warm_start: {path}: not readable as a plan ({type(exc).__name__}); "
            "give an export's manifest.json, or a plan's JSON/YAML (plan.to_dict())"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("plan"), dict):
        data = data["plan"]
    if not isinstance(data, dict):
        raise ConfigError(f"search.warm_start: {path}: expected a plan mapping (layers: ...)")
    try:
        return CompressionPlan.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"search.warm_start: {path}: {exc}") from None
