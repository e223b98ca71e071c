"""A search space bound to one model's layers: Optuna parameters, sampling, enqueued plans.

``bind_space`` matches a space's rules (``config.SearchSpace``) against a model's layer names
(full-match regex or exact name; the first matching rule wins; layers no rule matches stay fp32
and unpruned) and names the Optuna parameters that drive each layer (see the sharing rules in
``autocompress.config._space``). The result, a :class:`BoundSpace`, turns a trial into a
``CompressionPlan`` (``sample``) and plans into the parameter values a study enqueues
(``encode``, ``baseline_params``, ``uniform_params``).

Choices are *ordinal* parameters: Optuna stores the index of the choice in ascending order
(``none`` bits last), see ``_suggest``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from autocompress.config import (
    NONE_BITS,
    DistillSpace,
    LayerRule,
    Range,
    SearchSpace,
    parse_scheme,
)
from autocompress.errors import ConfigError
from autocompress.plan import CompressionPlan, DistillPlan, LayerPlan
from autocompress.study._baselines import PRUNED_BASELINES, baseline_scheme

if TYPE_CHECKING:
    import optuna

Spec = list[Any] | Range  # a parameter's choices, or its range


@dataclass(frozen=True)
class LayerSlot:
    """A layer bound to its rule and the names of the parameters that drive it."""

    layer: str
    bits_param: str
    prune_param: str | None  # None: never pruned (the head, or a rule without ratios)
    scheme_param: str | None = None  # None: the rule's one scheme (static by default)

    def signed(self) -> dict[str, Any]:
        """The slot as a study's signature holds it (no scheme key where none is chosen, so
        studies made before schemes resume)."""
        data = dict(vars(self))
        if self.scheme_param is None:
            del data["scheme_param"]
        return data


def bind_space(
    space: SearchSpace,
    layer_names: Sequence[str],
    *,
    head: str | None,
    coupled: Sequence[Sequence[str]] = (),
    unprunable: Sequence[str] = (),
    widest_bits: int = 8,
) -> BoundSpace:
    """Match the rules of ``space`` against a model's layers (conv/linear names in forward order).

    ``coupled`` lists groups of layers whose output channels are pruned together (a residual
    stream: see ``backend.coupled_layers``). Every layer of a group takes the pruning
    parameter of the group's first prunable layer in forward order, and with it that
    layer's rule's choices: the group realizes one ratio, so one parameter is all the
    sampler should see. Layers in ``unprunable`` (``backend.unprunable_layers``: pruning
    leaves them whole) get no pruning parameter, like the head. ``widest_bits``: the widest
    weights the target's int8 kernels compute exactly (``runtimes.widest_exact_bits``): the
    driver caps every plan at it (``CompressionPlan.capped``), ``encode`` maps it back.

    Example:
        >>> bound = bind_space(SearchSpace.from_yaml("search_spaces/joint.yaml"),
        ...                    layer_names, head="fc")      # doctest: +SKIP
        >>> plan = bound.sample(trial)                      # doctest: +SKIP
    """
    rules = space.config.layers
    slots: list[LayerSlot] = []
    used = [False] * len(rules)
    for layer in layer_names:
        for i, rule in enumerate(rules):
            key = _match_key(rule, i, layer)
            if key is None:
                continue
            used[i] = True
            prunable = layer != head and layer not in unprunable and rule.prunes
            scheme = f"scheme.{key}" if len(rule.scheme) > 1 else None
            slots.append(
                LayerSlot(layer, f"bits.{key}", f"prune.{key}" if prunable else None, scheme)
            )
            break
    for i, ok in enumerate(used):
        if not ok:
            raise ConfigError(
                f"{space.source}: layers[{i}].match {rules[i].match!r} matches no "
                f"layer; the model's layers are {_preview(layer_names)}"
            )
    return BoundSpace(space, _share_coupled(slots, coupled), widest_bits)


class BoundSpace:
    """A space whose rules are resolved to concrete layers and Optuna parameter names."""

    def __init__(self, space: SearchSpace, slots: list[LayerSlot], widest_bits: int = 8) -> None:
        self.space = space
        self.slots = slots
        # the driver caps every plan's int8-kernel layers at it (runtimes.widest_exact_bits)
        self.widest_bits = widest_bits
        self._rules = {s.layer: self._rule_for(s.layer) for s in slots}

    def rule_of(self, layer: str) -> LayerRule:
        """The rule that matched ``layer`` (a layer of ``slots``)."""
        return self._rules[layer]

    def specs(self) -> dict[str, Spec]:
        """Parameter name -> its choices (or range), in the order ``sample`` suggests them."""
        out: dict[str, Spec] = {}
        for slot in self.slots:
            rule = self._rules[slot.layer]
            out.setdefault(slot.bits_param, rule.bit_choices)
            if slot.prune_param is not None:
                out.setdefault(slot.prune_param, rule.prune)
            if slot.scheme_param is not None:
                out.setdefault(slot.scheme_param, rule.scheme)
        distill = self.space.config.distill
        if distill is not None:
            out["distill.temperature"] = distill.temperature
            out["distill.alpha"] = distill.alpha
        return out

    def encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Choice values (bits 4, prune 0.5, ...) -> the values Optuna stores, for enqueueing.

        Choice lists are ordinal parameters stored as the index of the choice in ascending
        order (see ``_suggest``); ranges are stored as the value itself.
        """
        specs = self.specs()
        return {
            k: _encode(specs[k], self.uncapped(specs[k], k, v))
            if k in specs and not k.startswith("scheme.")
            else v
            for k, v in values.items()
        }  # schemes are categorical: Optuna stores the choice itself

    def uncapped(self, spec: Spec, key: str, value: Any) -> Any:
        """The choice a capped bits value came from (a stored 7-bit plan was the space's 8)."""
        if not key.startswith("bits.") or value != self.widest_bits or isinstance(spec, Range):
            return value
        wider = [c for c in spec if _bits_value(c) is not None and int(c) > value]
        return value if value in spec or not wider else min(wider, key=int)

    @property
    def layer_names(self) -> list[str]:
        return [s.layer for s in self.slots]

    def sample(self, trial: optuna.trial.Trial) -> CompressionPlan:
        """Suggest every parameter (shared ones once) and build the plan."""
        values: dict[str, Any] = {}
        layers = {}
        for slot in self.slots:
            rule = self._rules[slot.layer]
            if slot.bits_param not in values:
                values[slot.bits_param] = _suggest(trial, slot.bits_param, rule.bit_choices)
            ratio = 0.0
            if slot.prune_param is not None:
                if slot.prune_param not in values:
                    values[slot.prune_param] = _suggest(trial, slot.prune_param, rule.prune)
                ratio = float(values[slot.prune_param])
            bits = _bits_value(values[slot.bits_param])
            scheme, block = self._scheme(trial, slot, values) if bits is not None else (None, None)
            layers[slot.layer] = LayerPlan(bits, ratio, scheme, block)
        return CompressionPlan(layers=layers, distill=self._sample_distill(trial))

    def _scheme(
        self, trial: optuna.trial.Trial, slot: LayerSlot, values: dict[str, Any]
    ) -> tuple[str | None, int | None]:
        """The layer's scheme: its rule's one choice, or a categorical parameter (shared like
        the layer's bits)."""
        choices = self._rules[slot.layer].scheme
        if slot.scheme_param is None:
            return parse_scheme(choices[0])
        if slot.scheme_param not in values:
            values[slot.scheme_param] = trial.suggest_categorical(slot.scheme_param, choices)
        return parse_scheme(values[slot.scheme_param])

    def baseline_params(self, kind: str) -> dict[str, Any]:
        """Parameter values that make a baseline, for ``enqueue_trial``.

        ``fp32``: nothing compressed; ``int8``: uniform int8, unpruned (post-training);
        ``int8-dynamic``: the same with every Linear layer whose rule allows it on dynamic int8;
        ``int8-prune50``: uniform int8 with half of every prunable layer's channels removed,
        fine-tuned with the experiment's budget (what a user would hand-pick without a search);
        ``plain-prune25`` / ``plain-prune50``: the same widths with a quarter / half removed,
        which the driver fine-tunes the plain way (``CompressionPlan.plain``).
        """
        if kind == "int8-dynamic" and not any(s.scheme_param for s in self.slots):
            raise ConfigError(
                f"{self.space.source}: the int8-dynamic baseline needs a rule whose scheme lists "
                "dynamic (e.g. scheme: [static, dynamic] on the Linear layers); add one, or drop "
                "int8-dynamic from search.baselines"
            )
        want_bits = NONE_BITS if kind == "fp32" else 8
        want_prune = PRUNED_BASELINES.get(kind)
        params: dict[str, Any] = {}
        for slot in self.slots:
            rule = self._rules[slot.layer]
            if want_bits not in rule.bit_choices:
                raise ConfigError(
                    f"{self.space.source}: the {kind} baseline needs bits {want_bits!r} for layer "
                    f"{slot.layer!r}; add it to that rule's bits, or drop {kind} from "
                    f"search.baselines"
                )
            params[slot.bits_param] = want_bits
            if slot.scheme_param is not None:
                params[slot.scheme_param] = baseline_scheme(rule.scheme, kind, self.space.source)
            if slot.prune_param is None or slot.prune_param in params:
                continue  # unprunable, or a coupled layer whose group parameter is set
            if want_prune is not None and not allows(rule.prune, want_prune):
                raise ConfigError(
                    f"{self.space.source}: the {kind} baseline needs prune {want_prune} for layer "
                    f"{slot.layer!r}; add it to that rule's prune, or drop {kind} from "
                    f"search.baselines"
                )
            lowest = _lowest(rule.prune)
            params[slot.prune_param] = want_prune if want_prune is not None else lowest
        distill = self.space.config.distill
        if distill is not None:
            params.update(self.fixed_distill_params(distill))
        return self.encode(params)

    def uniform_params(self, bits: int, ratio: float) -> dict[str, Any]:
        """Parameter values of the uniform plan nearest to (``bits``, ``ratio``), for enqueueing.

        Each layer takes the allowed integer bit width closest to ``bits`` (the wider on a tie;
        fp32 only where its rule allows nothing else) and the largest allowed pruning ratio not
        above ``ratio``; distillation as the baselines have it. These are the plans a user
        would try by hand, so the search starts from them (``search.warm_start: [uniform]``).
        """
        params: dict[str, Any] = {}
        for slot in self.slots:
            rule = self._rules[slot.layer]
            ints = [b for b in rule.bit_choices if isinstance(b, int)]
            params[slot.bits_param] = (
                min(ints, key=lambda b: (abs(b - bits), -b)) if ints else NONE_BITS
            )
            if slot.prune_param is not None and slot.prune_param not in params:
                params[slot.prune_param] = _at_most(rule.prune, ratio)
            if slot.scheme_param is not None:  # the hand-made plans run the default kernel
                params[slot.scheme_param] = "static" if "static" in rule.scheme else rule.scheme[0]
        distill = self.space.config.distill
        if distill is not None:
            params.update(self.fixed_distill_params(distill))
        return self.encode(params)

    def layer_rule_params(self) -> dict[str, list[str]]:
        """Parameter name -> the layers it drives (shared parameters list several)."""
        out: dict[str, list[str]] = {}
        for slot in self.slots:
            out.setdefault(slot.bits_param, []).append(slot.layer)
            if slot.prune_param:
                out.setdefault(slot.prune_param, []).append(slot.layer)
        return out

    def _sample_distill(self, trial: optuna.trial.Trial) -> DistillPlan | None:
        distill = self.space.config.distill
        if distill is None:
            return None
        t = _suggest(trial, "distill.temperature", distill.temperature)
        a = _suggest(trial, "distill.alpha", distill.alpha)
        return DistillPlan(temperature=float(t), alpha=float(a))

    @staticmethod
    def fixed_distill_params(distill: DistillSpace) -> dict[str, Any]:
        """The distillation values plans enqueued by hand get: the recipe's defaults
        (``DistillPlan``: T=2, alpha 0.9, measured best on their own) where the space allows
        them, else the lowest of each choice list."""
        out = {}
        defaults = DistillPlan()
        for name, values in (("temperature", distill.temperature), ("alpha", distill.alpha)):
            if isinstance(values, Range) or len(values) > 1:
                out[f"distill.{name}"] = _default_or_lowest(values, getattr(defaults, name))
        return out

    def _rule_for(self, layer: str) -> LayerRule:
        for i, rule in enumerate(self.space.config.layers):
            if _match_key(rule, i, layer) is not None:
                return rule
        raise KeyError(layer)  # unreachable: slots only hold matched layers


def _share_coupled(slots: list[LayerSlot], coupled: Sequence[Sequence[str]]) -> list[LayerSlot]:
    """Point the prunable layers of each coupled group at the group's first prune parameter."""
    position = {s.layer: i for i, s in enumerate(slots)}
    param_of: dict[str, str | None] = {}
    for group in coupled:
        prunable = sorted(
            (n for n in group if n in position and slots[position[n]].prune_param),
            key=position.__getitem__,
        )
        for layer in prunable[1:]:
            param_of[layer] = slots[position[prunable[0]]].prune_param
    return [replace(s, prune_param=param_of[s.layer]) if s.layer in param_of else s for s in slots]


def _default_or_lowest(spec: list[float] | Range, default: float) -> float:
    """``default`` where ``spec`` allows it (on a range's step grid), else its lowest value."""
    return default if math.isclose(_at_most(spec, default), default) else _lowest(spec)


def allows(spec: Spec, value: Any) -> bool:
    """``value`` is one of the choices (numbers compared as numbers), or inside the range."""
    if isinstance(spec, Range):
        return isinstance(value, (int, float)) and float(spec.low) <= value <= float(spec.high)
    if all(isinstance(c, (int, float)) for c in spec):
        return isinstance(value, (int, float)) and any(float(c) == value for c in spec)
    return value in spec


def _match_key(rule: LayerRule, index: int, layer: str) -> str | None:
    """The parameter key this rule gives ``layer``, or None if the rule does not match it."""
    pattern = re.compile(rule.match)
    m = pattern.fullmatch(layer)
    if m is None and rule.match != layer:
        return None
    if rule.share == "rule":
        return rule.name or f"rule{index}"
    if m is not None and m.groups():
        return ".".join(g for g in m.groups() if g is not None)
    return layer


def _suggest(trial: optuna.trial.Trial, name: str, spec: Spec) -> Any:
    """One parameter's value. A list of choices (bits with ``none`` as the widest, ratios,
    temperatures: all numbers, the schema checks) is an *ordinal* parameter: Optuna sees the
    index of the choice in ascending order as an integer, so model-based samplers (GP, TPE)
    learn that 4 bits lies between 3 and 5 instead of treating each choice as an unrelated
    category (NSGA-II's uniform crossover and resampling mutation are indifferent to it).
    """
    if isinstance(spec, Range):
        if (
            float(spec.low).is_integer()
            and float(spec.high).is_integer()
            and spec.step
            and float(spec.step).is_integer()
        ):
            return trial.suggest_int(name, int(spec.low), int(spec.high), step=int(spec.step))
        return trial.suggest_float(name, spec.low, spec.high, step=spec.step, log=spec.log)
    if len(spec) == 1:
        return spec[0]  # fixed: no parameter, so the study's search space stays small
    ordered = _ordinal(spec)
    return ordered[trial.suggest_int(name, 0, len(ordered) - 1)]


def _ordinal(spec: list[Any]) -> list[Any]:
    """The choices in ascending order, ``none`` bits (full precision) last."""
    return sorted(spec, key=lambda v: float("inf") if v in (None, NONE_BITS) else float(v))


def _encode(spec: Spec, value: Any) -> Any:
    """The stored form of ``value`` for a parameter with choices ``spec`` (see ``_suggest``)."""
    if isinstance(spec, Range) or len(spec) == 1:
        return value
    for i, choice in enumerate(_ordinal(spec)):
        if choice == value or (choice in (None, NONE_BITS) and value in (None, NONE_BITS)):
            return i
    raise ConfigError(f"{value!r} is not one of the choices {spec}")


def _bits_value(value: Any) -> int | None:
    return None if value in (None, NONE_BITS) else int(value)


def _at_most(spec: list[float] | Range, value: float) -> float:
    """The largest allowed ratio not above ``value`` (the lowest allowed if all are above)."""
    if isinstance(spec, Range):
        low, high = float(spec.low), float(spec.high)
        if spec.step:  # stay on the range's grid
            value = low + math.floor((value - low) / float(spec.step) + 1e-9) * float(spec.step)
        return min(max(low, value), high)
    below = [float(v) for v in spec if float(v) <= value]
    return max(below) if below else _lowest(spec)


def _highest(spec: list[float] | Range) -> float:
    return float(spec.high) if isinstance(spec, Range) else float(max(spec))


def _lowest(spec: list[float] | Range) -> float:
    return float(spec.low) if isinstance(spec, Range) else float(min(spec))


def _preview(names: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(names[:n])
    return f"[{shown}{', ...' if len(names) > n else ''}] ({len(names)} in all)"
