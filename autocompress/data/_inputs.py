"""What a model is fed: images as float32, token ids as int64, whatever a loader yields.

Loaders hand us float64 arrays, uint8 images or int32 token ids; a model wants float32 images
and int64 indices (``nn.Embedding`` rejects anything else). One conversion, used wherever a
batch meets a model, so a text model's tokens are never turned into floats.
"""

from __future__ import annotations

import torch


def model_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` as the model takes it: integer tensors as int64 (token ids), others as float32.

    Example:
        >>> model_input(torch.tensor([[1, 2]], dtype=torch.int32)).dtype
        torch.int64
        >>> model_input(torch.zeros(1, 2, dtype=torch.float64)).dtype
        torch.float32
    """
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        return x.float()
    if x.dtype == torch.uint8:  # 8-bit images, not indices
        return x.float()
    return x.long()
