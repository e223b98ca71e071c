"""The trial's currency: a compression plan keyed by module name.

A :class:`CompressionPlan` says, for each layer named by its fully qualified module name
(``"layer2.0.conv1"``), how many bits its weights get and what fraction of its output channels is
removed, plus how the compressed model is fine-tuned (distillation). It follows torchao's
``FqnToConfig`` rather than Torch-Pruning's module-keyed dicts so that it can be stored, sent to a
worker and re-applied later: plans are frozen, versioned and round-trip through JSON exactly.

Example:
    >>> plan = CompressionPlan.uniform(["conv1", "fc"], weight_bits=8)
    >>> CompressionPlan.from_json(plan.to_json()) == plan
    True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from autocompress.errors import ConfigError

PLAN_VERSION = 1
ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8)
# how a Linear layer's weights run (ONNX Runtime): static int8 QDQ (None, the default), dynamic
# int8 (activations quantized per batch at run time), or nbits weight-only block-wise
# (MatMulNBits: 2/4/8-bit weights, blocks of block_size along the input dimension)
SCHEMES = ("static", "dynamic", "nbits")
NBITS_BITS = (2, 4, 8)
BLOCK_SIZES = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class LayerPlan:
    """What happens to one layer.

    Attributes:
        weight_bits: bits of the layer's weights (symmetric, per output channel), or None to keep
            the layer in fp32. Activations of quantized layers are 8-bit.
        prune_ratio: fraction of output channels removed, in [0, 1).
        scheme: how a quantized Linear layer runs: None (static int8 QDQ, the default and
            the only scheme of convolutions), ``"dynamic"`` or ``"nbits"`` (see ``SCHEMES``).
            Omitted from the JSON when None, so plans of earlier studies stay equal.
        block_size: weights per scale along the input dimension, for ``"nbits"`` only.
    """

    weight_bits: int | None = None
    prune_ratio: float = 0.0
    scheme: str | None = None
    block_size: int | None = None

    def __post_init__(self) -> None:
        if self.weight_bits is not None and self.weight_bits not in ALLOWED_BITS:
            raise ConfigError(
                f"weight_bits={self.weight_bits!r} is not supported; use one of "
                f"{list(ALLOWED_BITS)} or none"
            )
        if not 0.0 <= float(self.prune_ratio) < 1.0:
            raise ConfigError(
                f"prune_ratio={self.prune_ratio!r} is out of range; use a fraction in [0, 1)"
            )
        if self.scheme == "static":  # the default spelled out: one plan, one JSON
            object.__setattr__(self, "scheme", None)
        _check_scheme(self.scheme, self.weight_bits, self.block_size)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "weight_bits": self.weight_bits,
            "prune_ratio": float(self.prune_ratio),
        }
        if self.scheme is not None:
            out["scheme"] = self.scheme
        if self.block_size is not None:
            out["block_size"] = int(self.block_size)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerPlan:
        _reject_unknown(data, {"weight_bits", "prune_ratio", "scheme", "block_size"}, "layer plan")
        block = data.get("block_size")
        return cls(
            weight_bits=data.get("weight_bits"),
            prune_ratio=float(data.get("prune_ratio", 0.0)),
            scheme=data.get("scheme"),
            block_size=None if block is None else int(block),
        )


def _check_scheme(scheme: str | None, bits: int | None, block_size: int | None) -> None:
    if scheme is not None and scheme not in SCHEMES:
        raise ConfigError(f"scheme={scheme!r} is not supported; use one of {list(SCHEMES)}")
    if scheme is not None and bits is None:
        raise ConfigError(f"scheme={scheme!r} needs weight_bits; an fp32 layer has no scheme")
    if scheme == "nbits" and bits not in NBITS_BITS:
        raise ConfigError(
            f"scheme nbits runs {list(NBITS_BITS)}-bit weights (MatMulNBits), not "
            f"weight_bits={bits}; pick one of those bits or scheme static"
        )
    if (scheme == "nbits") != (block_size is not None):
        raise ConfigError(
            f"block_size={block_size!r} with scheme={scheme!r}: scheme nbits needs a "
            f"block_size (one of {list(BLOCK_SIZES)}) and other schemes take none"
        )
    if block_size is not None and block_size not in BLOCK_SIZES:
        raise ConfigError(
            f"block_size={block_size!r} is not supported; use one of {list(BLOCK_SIZES)}"
        )


@dataclass(frozen=True)
class DistillPlan:
    """How the compressed model is fine-tuned: QAT with knowledge distillation.

    Attributes:
        temperature: softmax temperature T of the distillation loss (> 0).
        alpha: weight of the distillation term; ``1 - alpha`` weighs cross-entropy.
        steps: optimizer steps, or None for the experiment's ``finetune.steps``. Set by the
            rungs of a multi-fidelity search (``search.rungs``): a promoted trial is the same
            plan trained longer, so the budget travels with the plan. 0 is rung 0: the plan
            realized without fine-tuning (PTQ), its distillation settings kept for promotion.
        lr: SGD rate at T=1, or None for the experiment's ``finetune.lr``.
        qat_fraction: share of the steps, at the end, trained quantization-aware on BN-folded
            weights (before them the network trains in float with BatchNorm live), or None for
            the experiment's ``finetune.qat_fraction``. 0 with ``alpha`` 0 is the plain
            pipeline a user runs without us (cross-entropy, BatchNorm live, then int8 PTQ).
    """

    # the recipe's defaults (T=2, alpha 0.9): measured best at 60 and 1000 steps on the converged
    # reference (docs/benchmarks/recipe-fmnist-lr-60.md, recipe-fmnist-kd9lr4-1000.md)
    temperature: float = 2.0
    alpha: float = 0.9
    steps: int | None = None
    lr: float | None = None
    qat_fraction: float | None = None

    def __post_init__(self) -> None:
        if not float(self.temperature) > 0.0:
            raise ConfigError(
                f"distillation temperature={self.temperature!r} must be > 0 (e.g. 1 to 8)"
            )
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ConfigError(f"distillation alpha={self.alpha!r} must be in [0, 1]")
        if self.steps is not None and int(self.steps) < 0:
            raise ConfigError(f"fine-tuning steps={self.steps!r} must be >= 0 (or none)")
        if self.lr is not None and not float(self.lr) > 0.0:
            raise ConfigError(f"fine-tuning lr={self.lr!r} must be > 0 (or none)")
        if self.qat_fraction is not None and not 0.0 <= float(self.qat_fraction) <= 1.0:
            raise ConfigError(f"qat_fraction={self.qat_fraction!r} must be in [0, 1] (or none)")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"temperature": float(self.temperature), "alpha": float(self.alpha)}
        if self.steps is not None:  # omitted when unset: plans of earlier studies stay equal
            out["steps"] = int(self.steps)
        if self.lr is not None:
            out["lr"] = float(self.lr)
        if self.qat_fraction is not None:
            out["qat_fraction"] = float(self.qat_fraction)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillPlan:
        keys = {"temperature", "alpha", "steps", "lr", "qat_fraction"}
        _reject_unknown(data, keys, "distill plan")
        steps, lr, qat = data.get("steps"), data.get("lr"), data.get("qat_fraction")
        return cls(
            temperature=float(data.get("temperature", cls.temperature)),
            alpha=float(data.get("alpha", cls.alpha)),
            steps=None if steps is None else int(steps),
            lr=None if lr is None else float(lr),
            qat_fraction=None if qat is None else float(qat),
        )


@dataclass(frozen=True)
class CompressionPlan:
    """Per-layer bits and pruning ratios, plus the fine-tuning recipe.

    Layers absent from ``layers`` stay as they are (fp32, unpruned). ``distill=None`` means no
    fine-tuning: the plan is realized by post-training quantization alone.
    """

    layers: Mapping[str, LayerPlan] = field(default_factory=dict)
    distill: DistillPlan | None = None
    version: int = PLAN_VERSION

    def __post_init__(self) -> None:
        if self.version != PLAN_VERSION:
            raise ConfigError(
                f"plan version {self.version} is not supported by this autocompress "
                f"(expects {PLAN_VERSION}); re-run the search or upgrade autocompress"
            )
        frozen = MappingProxyType(dict(sorted(self.layers.items())))
        object.__setattr__(self, "layers", frozen)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompressionPlan):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.to_json())

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def uniform(
        cls,
        layer_names: Iterable[str],
        *,
        weight_bits: int | None = 8,
        prune_ratio: float = 0.0,
        distill: DistillPlan | None = None,
    ) -> CompressionPlan:
        """The same bits and ratio for every named layer (the baselines use this)."""
        layer = LayerPlan(weight_bits=weight_bits, prune_ratio=prune_ratio)
        return cls(layers={name: layer for name in layer_names}, distill=distill)

    def without_finetuning(self) -> CompressionPlan:
        """The same compression realized by post-training quantization only."""
        return CompressionPlan(layers=dict(self.layers), distill=None)

    def plain(self) -> CompressionPlan:
        """The same widths at int8, fine-tuned the way a user would without us: cross-entropy
        only (no teacher), BatchNorm live all along, no QAT, then int8 post-training
        quantization (the ``plain-prune*`` baselines)."""
        layers = {
            n: replace(
                p, weight_bits=None if p.weight_bits is None else 8, scheme=None, block_size=None
            )
            for n, p in self.layers.items()
        }
        steps = None if self.distill is None else self.distill.steps
        lr = None if self.distill is None else self.distill.lr
        distill = DistillPlan(alpha=0.0, steps=steps, lr=lr, qat_fraction=0.0)
        return CompressionPlan(layers=layers, distill=distill)

    def capped(self, widest_bits: int) -> CompressionPlan:
        """The same plan with int8-kernel layers (static, dynamic) at most ``widest_bits`` wide:
        where ONNX Runtime's int8 saturates, 8-bit weights become 7-bit ones, which it computes
        exactly (``runtimes.widest_exact_bits``). MatMulNBits layers take 2, 4 or 8 bits: kept."""
        layers = {
            n: replace(p, weight_bits=widest_bits)
            if p.weight_bits is not None and p.weight_bits > widest_bits and p.scheme != "nbits"
            else p
            for n, p in self.layers.items()
        }
        return CompressionPlan(layers=layers, distill=self.distill)

    def with_budget(self, steps: int, lr: float | None = None) -> CompressionPlan:
        """The same compression and distillation, fine-tuned for ``steps`` (a rung's budget)."""
        if self.distill is None:
            raise ConfigError(
                "this plan is realized by post-training quantization (no distillation); "
                "there is no fine-tuning to lengthen"
            )
        distill = replace(self.distill, steps=int(steps), lr=lr)
        return CompressionPlan(layers=dict(self.layers), distill=distill)

    # -- queries -------------------------------------------------------------------------
    @property
    def quantized_layers(self) -> dict[str, int]:
        """Layer name -> weight bits, for layers that are quantized."""
        return {n: p.weight_bits for n, p in self.layers.items() if p.weight_bits is not None}

    @property
    def layer_schemes(self) -> dict[str, tuple[str, int | None]]:
        """Quantized layer -> (scheme, block size) for layers not on the static default."""
        return {
            n: (p.scheme, p.block_size)
            for n, p in self.layers.items()
            if p.weight_bits is not None and p.scheme is not None
        }

    @property
    def pruned_layers(self) -> dict[str, float]:
        """Layer name -> prune ratio, for layers with a non-zero ratio."""
        return {n: p.prune_ratio for n, p in self.layers.items() if p.prune_ratio > 0.0}

    @property
    def is_fp32(self) -> bool:
        return not self.quantized_layers and not self.pruned_layers

    def summary(self) -> str:
        """A short human summary, e.g. ``bits 8x3 4x5 fp32x1 | prune 0.25x4 | T=2.0``."""
        bits: dict[str, int] = {}
        for p in self.layers.values():
            key = "fp32" if p.weight_bits is None else str(p.weight_bits)
            bits[key] = bits.get(key, 0) + 1
        text = "bits " + " ".join(f"{k}x{v}" for k, v in sorted(bits.items()))
        ratios: dict[float, int] = {}
        for r in self.pruned_layers.values():
            ratios[round(r, 3)] = ratios.get(round(r, 3), 0) + 1
        if ratios:
            text += " | prune " + " ".join(f"{k:g}x{v}" for k, v in sorted(ratios.items()))
        schemes: dict[str, int] = {}
        for scheme, block in self.layer_schemes.values():
            key = scheme if block is None else f"{scheme}/{block}"
            schemes[key] = schemes.get(key, 0) + 1
        if schemes:
            text += " | " + " ".join(f"{k}x{v}" for k, v in sorted(schemes.items()))
        if self.distill is not None:
            text += f" | T={self.distill.temperature:.3g} a={self.distill.alpha:.2g}"
            if self.distill.steps is not None:
                text += f" steps={self.distill.steps}"
        return text

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "layers": {name: p.to_dict() for name, p in self.layers.items()},
            "distill": None if self.distill is None else self.distill.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompressionPlan:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a plan must be a mapping, got {type(data).__name__}")
        _reject_unknown(data, {"version", "layers", "distill"}, "plan")
        layers = data.get("layers") or {}
        if not isinstance(layers, Mapping):
            raise ConfigError("plan.layers must map module names to layer plans")
        distill = data.get("distill")
        return cls(
            layers={str(k): LayerPlan.from_dict(v) for k, v in layers.items()},
            distill=None if distill is None else DistillPlan.from_dict(distill),
            version=int(data.get("version", PLAN_VERSION)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CompressionPlan:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"plan is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], what: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {unknown} in {what}; allowed keys are {sorted(allowed)}"
        )
