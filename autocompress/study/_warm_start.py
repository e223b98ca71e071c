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

Every warm start is an ordinary trial (it counts against ``n_trials``), marked with the user
attribute ``warm_start`` = its kind; plans equal to a baseline or to each other are enqueued
once.
"""

from __future__ import annotations

from typing import Any

from autocompress.study._setup import SearchSetup

UNIFORM_LADDER = ((8, 0.25), (4, 0.25), (4, 0.0), (8, 0.5), (4, 0.5))  # (bits, ratio)
BUDGET_SHARE = 4  # warm starts take at most 1 / BUDGET_SHARE of the non-baseline budget


def warm_start_params(setup: SearchSetup, taken: list[dict[str, Any]]) -> list[tuple[str, dict]]:
    """(kind, params) to enqueue after the baselines, none equal to ``taken`` or to each other."""
    search = setup.search
    room = max(0, search.n_trials - len(search.baselines)) // BUDGET_SHARE
    candidates: list[tuple[str, dict[str, Any]]] = []
    if "uniform" in search.warm_start:
        candidates += [("uniform", setup.space.uniform_params(b, r)) for b, r in UNIFORM_LADDER]
    if "sensitivity" in search.warm_start and setup.sensitivity:
        from autocompress.study._sensitivity import warm_start_params as guided

        candidates += [("sensitivity", p) for p in guided(setup.space, setup.sensitivity)]
    seen = list(taken)
    out: list[tuple[str, dict[str, Any]]] = []
    for kind, params in candidates:
        if params in seen or len(out) >= room:
            continue
        seen.append(params)
        out.append((kind, params))
    return out
