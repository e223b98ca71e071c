"""What one trial measured, typed: the worker's output and the study's stored record.

``run_trial`` returns a :class:`TrialOutput`: the :class:`TrialResult` (figures, with their units
in their names) and, apart from it, the bytes that ship (the deployable and the packed k-bit
weights). The driver writes the bytes to the trial's artifact directory and stores the result,
as ``to_dict()``, in the trial's user attributes; readers get it back with ``from_dict``. Plain
data crosses process boundaries (Ray pickles these frozen dataclasses as it pickled the dict).

Room for what comes next: ``finetune_steps`` is the fine-tuning budget the result was measured
at (the rung of a multi-fidelity search), and each :class:`LayerRecord` has a ``scheme`` (the
runtime's format for that layer) left ``None`` by runtimes that do not say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from autocompress.measure import Measurement


@dataclass(frozen=True)
class LayerRecord:
    """One compressible layer as planned and as realized."""

    bits: int | None  # weight bits (None: full precision)
    prune_ratio: float  # fraction of output channels the plan asked to remove
    channels_before: int
    channels: int  # output channels kept
    realized_ratio: float  # fraction actually removed (coupled groups, round_to)
    scheme: str | None = None  # the runtime's kernel for this layer (SCHEME_LEGEND), or None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# what each LayerRecord.scheme buys: faster, or only smaller (issue 19; figures for one CPU in
# benchmarks/linear_schemes.py)
SCHEME_LEGEND = {
    "int8-static": "QDQ int8 kernels; below 8 bits only smaller (the same int8 kernel runs)",
    "int8-dynamic": "int8 kernel, input range taken per call (DynamicQuantizeMatMul)",
    "nbits": "MatMulNBits nbits<k>/b<block>: k-bit block-wise weights (smaller); int8 compute at "
    "accuracy_level 4; faster where the layer is weight-bound (few tokens), else only smaller",
}


@dataclass(frozen=True)
class FinetuneRecord:
    """What the fine-tuning loop did."""

    steps: int
    seconds: float
    lr: float  # the rate actually used (temperature-scaled)
    first_loss: float
    last_loss: float
    losses: tuple[float, ...] = ()  # every 10th step
    # BatchNorm outputs distilled channel for channel (finetune.feature_weight; 0: logits only)
    feature_layers: int = 0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps if self.steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["losses"] = list(self.losses)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FinetuneRecord:
        return cls(
            steps=int(data.get("steps", 0)),
            seconds=float(data.get("seconds", 0.0)),
            lr=float(data.get("lr", 0.0)),
            first_loss=_float(data.get("first_loss")),
            last_loss=_float(data.get("last_loss")),
            losses=tuple(data.get("losses") or ()),
            feature_layers=int(data.get("feature_layers", 0)),
        )


@dataclass(frozen=True)
class TrialResult:
    """The measured figures of one realized plan. Units are in the names.

    ``accuracy`` is the deployable's own top-1 on the validation split (a fraction);
    ``size_bytes`` the packed k-bit weights + scales + fp32 rest; ``deploy_bytes`` the
    deployable file; ``latency_ms`` the median per call at the target's batch.
    """

    accuracy: float
    latency_ms: float
    latency_ratio: float | None  # latency / fp32 reference's, timed in the same sitting
    reference_latency_ms: float | None
    size_bytes: int
    deploy_bytes: int
    params: int
    latency: Measurement  # the timing sitting: both models' statistics, attempts, cores
    fingerprint: Mapping[str, Any]  # device, runtime, versions, ...; "key" makes it comparable
    runtime: str
    artifact_suffix: str  # ".onnx", ".pt2": the deployable's file name is model<suffix>
    layers: Mapping[str, LayerRecord] = field(default_factory=dict)
    # torch accuracy after pruning + BN recalibration, where a hopeless floor asked for it
    early_accuracy: float | None = None
    finetune: FinetuneRecord | None = None
    finetune_steps: int = 0  # the budget the result was measured at (0: post-training)
    stage_seconds: Mapping[str, float] = field(default_factory=dict)

    @property
    def fingerprint_key(self) -> str | None:
        key = self.fingerprint.get("key")
        return None if key is None else str(key)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what the study stores as the trial's ``result`` attribute."""
        return {
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "latency_ratio": self.latency_ratio,
            "reference_latency_ms": self.reference_latency_ms,
            "size_bytes": self.size_bytes,
            "deploy_bytes": self.deploy_bytes,
            "params": self.params,
            "latency": self.latency.to_dict(),
            "fingerprint": dict(self.fingerprint),
            "runtime": self.runtime,
            "artifact_suffix": self.artifact_suffix,
            "layers": {n: asdict(layer) for n, layer in self.layers.items()},
            "early_accuracy": self.early_accuracy,
            "finetune": None if self.finetune is None else self.finetune.to_dict(),
            "finetune_steps": self.finetune_steps,
            "stage_seconds": dict(self.stage_seconds),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialResult:
        """Inverse of :meth:`to_dict`; also reads records stored before ``finetune_steps``."""
        finetune = data.get("finetune")
        return cls(
            accuracy=float(data["accuracy"]),
            latency_ms=float(data["latency_ms"]),
            latency_ratio=_optional(data.get("latency_ratio")),
            reference_latency_ms=_optional(data.get("reference_latency_ms")),
            size_bytes=int(data["size_bytes"]),
            deploy_bytes=int(data.get("deploy_bytes", 0)),
            params=int(data.get("params", 0)),
            latency=Measurement.from_dict(data["latency"]),
            fingerprint=dict(data.get("fingerprint") or {}),
            runtime=str(data.get("runtime", "")),
            artifact_suffix=str(data.get("artifact_suffix", ".onnx")),
            layers={n: LayerRecord.from_dict(v) for n, v in (data.get("layers") or {}).items()},
            early_accuracy=_optional(data.get("early_accuracy")),
            finetune=None if finetune is None else FinetuneRecord.from_dict(finetune),
            finetune_steps=int(data.get("finetune_steps") or 0),
            stage_seconds=dict(data.get("stage_seconds") or {}),
        )


@dataclass(frozen=True)
class Retime:
    """A completed trial timed again after the search, because its own timing never settled.

    Stored on the study (a finished trial's attributes are frozen), one per trial; ``kept``
    when this sitting is steadier than the trial's own (``measure.sitting_badness``), and then
    the front, ``pick``, ``export`` and the report read its figures in place of the trial's.
    """

    latency: Measurement
    kept: bool
    fingerprint_key: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency": self.latency.to_dict(),
            "kept": self.kept,
            "fingerprint_key": self.fingerprint_key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Retime:
        key = data.get("fingerprint_key")
        return cls(
            latency=Measurement.from_dict(data["latency"]),
            kept=bool(data.get("kept")),
            fingerprint_key=None if key is None else str(key),
        )

    def applied(self, result: TrialResult) -> TrialResult:
        """``result`` with this sitting's latency figures where it was kept, else as it was."""
        if not self.kept:
            return result
        m = self.latency
        return replace(
            result,
            latency=m,
            latency_ms=m.candidate.median_ms,
            latency_ratio=m.ratio,
            reference_latency_ms=None if m.reference is None else m.reference.median_ms,
        )


@dataclass(frozen=True)
class TrialOutput:
    """``run_trial``'s return: the result, and the bytes that ship, kept out of the record."""

    result: TrialResult
    artifact: bytes  # the deployable (model<result.artifact_suffix>)
    packed: bytes  # the packed k-bit weights (model.acpk)


def objective_values(
    result: TrialResult, objectives: Sequence[str], latency_unit: str
) -> list[float]:
    """The values told to Optuna, in the study's objective order (latency as the ratio to fp32
    where ``latency_unit`` is "ratio" and it was timed beside fp32, else milliseconds)."""
    ratio = result.latency_ratio
    latency = result.latency_ms if latency_unit != "ratio" or ratio is None else ratio
    table = {"accuracy": result.accuracy, "latency": latency, "size": result.size_bytes}
    return [float(table[o]) for o in objectives]


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)
