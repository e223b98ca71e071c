"""Gradual structured pruning: the plan's widths reached in cuts during the float phase.

One-shot pruning removes half of a layer's channels at once and leaves fine-tuning to recover
from the drop. Gradual pruning (Zhu & Gupta 2017's cubic schedule, applied to whole channels)
makes ``finetune.prune_stages`` cuts over the first ``finetune.prune_span`` of the float phase,
so the network adapts between cuts and each cut scores channels on weights that have trained
since the last. The last cut lands exactly on the one-shot plan's widths (found by pruning a
copy), so latency and size, which depend on the widths alone, are the plan's; only which
channels survive, and the trained weights, differ.

Plans without a teacher term (the plain-pipeline baselines: a user's torch-pruning run) and
plans with no fine-tuning (rung 0, PTQ) are always pruned in one shot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from autocompress.plan import CompressionPlan


@dataclass(frozen=True)
class GradualPruning:
    """Widths before and after, and each cut's step in the float phase and share of removal."""

    start: dict[str, int]
    final: dict[str, int]
    steps: tuple[int, ...]  # the float-phase step each cut precedes (the first is 0)
    shares: tuple[float, ...]  # share of the removal done after each cut (the last is 1)

    def cut(self, model: Any, i: int, example: Any, head: str | None, round_to: int) -> None:
        """Prune ``model`` in place to ``shares[i]`` of the way from ``start`` to ``final``.

        Intermediate widths round to ``round_to`` like the plan's own; a layer never goes below
        its final width, and the last cut asks each layer for exactly its final width.
        """
        from autocompress.backend import prune_channels

        now = widths(model)
        ratios = {}
        for name, goal in self.final.items():
            aim = max(goal, self.start[name] - self.shares[i] * (self.start[name] - goal))
            if aim < now[name]:
                ratios[name] = 1.0 - aim / now[name]
        if ratios:
            prune_channels(model, ratios, example, head=head, round_to=round_to)


def schedule(stages: int, span: int) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``stages`` cuts spread evenly over ``span`` steps; the share of the removal done after cut
    i is ``1 - (1 - (i + 1) / stages) ** 3``: most of it early, while the rate is high, and
    smaller cuts as the network nears its final widths (Zhu & Gupta's cubic schedule)."""
    stages = max(1, min(stages, span))
    steps = tuple(round(i * span / stages) for i in range(stages))
    shares = tuple(1.0 - (1.0 - (i + 1) / stages) ** 3 for i in range(stages))
    return steps, shares


def gradual_pruning(
    model: Any,
    plan: CompressionPlan,
    example: Any,
    head: str | None,
    settings: tuple[int, float],
    float_steps: int,
    round_to: int,
) -> GradualPruning | None:
    """The cuts for this plan, or None where it is pruned in one shot: nothing to prune, one
    stage asked for, no float steps to spread them over, or no teacher term (the plain
    pipeline's one-shot torch-pruning run is what it stands for)."""
    from autocompress.backend import prune_channels, teaches

    stages, span_share = settings
    span = int(float_steps * span_share)
    if stages <= 1 or span < 2 or not plan.pruned_layers or not teaches(plan.distill):
        return None
    target = copy.deepcopy(model)
    prune_channels(target, plan.pruned_layers, example, head=head, round_to=round_to)
    steps, shares = schedule(stages, span)
    return GradualPruning(widths(model), widths(target), steps, shares)


def widths(model: Any) -> dict[str, int]:
    """Each compressible layer's output width."""
    from torch import nn

    from autocompress.backend import COMPRESSIBLE

    return {
        n: int(m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, COMPRESSIBLE)
    }
