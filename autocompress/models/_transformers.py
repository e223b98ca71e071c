"""Small transformers for the registry: a Vision Transformer and a text classifier (#19).

Attention is the backend's :class:`~autocompress.backend.Attention` (q, k, v, out as
``nn.Linear``), never ``nn.MultiheadAttention``, whose packed in-projection no plan can name.
Both models are pre-LN: ``x + attn(norm1(x))``, then ``x + fc2(act(fc1(norm2(x))))``, a final
LayerNorm, pooling over tokens and a linear head. The residual width (``dim``) is shared by the
embeddings, every LayerNorm and every block's output, so pruning leaves it whole; attention
heads and MLP hidden units are what pruning removes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autocompress.backend import Attention
from autocompress.errors import ConfigError

POOLS = ("mean", "cls")


class Block(nn.Module):
    """One pre-LN transformer block: attention then an MLP of ``mlp_ratio * dim`` hidden units."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Encoder(nn.Module):
    """Positional embedding (a learned ``nn.Parameter``), blocks, final norm, pooling, head."""

    def __init__(
        self, tokens: int, dim: int, depth: int, heads: int, mlp_ratio: float, num_classes: int
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"model.kwargs: dim {dim} is not a multiple of heads {heads}")
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor, *, cls: bool) -> torch.Tensor:
        x = self.norm(self.blocks(x + self.pos))
        return self.head(x[:, 0] if cls else x.mean(1))


class VisionTransformer(nn.Module):
    """Patches (a strided conv), an optional class token, then the encoder."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        sizes: tuple[int, int, int, float],  # dim, depth, heads, mlp_ratio
        patch: int,
        pool: str,
    ) -> None:
        super().__init__()
        dim, depth, heads, mlp_ratio = sizes
        channels, height, width = input_shape
        if height % patch or width % patch:
            raise ConfigError(
                f"model.kwargs.patch: {patch} does not divide the image ({height}x{width}); "
                "use a divisor of both sides"
            )
        if pool not in POOLS:
            raise ConfigError(f"model.kwargs.pool: {pool!r} is not a pooling; use one of {POOLS}")
        tokens = (height // patch) * (width // patch) + (pool == "cls")
        self.pool = pool
        self.patch = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.encoder = Encoder(tokens, dim, depth, heads, mlp_ratio, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        if self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        return self.encoder(x, cls=self.cls is not None)


class TextTransformer(nn.Module):
    """Token embedding, then the encoder with mean pooling; takes int64 ids (batch, seq)."""

    def __init__(
        self, seq: int, vocab: int, num_classes: int, *, sizes: tuple[int, int, int, float]
    ) -> None:
        super().__init__()
        dim, depth, heads, mlp_ratio = sizes
        self.embed = nn.Embedding(vocab, dim)
        self.encoder = Encoder(seq, dim, depth, heads, mlp_ratio, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed(tokens), cls=False)


def vit(
    input_shape: Sequence[int],
    num_classes: int,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    patch: int = 4,
    pool: str = "mean",
) -> nn.Module:
    """A small Vision Transformer for any (channels, height, width) ``patch`` divides.

    Example:
        >>> vit([1, 8, 8], 10, dim=16, patch=2)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    if len(input_shape) != 3:
        raise ConfigError(f"vit takes images (channels, height, width), not shape {input_shape}")
    sizes = (dim, depth, heads, mlp_ratio)
    return VisionTransformer(input_shape, num_classes, sizes=sizes, patch=patch, pool=pool)


def text_transformer(
    input_shape: Sequence[int],
    num_classes: int,
    vocab: int | None = None,
    dim: int = 32,
    depth: int = 2,
    heads: int = 4,
    mlp_ratio: float = 2.0,
) -> nn.Module:
    """A transformer text classifier on int64 token ids of shape (batch, seq).

    ``input_shape`` is ``[seq]``; ``vocab`` (model.kwargs.vocab) is the number of token ids.

    Example:
        >>> m = text_transformer([16], 3, vocab=50, dim=16)
        >>> m(torch.zeros(2, 16, dtype=torch.int64)).shape
        torch.Size([2, 3])
    """
    if vocab is None:
        raise ConfigError("model.kwargs.vocab is missing: text_transformer needs the vocab size")
    if len(input_shape) != 1:
        raise ConfigError(f"text_transformer takes token ids (seq,), not shape {input_shape}")
    sizes = (dim, depth, heads, mlp_ratio)
    return TextTransformer(int(input_shape[0]), vocab, num_classes, sizes=sizes)
