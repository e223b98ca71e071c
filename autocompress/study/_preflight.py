"""Before the first trial: realize the space's most compressed plan once, so a failure that would
recur on every plan is reported once, with its layer and a fix, and nothing is stored."""

from __future__ import annotations

from autocompress.config import parse_scheme
from autocompress.errors import UnsupportedPlanError
from autocompress.plan import CompressionPlan, LayerPlan
from autocompress.study._setup import SearchSetup
from autocompress.study._space import BoundSpace, _at_most, _highest


def check_space(setup: SearchSetup) -> None:
    """Raise :class:`UnsupportedPlanError` if one of the space's most compressed plans (one per
    kernel scheme it offers) cannot be made into a working deployable (``worker.dry_run``:
    seconds each, no fine-tuning, no timing), and :class:`ConfigError` if a feature term is asked
    for that no layer of this model and teacher could carry (``worker.check_feature_term``)."""
    from autocompress.worker import check_feature_term, dry_run

    check_feature_term(setup.task.to_dict(), objects=setup.objects)
    for plan in extreme_plans(setup.space):
        if not plan.quantized_layers and not plan.pruned_layers:
            continue  # an fp32-only space: the reference itself is the only plan
        try:
            dry_run(plan.to_dict(), setup.task.to_dict(), objects=setup.objects)
        except UnsupportedPlanError as exc:
            raise UnsupportedPlanError(
                f"the space's most compressed plan{_on(plan)} cannot be realized on this model: "
                f"{exc}; leave that layer out in the space (bits: [none] and/or prune: [0.0], or "
                "drop the scheme) or change the model, then run again (no study was written)"
            ) from None


def _on(plan: CompressionPlan) -> str:
    kinds = sorted({s for s, _ in plan.layer_schemes.values()})
    return f" (Linear layers on {', '.join(kinds)})" if kinds else ""


def extreme_plans(space: BoundSpace) -> list[CompressionPlan]:
    """The most compressed plans ``space`` allows: every layer at its fewest integer bits (fp32
    where its rule allows nothing else) and its largest pruning ratio, shared parameters set
    once; first on each rule's first kernel scheme, then for each other scheme the space
    offers: on every layer whose rule allows it, and on every other such layer with the rest
    static. Kernels mixed in one graph can still fail where these do not (q on MatMulNBits
    beside static k and v did, in ORT's calibrator, and only that mix): the dry run covers the
    common cases, not every mix."""
    schemes = [c for s in space.slots for c in space.rule_of(s.layer).scheme]
    extra = list(dict.fromkeys(c for c in schemes if c != "static"))
    mixed = [_extreme(space, c, alternate=True) for c in extra]
    return [_extreme(space, None), *(_extreme(space, c) for c in extra), *mixed]


def _extreme(space: BoundSpace, scheme: str | None, *, alternate: bool = False) -> CompressionPlan:
    offered = [s.layer for s in space.slots if scheme in space.rule_of(s.layer).scheme]
    layers = {}
    for slot in space.slots:
        rule = space.rule_of(slot.layer)
        ints = [b for b in rule.bit_choices if isinstance(b, int)]
        ratio = 0.0 if slot.prune_param is None else _at_most(rule.prune, _highest(rule.prune))
        skip = alternate and slot.layer in offered and offered.index(slot.layer) % 2 == 1
        choice = rule.scheme[0]
        if scheme is not None and scheme in rule.scheme and not (skip and "static" in rule.scheme):
            choice = scheme
        elif skip:
            choice = "static"
        kind, block = parse_scheme(choice) if ints else (None, None)
        layers[slot.layer] = LayerPlan(min(ints) if ints else None, ratio, kind, block)
    return CompressionPlan(layers=layers, distill=None)
