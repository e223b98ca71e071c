"""PyTorch Inductor: PT2E + X86InductorQuantizer + torch.compile(freezing), PyTorch-native.

Realization: ``torch.export`` the folded model, annotate it with torchao's X86InductorQuantizer
(8-bit unsigned per-tensor activations, signed per-channel weights; layers whose plan says
``none`` get no config and stay fp32), calibrate, ``convert_pt2e``, and export the converted
program (the artifact). Running it: load the program and ``torch.compile`` it with freezing, which
lowers quantize/dequantize patterns to oneDNN int8 kernels (FINDINGS: without compile the PT2E
model is slower than fp32; compiling takes seconds per model and input shape, and is not timed).

k-bit weights stay exact: the weight observer's range is ``[-(2**(k-1)-1), 2**(k-1)-1]``, so its
symmetric scale ``max|w| / (2**(k-1)-1)`` is the layer's k-bit scale and the int8 weights are the
k-bit integers. Activations are calibrated (min/max) on the calibration batches.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from autocompress.backend import QuantizedWeight
from autocompress.config import TargetConfig
from autocompress.errors import UnsupportedPlanError


class CompiledDeployable:
    """A converted PT2E program, compiled by Inductor on first use (per input shape)."""

    runtime = "inductor"
    suffix = ".pt2"

    def __init__(self, artifact: bytes) -> None:
        self.artifact = artifact
        program = torch.export.load(io.BytesIO(artifact))
        self._module = program.module()
        self._compiled: Callable[[torch.Tensor], torch.Tensor] | None = None

    def _fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        if self._compiled is None:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            self._compiled = torch.compile(self._module, dynamic=False)
        return self._compiled

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        fn = self._fn()
        out = []
        for i in range(0, len(x), 500):  # one compiled shape for evaluation batches
            chunk = torch.from_numpy(np.ascontiguousarray(x[i : i + 500], dtype=np.float32))
            if len(chunk) < 500:
                pad = torch.zeros(500 - len(chunk), *chunk.shape[1:])
                out.append(fn(torch.cat([chunk, pad]))[: len(chunk)])
            else:
                out.append(fn(chunk))
        return torch.cat(out).numpy()

    def timer(self, batch: np.ndarray, threads: int) -> Callable[[], object]:
        fn = self._fn()
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.no_grad():
            fn(x)  # compile for this shape now, outside the timed sitting

        def run() -> object:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.no_grad():
                    return fn(x)
            finally:
                torch.set_num_threads(previous)

        return run


class InductorRuntime:
    """The ``inductor`` runtime (CPU, x86)."""

    name = "inductor"

    def realize(
        self,
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        target: TargetConfig,
    ) -> CompiledDeployable:
        if target.device != "cpu":
            raise UnsupportedPlanError(f"runtime inductor targets x86 cpu, not {target.device}")
        example = torch.from_numpy(calibration[0][:2])
        dynamic = ({0: torch.export.Dim("batch", min=1, max=65536)},)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                program = self._convert(model, quantized, calibration, example, dynamic)
                final = torch.export.export(program, (example,), dynamic_shapes=dynamic)
            except UnsupportedPlanError:
                raise
            except Exception as exc:  # export and PT2E raise many types
                raise UnsupportedPlanError(
                    f"PT2E/Inductor cannot realize this model: {exc}"
                ) from None
        buf = io.BytesIO()
        torch.export.save(final, buf)
        return CompiledDeployable(buf.getvalue())

    def load(self, artifact: bytes, target: TargetConfig) -> CompiledDeployable:
        return CompiledDeployable(artifact)

    def versions(self) -> dict[str, str]:
        import torchao

        return {"torch": torch.__version__, "torchao": torchao.__version__}

    @staticmethod
    def _convert(
        model: nn.Module,
        quantized: Mapping[str, QuantizedWeight],
        calibration: list[np.ndarray],
        example: torch.Tensor,
        dynamic: tuple[Mapping[int, object], ...],
    ) -> nn.Module:
        model.eval()
        exported = torch.export.export(model, (example,), dynamic_shapes=dynamic).module()
        if not quantized:
            return exported
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
        )

        quantizer = X86InductorQuantizer()
        for layer, qw in quantized.items():
            quantizer.set_module_name_qconfig(layer, _config(qw.bits))
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for batch in calibration:
                prepared(torch.from_numpy(batch))
        return convert_pt2e(prepared)


def _config(bits: int) -> object:
    """8-bit activations; weights on the k-bit grid (see the module docstring)."""
    from torchao.quantization.pt2e import MinMaxObserver, PerChannelMinMaxObserver
    from torchao.quantization.pt2e.quantizer import QuantizationConfig, QuantizationSpec

    qmax = 2 ** (bits - 1) - 1
    act = QuantizationSpec(
        dtype=torch.uint8,
        quant_min=0,
        quant_max=255,
        qscheme=torch.per_tensor_affine,
        is_dynamic=False,
        observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=1e-12),
    )
    weight = QuantizationSpec(
        dtype=torch.int8,
        quant_min=-qmax,
        quant_max=qmax,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
        is_dynamic=False,
        observer_or_fake_quant_ctr=PerChannelMinMaxObserver.with_args(eps=1e-12),
    )
    return QuantizationConfig(act, act, weight, None, False)
