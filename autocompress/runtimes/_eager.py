"""PyTorch eager fp32: the plain reference runtime (and a ``torch.export`` artifact).

It runs fp32 plans only (pruned or not): eager PyTorch has no int8 convolution that is faster than
fp32 on CPU without compilation (FINDINGS), so a quantized plan is refused, not silently timed as
fake-quant. The artifact is a ``torch.export`` program, which loads without unpickling code.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from autocompress.backend import QuantizedWeight
from autocompress.config import TargetConfig
from autocompress.errors import UnsupportedPlanError


class ExportedDeployable:
    """A ``torch.export`` program run eagerly (or, on CUDA, on the target device)."""

    suffix = ".pt2"

    def __init__(self, artifact: bytes, runtime: str = "eager", device: str = "cpu") -> None:
        self.artifact = artifact
        self.runtime = runtime
        self.device = torch.device(device)
        self.module = load_program(artifact).module().to(self.device)

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        out = self.module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return out.cpu().numpy()

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        module = self.module

        def run() -> object:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.no_grad():
                    return module(x)
            finally:
                torch.set_num_threads(previous)

        return run


class EagerRuntime:
    """The ``eager`` runtime: fp32 PyTorch, the reference."""

    name = "eager"

    def realize(
        self,
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        target: TargetConfig,
    ) -> ExportedDeployable:
        if target.device != "cpu":
            raise UnsupportedPlanError("runtime eager times on cpu; use runtime cuda on a GPU")
        if quantized:
            raise UnsupportedPlanError(
                "runtime eager runs fp32 plans only (no fast int8 kernels without compilation); "
                "use runtime onnxruntime or inductor for quantized layers"
            )
        return ExportedDeployable(export_program(model, calibration[0][:2]), self.name)

    def load(self, artifact: bytes, target: TargetConfig) -> ExportedDeployable:
        return ExportedDeployable(artifact, self.name)

    def versions(self) -> dict[str, str]:
        return {"torch": torch.__version__}


def export_program(model: nn.Module, example: np.ndarray) -> bytes:
    """``torch.export`` the model with a dynamic batch dimension, serialised to bytes."""
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    batch = torch.export.Dim("batch", min=1, max=65536)
    model.eval()
    try:
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    except Exception as exc:  # export raises many types for untraceable models
        raise UnsupportedPlanError(f"cannot torch.export the model: {exc}") from None
    buf = io.BytesIO()
    torch.export.save(program, buf)
    return buf.getvalue()


def load_program(artifact: bytes) -> torch.export.ExportedProgram:
    return torch.export.load(io.BytesIO(artifact))
