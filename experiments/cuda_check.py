"""CUDA figures: what the ``cuda`` runtime's latency objective reports on a GPU.

For refnet (the reference model, 1x28x28) and resnet18 (torchvision stem, 1 channel), fp32 /
fp16 / bf16 compute, dense and with half of every prunable layer's channels removed (torch-pruning,
as a trial prunes), at batch 1 and 64: the median per call under our latency protocol (CUDA
events around each forward pass, interleaved with the dense fp32 model as reference). Latency
depends on shapes, not weight values, so the models keep their initial weights.

Run (on a machine with a CUDA device): python experiments/cuda_check.py [out.json]
"""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import torch

from autocompress.backend import fold_batchnorm, head_name, layer_inventory, prune_channels
from autocompress.config import MeasureConfig, TargetConfig
from autocompress.measure import measure
from autocompress.models import build_model
from autocompress.runtimes import get_runtime

SHAPE = (1, 28, 28)
PROTOCOL = MeasureConfig(warmup=20, repeats=200, min_time_s=0.5, attempts=2)


def variants(name: str) -> dict[str, torch.nn.Module]:
    dense = build_model(name, SHAPE, 10).eval()
    pruned = copy.deepcopy(dense)
    example = torch.zeros(2, *SHAPE)
    inventory = layer_inventory(pruned, example)
    head = head_name(inventory)
    layers = [info.name for info in inventory if info.name != head]
    prune_channels(pruned, dict.fromkeys(layers, 0.5), example, head=head)
    for m in (dense, pruned):
        fold_batchnorm(m)
    return {"dense": dense, "pruned50": pruned}


def main(out: str | None) -> None:
    runtime = get_runtime("cuda")
    rows = []
    for name in ("refnet", "resnet18"):
        models = variants(name)
        calibration = [np.zeros((2, *SHAPE), np.float32)]
        for batch in (1, 64):
            x = np.random.default_rng(0).standard_normal((batch, *SHAPE)).astype(np.float32)
            ref_target = TargetConfig(runtime="cuda", device="cuda:0", precision="fp32")
            reference = runtime.realize(models["dense"], {}, calibration, ref_target)
            ref_timer = reference.timer(x, 1)
            for variant, model in models.items():
                for precision in ("fp32", "fp16", "bf16"):
                    target = TargetConfig(runtime="cuda", device="cuda:0", precision=precision)
                    deployable = runtime.realize(model, {}, calibration, target)
                    sitting = measure(deployable.timer(x, 1), ref_timer, PROTOCOL)
                    row = {
                        "model": name,
                        "variant": variant,
                        "precision": precision,
                        "batch": batch,
                        "median_ms": round(sitting.candidate.median_ms, 4),
                        "spread": round(sitting.candidate.spread, 3),
                        "speedup_vs_dense_fp32": round(1 / (sitting.ratio or float("nan")), 2),
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    info = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "rows": rows}
    if out:
        with open(out, "w") as f:
            json.dump(info, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
