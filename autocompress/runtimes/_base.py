"""The runtime seam: turn a trained, compressed torch model into a deployable and run it.

One verb per stage, one small registry (torchao's ``quantize_`` + handler registry): a runtime
*realizes* a model for a target, and can *load* a realized artifact again on another process or
machine (for timing on a remote node, for export, for verify). A deployable predicts (for
accuracy) and builds a zero-argument timing callable (for latency). That is the whole surface.
A runtime that cannot run a plan raises :class:`UnsupportedPlanError`; nothing falls back
silently to another runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from torch import nn

    from autocompress.backend import QuantizedWeight
    from autocompress.config import TargetConfig


class Deployable(Protocol):
    """A realized model: the bytes that would ship, and how to run them."""

    runtime: str
    artifact: bytes  # exactly what is saved and shipped (its length is the deploy size)
    suffix: str  # file suffix of the artifact, e.g. ".onnx"

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Logits for a batch of normalised inputs (any batch size). Used for accuracy."""
        ...

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        """A zero-argument callable running one inference on ``batch`` with ``threads`` threads.

        Called by the latency protocol, which owns warm-up, repeats, pinning and the lock.
        """
        ...


class Runtime(Protocol):
    """Realizes models for one kind of deployment (ONNX Runtime, Inductor, eager...)."""

    name: str

    def realize(
        self,
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        target: TargetConfig,
    ) -> Deployable:
        """Build the deployable. ``model`` has BN folded and quantized weights on their grid;
        ``quantized`` gives each quantized layer's integer weights and scales; ``calibration``
        holds input batches for activation ranges. May be slow (export, compile)."""
        ...

    def load(self, artifact: bytes, target: TargetConfig) -> Deployable:
        """Rebuild a deployable from its artifact bytes (on any process or node)."""
        ...

    def versions(self) -> dict[str, str]:
        """Library versions that go into the device fingerprint."""
        ...
