"""Search spaces: which layers may vary, and how; turning an Optuna trial into a plan.

A space (``search_spaces/*.yaml``) is a list of rules matched against the model's layer names
(full-match regex or exact name; first matching rule wins; layers no rule matches stay fp32 and
unpruned), plus the distillation knobs. Layers that share a parameter are grouped by the rule:

- ``share: layer`` (default): one parameter per layer, named ``bits.<layer>``;
- ``share: rule``: one parameter for all layers the rule matches, named ``bits.<rule name>``;
- a capture group in ``match`` (``"(layer\\d)\\..*"``): one parameter per captured value, e.g. one
  bit width per stage, named ``bits.layer2``.

The classifier head is never pruned, whatever the rule says.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from autocompress.config._experiment import read_yaml
from autocompress.config._schema import build, to_plain
from autocompress.errors import ConfigError
from autocompress.plan import ALLOWED_BITS, CompressionPlan, DistillPlan, LayerPlan

if TYPE_CHECKING:
    import optuna

SPACE_VERSION = 1
NONE_BITS = "none"


@dataclass(frozen=True)
class Range:
    """A numeric range, e.g. ``{low: 0.0, high: 0.75, step: 0.125}`` or ``{low: 1, high: 8}``."""

    low: float
    high: float
    step: float | None = field(default=None, metadata={"gt": 0})
    log: bool = False


@dataclass(frozen=True)
class LayerRule:
    """One rule: which layers, and their allowed weight bits and prune ratios."""

    match: str  # full-match regex or exact module name
    bits: list[int | str | None] = field(default_factory=lambda: [8])  # ints 2..8 and/or none
    prune: list[float] | Range = field(default_factory=lambda: [0.0])  # fractions in [0, 1)
    share: Literal["layer", "rule"] = "layer"
    name: str | None = None  # parameter name when share: rule (default: rule index)


@dataclass(frozen=True)
class DistillSpace:
    """Distillation knobs; a single-value list fixes a knob."""

    temperature: list[float] | Range = field(default_factory=lambda: [1.0])
    alpha: list[float] | Range = field(default_factory=lambda: [0.5])


@dataclass(frozen=True)
class SpaceConfig:
    """A search space file."""

    version: int = SPACE_VERSION
    layers: list[LayerRule] = field(default_factory=list)
    distill: DistillSpace | None = field(default_factory=DistillSpace)


@dataclass(frozen=True)
class LayerSlot:
    """A layer bound to its rule and the names of the parameters that drive it."""

    layer: str
    bits_param: str
    prune_param: str | None  # None: never pruned (the head, or a rule without ratios)


class SearchSpace:
    """A validated space bound to one model's layers.

    Example:
        >>> space = SearchSpace.from_yaml("search_spaces/joint.yaml")
        >>> bound = space.bind(layer_names, head="fc")   # doctest: +SKIP
        >>> plan = bound.sample(trial)                     # doctest: +SKIP
    """

    def __init__(self, config: SpaceConfig, source: str = "<space>") -> None:
        if config.version != SPACE_VERSION:
            raise ConfigError(
                f"{source}: version {config.version} unsupported; use {SPACE_VERSION}"
            )
        if not config.layers:
            raise ConfigError(f"{source}: layers: at least one rule is needed")
        for i, rule in enumerate(config.layers):
            _check_rule(rule, f"{source}: layers[{i}]")
        if config.distill is not None:
            _check_values(config.distill.temperature, f"{source}: distill.temperature", gt=0.0)
            _check_values(config.distill.alpha, f"{source}: distill.alpha", ge=0.0, le=1.0)
        self.config = config
        self.source = source

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return cls.from_dict(read_yaml(Path(path)), source=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<space>") -> SearchSpace:
        try:
            config = build(SpaceConfig, data, "")
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        return cls(config, source)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self.config)

    @property
    def prunes(self) -> bool:
        """Whether any rule allows a pruning ratio above zero."""
        return any(_prune_choices_nonzero(rule.prune) for rule in self.config.layers)

    def bind(
        self,
        layer_names: Sequence[str],
        *,
        head: str | None,
        coupled: Sequence[Sequence[str]] = (),
    ) -> BoundSpace:
        """Match the rules against a model's layers (conv/linear names in forward order).

        ``coupled`` lists groups of layers whose output channels are pruned together (a residual
        stream: see ``backend.coupled_layers``). Every layer of a group takes the pruning
        parameter of the group's first prunable layer in forward order, and with it that
        layer's rule's choices: the group realizes one ratio, so one parameter is all the
        sampler should see.
        """
        slots: list[LayerSlot] = []
        used = [False] * len(self.config.layers)
        for layer in layer_names:
            for i, rule in enumerate(self.config.layers):
                key = _match_key(rule, i, layer)
                if key is None:
                    continue
                used[i] = True
                prunable = layer != head and _prune_choices_nonzero(rule.prune)
                slots.append(LayerSlot(layer, f"bits.{key}", f"prune.{key}" if prunable else None))
                break
        for i, ok in enumerate(used):
            if not ok:
                raise ConfigError(
                    f"{self.source}: layers[{i}].match {self.config.layers[i].match!r} matches no "
                    f"layer; the model's layers are {_preview(layer_names)}"
                )
        return BoundSpace(self, _share_coupled(slots, coupled))


class BoundSpace:
    """A space whose rules are resolved to concrete layers and Optuna parameter names."""

    def __init__(self, space: SearchSpace, slots: list[LayerSlot]) -> None:
        self.space = space
        self.slots = slots
        self._rule_of = {s.layer: self._rule_for(s.layer) for s in slots}

    def specs(self) -> dict[str, list[Any] | Range]:
        """Parameter name -> its choices (or range), in the order ``sample`` suggests them."""
        out: dict[str, list[Any] | Range] = {}
        for slot in self.slots:
            rule = self._rule_of[slot.layer]
            out.setdefault(slot.bits_param, _bits_choices(rule))
            if slot.prune_param is not None:
                out.setdefault(slot.prune_param, rule.prune)
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
        return {k: _encode(specs[k], v) if k in specs else v for k, v in values.items()}

    @property
    def layer_names(self) -> list[str]:
        return [s.layer for s in self.slots]

    def sample(self, trial: optuna.trial.Trial) -> CompressionPlan:
        """Suggest every parameter (shared ones once) and build the plan."""
        values: dict[str, Any] = {}
        layers = {}
        for slot in self.slots:
            rule = self._rule_of[slot.layer]
            if slot.bits_param not in values:
                values[slot.bits_param] = _suggest(trial, slot.bits_param, _bits_choices(rule))
            ratio = 0.0
            if slot.prune_param is not None:
                if slot.prune_param not in values:
                    values[slot.prune_param] = _suggest(trial, slot.prune_param, rule.prune)
                ratio = float(values[slot.prune_param])
            layers[slot.layer] = LayerPlan(_bits_value(values[slot.bits_param]), ratio)
        return CompressionPlan(layers=layers, distill=self._sample_distill(trial))

    def baseline_params(self, kind: str) -> dict[str, Any]:
        """Parameter values that make a baseline, for ``enqueue_trial``.

        ``fp32``: nothing compressed; ``int8``: uniform int8, unpruned (post-training);
        ``int8-prune50``: uniform int8 with half of every prunable layer's channels removed,
        fine-tuned with the experiment's budget (what a user would hand-pick without a search).
        """
        want_bits = NONE_BITS if kind == "fp32" else 8
        want_prune = 0.5 if kind == "int8-prune50" else None
        params: dict[str, Any] = {}
        for slot in self.slots:
            rule = self._rule_of[slot.layer]
            if want_bits not in _bits_choices(rule):
                raise ConfigError(
                    f"{self.space.source}: the {kind} baseline needs bits {want_bits!r} for layer "
                    f"{slot.layer!r}; add it to that rule's bits, or drop {kind} from "
                    f"search.baselines"
                )
            params[slot.bits_param] = want_bits
            if slot.prune_param is None or slot.prune_param in params:
                continue  # unprunable, or a coupled layer whose group parameter is set
            if want_prune is not None and not _allows(rule.prune, want_prune):
                raise ConfigError(
                    f"{self.space.source}: the {kind} baseline needs prune {want_prune} for layer "
                    f"{slot.layer!r}; add it to that rule's prune, or drop {kind} from "
                    f"search.baselines"
                )
            lowest = _lowest(rule.prune)
            params[slot.prune_param] = want_prune if want_prune is not None else lowest
        distill = self.space.config.distill
        if distill is not None:
            params.update(self._fixed_distill_params(distill))
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
            rule = self._rule_of[slot.layer]
            ints = [b for b in _bits_choices(rule) if b != NONE_BITS]
            params[slot.bits_param] = (
                min(ints, key=lambda b: (abs(b - bits), -b)) if ints else NONE_BITS
            )
            if slot.prune_param is not None and slot.prune_param not in params:
                params[slot.prune_param] = _at_most(rule.prune, ratio)
        distill = self.space.config.distill
        if distill is not None:
            params.update(self._fixed_distill_params(distill))
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
    def _fixed_distill_params(distill: DistillSpace) -> dict[str, Any]:
        out = {}
        for name, values in (("temperature", distill.temperature), ("alpha", distill.alpha)):
            if isinstance(values, Range) or len(values) > 1:
                out[f"distill.{name}"] = _lowest(values)
        return out

    def _rule_for(self, layer: str) -> LayerRule:
        for i, rule in enumerate(self.space.config.layers):
            if _match_key(rule, i, layer) is not None:
                return rule
        raise KeyError(layer)  # unreachable: slots only hold matched layers


def _share_coupled(slots: list[LayerSlot], coupled: Sequence[Sequence[str]]) -> list[LayerSlot]:
    """Point the prunable layers of each coupled group at the group's first prune parameter."""
    position = {s.layer: i for i, s in enumerate(slots)}
    param_of: dict[str, str] = {}
    for group in coupled:
        prunable = sorted(
            (n for n in group if n in position and slots[position[n]].prune_param),
            key=position.__getitem__,
        )
        for layer in prunable[1:]:
            param_of[layer] = slots[position[prunable[0]]].prune_param  # type: ignore[assignment]
    return [
        LayerSlot(s.layer, s.bits_param, param_of[s.layer]) if s.layer in param_of else s
        for s in slots
    ]


def _allows(spec: list[Any] | Range, value: float) -> bool:
    if isinstance(spec, Range):
        return float(spec.low) <= value <= float(spec.high)
    return any(float(v) == value for v in spec)


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


def _suggest(trial: optuna.trial.Trial, name: str, spec: list[Any] | Range) -> Any:
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


def _encode(spec: list[Any] | Range, value: Any) -> Any:
    """The stored form of ``value`` for a parameter with choices ``spec`` (see ``_suggest``)."""
    if isinstance(spec, Range) or len(spec) == 1:
        return value
    for i, choice in enumerate(_ordinal(spec)):
        if choice == value or (choice in (None, NONE_BITS) and value in (None, NONE_BITS)):
            return i
    raise ConfigError(f"{value!r} is not one of the choices {spec}")


def _bits_choices(rule: LayerRule) -> list[Any]:
    return [NONE_BITS if b in (None, NONE_BITS) else int(b) for b in rule.bits]


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


def _lowest(spec: list[float] | Range) -> float:
    return float(spec.low) if isinstance(spec, Range) else float(min(spec))


def _prune_choices_nonzero(spec: list[float] | Range) -> bool:
    return spec.high > 0 if isinstance(spec, Range) else any(v > 0 for v in spec)


def _check_rule(rule: LayerRule, where: str) -> None:
    try:
        pattern = re.compile(rule.match)
    except re.error as exc:
        raise ConfigError(f"{where}.match: {rule.match!r} is not a valid regex ({exc})") from None
    if rule.share == "rule" and pattern.groups:
        raise ConfigError(f"{where}: share: rule and a capture group in match exclude each other")
    if not rule.bits:
        raise ConfigError(f"{where}.bits: give at least one choice")
    for b in rule.bits:
        if b is None or b == NONE_BITS:
            continue
        if isinstance(b, bool) or not isinstance(b, int) or b not in ALLOWED_BITS:
            raise ConfigError(
                f"{where}.bits: {b!r} is not allowed; use integers {ALLOWED_BITS[0]}..."
                f"{ALLOWED_BITS[-1]} or none"
            )
    _check_values(rule.prune, f"{where}.prune", ge=0.0, lt=1.0)


def _check_values(
    spec: list[float] | Range,
    where: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> None:
    values = [spec.low, spec.high] if isinstance(spec, Range) else list(spec)
    if not values:
        raise ConfigError(f"{where}: give at least one value")
    if isinstance(spec, Range) and spec.low > spec.high:
        raise ConfigError(f"{where}: low {spec.low} is above high {spec.high}")
    if isinstance(spec, Range) and spec.log and spec.low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {spec.low}")
    for v in values:
        bad = (
            (ge is not None and v < ge)
            or (gt is not None and v <= gt)
            or (le is not None and v > le)
            or (lt is not None and v >= lt)
        )
        if bad:
            bounds = " and ".join(
                f"{s} {b}"
                for s, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
                if b is not None
            )
            raise ConfigError(f"{where}: {v!r} is out of range; values must be {bounds}")


def _preview(names: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(names[:n])
    return f"[{shown}{', ...' if len(names) > n else ''}] ({len(names)} in all)"
