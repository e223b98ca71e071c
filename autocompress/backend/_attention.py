"""Multi-head attention written with one ``nn.Linear`` per projection, so plans can see it.

``nn.MultiheadAttention`` keeps its q/k/v in-projection as a raw ``Parameter`` and never calls
``out_proj`` as a module: neither is a conv/linear layer of the forward pass, so no plan could
quantize or prune them (46% of a tiny ViT's parameters never appeared in a plan, #19). Here
q, k, v and out are ``nn.Linear`` modules named ``<attention>.q``, ``.k``, ``.v``, ``.out``.

Head pruning lives here too (it needs no dependency graph): q, k and v lose whole heads, each of
``head_dim`` rows, and ``out`` loses the matching input columns; ``num_heads`` follows.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from autocompress.errors import UnsupportedPlanError

PROJECTIONS = ("q", "k", "v")


class Attention(nn.Module):
    """Self-attention on (batch, tokens, dim): explicit q, k, v, out projections.

    Example:
        >>> Attention(16, 4)(torch.zeros(2, 5, 16)).shape
        torch.Size([2, 5, 16])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        head_dim: int | None = None,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        head_dim = head_dim or dim // num_heads
        inner = num_heads * head_dim
        self.num_heads, self.head_dim, self.dropout = num_heads, head_dim, dropout
        self.q = nn.Linear(dim, inner, bias=bias)
        self.k = nn.Linear(kdim or dim, inner, bias=bias)
        self.v = nn.Linear(vdim or dim, inner, bias=bias)
        self.out = nn.Linear(inner, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attend(x, x, x)[0]

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output (batch, tokens, dim) and attention weights (batch, heads, tokens, sources).

        ``mask``: added to the scores (float) or -inf where True (bool), broadcast to
        (batch, heads, tokens, sources).
        """
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(value))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if mask is not None:
            scores = (
                scores.masked_fill(mask, float("-inf"))
                if mask.dtype == torch.bool
                else (scores + mask)
            )
        weights = F.dropout(scores.softmax(-1), self.dropout, self.training)
        out = (weights @ v).transpose(1, 2).flatten(2)
        return self.out(out), weights

    def _qkv(self) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        return self.q, self.k, self.v

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)


class DecomposedMultiheadAttention(Attention):
    """A drop-in for ``nn.MultiheadAttention``: its call signature and (output, weights) return.

    ``in_proj_bias = None`` and ``_qkv_same_embed_dim = False`` read to
    ``nn.TransformerEncoderLayer`` as "no fused fast path", which would need the packed
    in-projection this module has split into q, k and v.
    """

    in_proj_bias = None
    _qkv_same_embed_dim = False

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        if mha.bias_k is not None or mha.add_zero_attn:
            raise UnsupportedPlanError(
                "nn.MultiheadAttention with add_bias_kv or add_zero_attn cannot be decomposed; "
                "build it without them"
            )
        super().__init__(
            mha.embed_dim,
            mha.num_heads,
            bias=mha.in_proj_bias is not None,
            kdim=mha.kdim,
            vdim=mha.vdim,
            dropout=mha.dropout,
        )
        self.batch_first = mha.batch_first
        _copy_projections(self, mha)

    def forward(  # type: ignore[override]  # nn.MultiheadAttention's signature
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        batched = query.dim() == 3
        if not batched:  # (tokens, dim): one sequence
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        shape = (query.shape[0], self.num_heads, query.shape[1], key.shape[1])
        mask = _merged_mask(attn_mask, key_padding_mask, is_causal, shape)
        out, weights = self.attend(query, key, value, mask)
        if not batched:
            out, weights = out.squeeze(0), weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, weights.mean(-3) if average_attn_weights else weights


def decompose_attention(model: nn.Module) -> int:
    """Replace every ``nn.MultiheadAttention`` in ``model`` (in place) by an equivalent module
    with q, k, v, out ``nn.Linear`` projections; return how many were replaced.

    Called once where a model enters the pipeline, before its layers are listed, so every
    projection is a layer a plan can name.

    Example:
        >>> m = nn.Sequential(nn.MultiheadAttention(8, 2))
        >>> decompose_attention(m), type(m[0]).__name__
        (1, 'DecomposedMultiheadAttention')
    """
    found = [
        (parent, child_name, child)
        for parent in model.modules()
        for child_name, child in parent.named_children()
        if isinstance(child, nn.MultiheadAttention)
    ]
    for parent, child_name, mha in found:
        replacement = DecomposedMultiheadAttention(mha).train(mha.training)
        setattr(parent, child_name, replacement.to(mha.out_proj.weight.device))
    return len(found)


def attention_layers(model: nn.Module) -> dict[str, Attention]:
    """The model's explicit attention modules by name (their heads are pruned as a unit)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, Attention)}


def prune_heads(attention: Attention, ratio: float, *, importance: str = "magnitude") -> int:
    """Remove ``round(ratio * num_heads)`` whole heads (at least one kept); return heads kept.

    Heads are scored by the L2 norm of their q, k, v rows and out columns (``random`` for a
    random choice), the group-magnitude criterion the channel pruning uses by default.
    """
    heads, hd = attention.num_heads, attention.head_dim
    keep = max(1, heads - round(ratio * heads))
    if keep >= heads:
        return heads
    if importance == "random":
        scores = torch.rand(heads)
    else:
        rows = [p.weight.detach().unflatten(0, (heads, hd)) for p in attention._qkv()]
        cols = attention.out.weight.detach().unflatten(1, (heads, hd)).transpose(0, 1)
        scores = sum(t.pow(2).flatten(1).sum(1) for t in [*rows, cols])
    kept = torch.sort(torch.argsort(torch.as_tensor(scores), descending=True)[:keep]).values
    index = (kept[:, None] * hd + torch.arange(hd)).flatten()
    for proj in attention._qkv():
        _select(proj, index, dim=0)
    _select(attention.out, index, dim=1)
    attention.num_heads = keep
    return keep


def _select(linear: nn.Linear, index: torch.Tensor, *, dim: int) -> None:
    """Keep ``index`` along the weight's ``dim`` (0: outputs, with the bias; 1: inputs)."""
    linear.weight = nn.Parameter(linear.weight.detach().index_select(dim, index).clone())
    if dim == 0:
        if linear.bias is not None:
            linear.bias = nn.Parameter(linear.bias.detach()[index].clone())
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def _copy_projections(target: Attention, mha: nn.MultiheadAttention) -> None:
    """Split the packed in-projection (or the separate q/k/v weights) into the Linear layers."""
    e = mha.embed_dim
    with torch.no_grad():
        if mha.in_proj_weight is not None:
            weights: list[Any] = list(mha.in_proj_weight.split(e))
        else:
            weights = [mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight]
        biases = None if mha.in_proj_bias is None else mha.in_proj_bias.split(e)
        for i, proj in enumerate(target._qkv()):
            proj.weight.copy_(weights[i])
            if biases is not None and proj.bias is not None:
                proj.bias.copy_(biases[i])
        target.out.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None and target.out.bias is not None:
            target.out.bias.copy_(mha.out_proj.bias)


def _merged_mask(
    attn_mask: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    is_causal: bool,
    shape: tuple[int, int, int, int],
) -> torch.Tensor | None:
    """One mask broadcast to ``shape`` (batch, heads, tokens, sources), in
    nn.MultiheadAttention's conventions: bool True = not attended, float = added to the scores."""
    batch, heads, tokens, sources = shape
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(tokens, sources, dtype=torch.bool).triu(1)
    parts = []
    if attn_mask is not None:  # (tokens, sources) or (batch * heads, tokens, sources)
        lead = (batch, heads) if attn_mask.dim() == 3 else (1, 1)
        parts.append(attn_mask.reshape(*lead, tokens, sources))
    if key_padding_mask is not None:
        parts.append(key_padding_mask.reshape(batch, 1, 1, sources))
    if len(parts) < 2:
        return parts[0] if parts else None
    key_mask, padding = (
        torch.zeros(p.shape).masked_fill(p, float("-inf")) if p.dtype == torch.bool else p
        for p in parts
    )
    return key_mask + padding
