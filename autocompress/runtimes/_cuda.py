"""CUDA: fp16 / bf16 (or fp32) PyTorch on a GPU, timed with CUDA events after synchronisation.

There is no int8 or sub-8-bit *convolution* kernel on CUDA in PyTorch or torchao (TensorRT is not
a dependency), so a quantized plan runs as weight-only quantization: weights are stored at k bits
(the size objective) and dequantized once at load into the compute precision. Latency is that of
the fp16/bf16 kernels, and the fingerprint says so (``precision``). Pruning speeds up for real.
Each timed call records CUDA events around the forward pass and synchronises on the end event;
the protocol uses the event time, not the host's wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from autocompress.backend import QuantizedWeight
from autocompress.config import TargetConfig
from autocompress.errors import UnsupportedPlanError
from autocompress.measure import Elapsed
from autocompress.runtimes import compute_precision
from autocompress.runtimes._eager import export_program, load_program

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def precision_of(target: TargetConfig) -> str:
    return compute_precision(target) or "fp32"


class CudaDeployable:
    runtime = "cuda"
    suffix = ".pt2"

    def __init__(self, artifact: bytes, device: str, precision: str) -> None:
        self.artifact = artifact
        self.device = torch.device(device)
        self.dtype = DTYPES[precision]
        self.module = load_program(artifact).module().to(self.device, self.dtype)

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return self.module(t.to(self.device, self.dtype)).float().cpu().numpy()

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, self.dtype)
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        module = self.module

        def run() -> Elapsed:
            with torch.no_grad():
                torch.cuda.synchronize(self.device)
                start.record()
                module(x)
                end.record()
                end.synchronize()
            return Elapsed(int(start.elapsed_time(end) * 1e6))

        return run


class CudaRuntime:
    """The ``cuda`` runtime."""

    name = "cuda"

    def realize(
        self,
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        target: TargetConfig,
    ) -> CudaDeployable:
        _check(target)
        return CudaDeployable(
            export_program(model, calibration[0][:2]), target.device, precision_of(target)
        )

    def load(self, artifact: bytes, target: TargetConfig) -> CudaDeployable:
        _check(target)
        return CudaDeployable(artifact, target.device, precision_of(target))

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__, "cuda": str(torch.version.cuda)}


def _check(target: TargetConfig) -> None:
    if not target.device.startswith("cuda"):
        raise UnsupportedPlanError(f"runtime cuda needs target.device cuda:N, not {target.device}")
    if not torch.cuda.is_available():
        raise UnsupportedPlanError("runtime cuda: no CUDA device is visible on this machine")
