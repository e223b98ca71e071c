"""TrialResult round-trips through JSON like CompressionPlan and Task, and reads older records."""

from __future__ import annotations

import json

from autocompress.measure import LatencyStats, Measurement
from autocompress.record import (
    FinetuneRecord,
    LayerRecord,
    TrialResult,
)


def _result() -> TrialResult:
    cand = LatencyStats(0.2, 0.19, 0.22, 0.21, 0.03, 400)
    ref = LatencyStats(0.5, 0.49, 0.52, 0.5, 0.02, 400)
    return TrialResult(
        accuracy=0.9012,
        latency_ms=0.2,
        latency_ratio=0.4,
        reference_latency_ms=0.5,
        size_bytes=41_234,
        deploy_bytes=104_759,
        params=77_000,
        latency=Measurement(cand, ref, 2, True, 0.01, [1]),
        fingerprint={"key": "abc123", "cpu": "AMD EPYC", "runtime": "onnxruntime"},
        runtime="onnxruntime",
        artifact_suffix=".onnx",
        layers={
            "stem.0": LayerRecord(8, 0.0, 16, 16, 0.0),
            "fc": LayerRecord(4, 0.5, 64, 32, 0.5, scheme="int4-weights-on-int8"),
        },
        early_accuracy=0.82,
        finetune=FinetuneRecord(60, 17.5, 0.03, 2.1, 0.4, (2.1, 1.0, 0.4)),
        finetune_steps=60,
        stage_seconds={"prune": 0.4, "finetune": 17.5},
    )


def test_result_round_trips_through_json() -> None:
    result = _result()
    back = TrialResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result
    assert back.fingerprint_key == "abc123"
    assert back.finetune is not None and back.finetune.seconds_per_step == 17.5 / 60


def test_post_training_result_round_trips() -> None:
    result = TrialResult.from_dict({**_result().to_dict(), "finetune": None, "finetune_steps": 0})
    assert TrialResult.from_dict(result.to_dict()) == result
    assert result.finetune is None


def test_a_record_stored_before_the_typed_result_still_reads() -> None:
    old = _result().to_dict()
    for key in ("finetune_steps", "artifact_suffix"):
        old.pop(key)
    for layer in old["layers"].values():
        layer.pop("scheme")
    old["finetune"].pop("losses")
    back = TrialResult.from_dict(old)
    assert back.finetune_steps == 0 and back.artifact_suffix == ".onnx"
    assert back.layers["fc"].scheme is None and back.finetune.losses == ()
