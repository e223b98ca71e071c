"""The torch compression backend: one entry point per stage.

prune_channels -> recalibrate_batchnorm -> finetune (KD, float, BN live) -> fold_batchnorm ->
gptq_round (below 8 bits) + snap_weights (PTQ) | finetune (QAT + KD) -> a runtime realizes the
result. Each stage acts in place on a torch model and is skipped by the trial when the plan does
not ask for it.
"""

from typing import TYPE_CHECKING

from autocompress.backend._attention import (
    Attention,
    DecomposedMultiheadAttention,
    attention_layers,
    decompose_attention,
    prune_heads,
)
from autocompress.backend._batchnorm import fold_batchnorm, recalibrate_batchnorm
from autocompress.backend._features import kept_channels
from autocompress.backend._finetune import (
    FinetuneReport,
    FinetuneSettings,
    adamw,
    distillation_loss,
    effective_lr,
    finetune,
    teaches,
)
from autocompress.backend._gptq import gptq_round
from autocompress.backend._layers import (
    COMPRESSIBLE,
    LayerInfo,
    channel_counts,
    head_name,
    layer_inventory,
    parameter_count,
    resolve_layers,
    uncovered_parameters,
)
from autocompress.backend._pack import (
    pack_bits,
    packed_size,
    read_packed,
    read_packed_codes,
    unpack_bits,
    write_packed,
)
from autocompress.backend._quant import (
    ActivationFakeQuant,
    QuantizedWeight,
    WeightFormat,
    attach_fake_quant,
    fake_quantize_dynamic,
    fake_quantize_weight,
    quantize_weight,
    snap_weights,
    weight_formats,
)

if TYPE_CHECKING:  # the lazy names of __getattr__, for type checkers
    from autocompress.backend._prune import (
        IMPORTANCES,
        coupled_layers,
        get_importance,
        prune_channels,
        unprunable_layers,
    )

__all__ = [
    "COMPRESSIBLE",
    "IMPORTANCES",
    "ActivationFakeQuant",
    "Attention",
    "DecomposedMultiheadAttention",
    "FinetuneReport",
    "FinetuneSettings",
    "LayerInfo",
    "QuantizedWeight",
    "WeightFormat",
    "adamw",
    "attach_fake_quant",
    "attention_layers",
    "channel_counts",
    "coupled_layers",
    "decompose_attention",
    "distillation_loss",
    "effective_lr",
    "fake_quantize_dynamic",
    "fake_quantize_weight",
    "finetune",
    "fold_batchnorm",
    "get_importance",
    "gptq_round",
    "head_name",
    "kept_channels",
    "layer_inventory",
    "pack_bits",
    "packed_size",
    "parameter_count",
    "prune_channels",
    "prune_heads",
    "quantize_weight",
    "read_packed",
    "read_packed_codes",
    "recalibrate_batchnorm",
    "resolve_layers",
    "snap_weights",
    "teaches",
    "uncovered_parameters",
    "unpack_bits",
    "unprunable_layers",
    "weight_formats",
    "write_packed",
]


_PRUNING = (
    "prune_channels",
    "coupled_layers",
    "unprunable_layers",
    "get_importance",
    "IMPORTANCES",
)


def __getattr__(name: str) -> object:  # torch_pruning is imported only when pruning is used
    if name in _PRUNING:
        from autocompress.backend import _prune

        return getattr(_prune, name)
    raise AttributeError(name)
