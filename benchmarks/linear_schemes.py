"""Latency of one Linear-heavy model under each Linear scheme (issue 19), ONNX Runtime on CPU.

Model: two blocks of Linear 256->1024, GELU, Linear 1024->256 with a residual (4 Linear layers),
on 16 tokens, batch 1. Variants, each realized by autocompress's ONNX Runtime path from the same
k-bit weights: fp32, static int8 QDQ (``int8-static``), dynamic int8 (``int8-dynamic``) and
MatMulNBits 4-bit, block 32, accuracy_level 4 (``nbits4/b32``). Timing: one intra-op thread,
interleaved rounds (every variant once per round, so drift hits them alike), the median of
``runs`` calls per round, then the median over rounds; pin the process yourself.

Run (opt-in, ~1 minute; on a quiet machine; ``tokens=1`` is the memory-bound GEMV case):
    taskset -c 1 python benchmarks/linear_schemes.py [rounds=15] [runs=200] [tokens=16]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import torch
from torch import nn

from autocompress.backend import WeightFormat, snap_weights
from autocompress.config import TargetConfig
from autocompress.measure import this_cpu
from autocompress.runtimes import get_runtime

LAYERS = ("0.up", "0.down", "1.up", "1.down")
VARIANTS = {
    "fp32": None,
    "int8-static": 8,
    "int8-dynamic": WeightFormat(8, "dynamic"),
    "nbits4/b32": WeightFormat(4, "nbits", 32),
}


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(256, 1024), nn.Linear(1024, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.down(nn.functional.gelu(self.up(x)))


def deployables(tokens: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((8, tokens, 256)).astype(np.float32) for _ in range(4)]
    out = {}
    for name, fmt in VARIANTS.items():
        torch.manual_seed(0)
        model = nn.Sequential(Block(), Block()).eval()
        quantized = {} if fmt is None else snap_weights(model, dict.fromkeys(LAYERS, fmt))
        out[name] = get_runtime("onnxruntime").realize(
            model, quantized, calibration, TargetConfig()
        )
    return out


def main(argv: list[str]) -> int:
    args = dict(a.split("=", 1) for a in argv)
    rounds, runs = int(args.get("rounds", 15)), int(args.get("runs", 200))
    tokens = int(args.get("tokens", 16))
    batch = np.random.default_rng(1).standard_normal((1, tokens, 256)).astype(np.float32)
    deps = deployables(tokens)
    timers = {name: d.timer(batch, threads=1) for name, d in deps.items()}  # type: ignore[attr-defined]
    for call in timers.values():
        for _ in range(50):
            call()
    per_round: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(rounds):
        for name, call in timers.items():
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                call()
                samples.append(time.perf_counter() - start)
            per_round[name].append(statistics.median(samples))
    print(
        f"CPU: {this_cpu()}; 1 thread; batch 1 x {tokens} tokens; {rounds} rounds x {runs} calls"
    )
    fp32 = statistics.median(per_round["fp32"])
    print(f"{'variant':14s} {'median us':>10s} {'spread us':>10s} {'vs fp32':>8s} {'bytes':>9s}")
    for name, values in per_round.items():
        med = statistics.median(values)
        spread = max(values) - min(values)
        size = len(deps[name].artifact)  # type: ignore[attr-defined]
        print(f"{name:14s} {med * 1e6:10.1f} {spread * 1e6:10.1f} {fp32 / med:7.2f}x {size:9d}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
