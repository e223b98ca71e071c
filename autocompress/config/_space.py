"""Search spaces: which layers may vary, and how (the YAML schema and its checks).

A space (``search_spaces/*.yaml``) is a list of rules matched against the model's layer names
(full-match regex or exact name; first matching rule wins; layers no rule matches stay fp32 and
unpruned), plus the distillation knobs. Layers that share a parameter are grouped by the rule:

- ``share: layer`` (default): one parameter per layer, named ``bits.<layer>``;
- ``share: rule``: one parameter for all layers the rule matches, named ``bits.<rule name>``;
- a capture group in ``match`` (``"(layer\\d)\\..*"``): one parameter per captured value, e.g. one
  bit width per stage, named ``bits.layer2``.

The classifier head is never pruned, whatever the rule says.

``scheme`` (Linear layers, ONNX Runtime) lists how quantized layers may run: ``static`` (int8
QDQ, the default), ``dynamic`` (int8, activations quantized per call) and ``nbits/<block>``
(MatMulNBits, weight-only block-wise; bits 2, 4 or 8). More than one choice is a categorical
parameter ``scheme.<key>`` beside ``bits.<key>``; the default ``[static]`` adds no parameter,
so spaces without the key sample, store and resume exactly as before.

This module is the schema only; binding a space to a model's layers, its Optuna parameters and
sampling are ``autocompress.study`` (``bind_space`` -> ``BoundSpace``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from autocompress.config._experiment import read_yaml
from autocompress.config._schema import build, to_plain
from autocompress.errors import ConfigError
from autocompress.plan import ALLOWED_BITS, BLOCK_SIZES, NBITS_BITS

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
    scheme: list[str] = field(default_factory=lambda: ["static"])  # static, dynamic, nbits/32

    @property
    def bit_choices(self) -> list[int | str]:
        """The allowed weight bits: integers, and ``NONE_BITS`` (full precision) for none."""
        return [NONE_BITS if b is None or b == NONE_BITS else int(b) for b in self.bits]

    @property
    def prunes(self) -> bool:
        """Whether the rule allows a pruning ratio above zero."""
        spec = self.prune
        return spec.high > 0 if isinstance(spec, Range) else any(v > 0 for v in spec)


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


class SearchSpace:
    """A validated search space (not yet bound to a model's layers).

    Example:
        >>> space = SearchSpace.from_yaml("search_spaces/joint.yaml")
        >>> bound = bind_space(space, layer_names, head="fc")  # autocompress.study; doctest: +SKIP
        >>> plan = bound.sample(trial)                          # doctest: +SKIP
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
        """Plain data; a rule's default ``scheme: [static]`` is left out, so the signature of
        a study made before schemes existed is unchanged and it resumes."""
        data = to_plain(self.config)
        for rule in data["layers"]:
            if rule.get("scheme") == ["static"]:
                del rule["scheme"]
        return data

    @property
    def prunes(self) -> bool:
        """Whether any rule allows a pruning ratio above zero."""
        return any(rule.prunes for rule in self.config.layers)


def parse_scheme(choice: str) -> tuple[str | None, int | None]:
    """A space's scheme choice as ``LayerPlan`` fields: ``"nbits/32"`` -> ("nbits", 32)."""
    scheme, _, block = choice.partition("/")
    return (None if scheme == "static" else scheme), (int(block) if block else None)


def _check_scheme(rule: LayerRule, where: str) -> None:
    allowed = ["static", "dynamic", *(f"nbits/{b}" for b in BLOCK_SIZES)]
    if not rule.scheme:
        raise ConfigError(f"{where}.scheme: give at least one choice, e.g. [static]")
    for choice in rule.scheme:
        if choice not in allowed:
            raise ConfigError(f"{where}.scheme: {choice!r} is not allowed; use one of {allowed}")
    bad = [b for b in rule.bits if isinstance(b, int) and b not in NBITS_BITS]
    if any(c.startswith("nbits") for c in rule.scheme) and bad:
        raise ConfigError(
            f"{where}: scheme nbits runs {list(NBITS_BITS)}-bit weights, but bits has {bad}; "
            "drop those bits or the nbits choices"
        )


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
    _check_scheme(rule, where)


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
