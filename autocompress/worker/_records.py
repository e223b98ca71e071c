"""The trial record's parts built from what a trial did (``record/`` holds the types)."""

from __future__ import annotations

from typing import Any

from autocompress.plan import CompressionPlan
from autocompress.record import FinetuneRecord, LayerRecord


def layer_records(
    plan: CompressionPlan, before: dict[str, int], after: dict[str, int], runtime: str
) -> dict[str, LayerRecord]:
    out = {}
    for name, n0 in before.items():
        layer = plan.layers.get(name)
        out[name] = LayerRecord(
            bits=None if layer is None else layer.weight_bits,
            prune_ratio=0.0 if layer is None else layer.prune_ratio,
            channels_before=n0,
            channels=after.get(name, n0),
            realized_ratio=1.0 - after.get(name, n0) / n0,
            scheme=None if layer is None else _scheme(layer, runtime),
        )
    return out


def _scheme(layer: Any, runtime: str) -> str | None:
    """The ONNX Runtime kernel a quantized layer got, and what it buys (``SCHEME_LEGEND``)."""
    if layer.weight_bits is None or runtime != "onnxruntime":
        return None
    if layer.scheme == "nbits":
        return f"nbits{layer.weight_bits}/b{layer.block_size}"
    return "int8-dynamic" if layer.scheme == "dynamic" else "int8-static"


def finetune_record(report: Any) -> FinetuneRecord:
    return FinetuneRecord(
        steps=report.steps,
        seconds=report.seconds,
        lr=report.lr,
        first_loss=report.first_loss,
        last_loss=report.last_loss,
        losses=tuple(report.losses),
        feature_layers=report.feature_layers,
    )
