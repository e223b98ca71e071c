"""Attention as explicit Linear layers: nn.MultiheadAttention decomposed exactly; heads pruned."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autocompress.backend import (
    Attention,
    decompose_attention,
    layer_inventory,
    prune_heads,
    uncovered_parameters,
)
from autocompress.errors import UnsupportedPlanError
from autocompress.models import build_model


def _decomposed(mha: nn.MultiheadAttention) -> nn.Module:
    holder = nn.Sequential(copy.deepcopy(mha))
    assert decompose_attention(holder) == 1
    return holder[0]


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_decomposed_attention_gives_the_same_outputs_and_weights(
    batch_first: bool, bias: bool
) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, bias=bias, batch_first=batch_first).eval()
    ours = _decomposed(mha).eval()
    x = torch.randn(3, 5, 16)
    for kwargs in ({}, {"need_weights": False}, {"average_attn_weights": False}):
        want, want_w = mha(x, x, x, **kwargs)
        got, got_w = ours(x, x, x, **kwargs)
        assert torch.allclose(got, want, atol=1e-5)
        assert (got_w is None) == (want_w is None)
        if want_w is not None:
            assert torch.allclose(got_w, want_w, atol=1e-5)
    assert {n for n, _ in ours.named_children()} == {"q", "k", "v", "out"}


def test_cross_attention_with_other_key_widths_and_masks() -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 2, kdim=8, vdim=12, batch_first=True).eval()
    ours = _decomposed(mha).eval()
    q, k, v = torch.randn(2, 4, 16), torch.randn(2, 6, 8), torch.randn(2, 6, 12)
    pad = torch.tensor([[False] * 5 + [True], [False] * 6])
    causal = torch.ones(4, 6, dtype=torch.bool).triu(1)
    for kwargs in ({}, {"key_padding_mask": pad}, {"attn_mask": causal, "key_padding_mask": pad}):
        assert torch.allclose(ours(q, k, v, **kwargs)[0], mha(q, k, v, **kwargs)[0], atol=1e-5)
    unbatched = mha(q[0], k[0], v[0])[0]
    assert torch.allclose(ours(q[0], k[0], v[0])[0], unbatched, atol=1e-5)


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_layers_run_through_the_decomposed_attention(
    batch_first: bool,
) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=batch_first)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        want = model(x)
    assert decompose_attention(model) == 2
    with torch.no_grad():
        got = model(x)
    assert torch.allclose(got, want, atol=1e-5)
    names = [layer.name for layer in layer_inventory(model, x)]
    assert names[:4] == [f"layers.0.self_attn.{p}" for p in ("q", "k", "v", "out")]
    assert decompose_attention(model) == 0  # nothing left to replace


def test_attention_with_added_key_bias_is_refused() -> None:
    model = nn.Sequential(nn.MultiheadAttention(8, 2, add_bias_kv=True))
    with pytest.raises(UnsupportedPlanError, match="add_bias_kv"):
        decompose_attention(model)


def test_pruned_heads_are_removed_whole_and_the_rest_compute_as_before() -> None:
    torch.manual_seed(0)
    attention = Attention(16, 4, head_dim=6)
    original = copy.deepcopy(attention)
    x = torch.randn(2, 5, 16)
    assert prune_heads(attention, 0.5) == 2
    assert attention.num_heads == 2 and attention.head_dim == 6
    assert (attention.q.out_features, attention.k.out_features, attention.v.out_features) == (
        12,
        12,
        12,
    )
    assert attention.out.in_features == 12
    # each kept head's rows are an original head's rows, in order; the output is the original's
    # with the removed heads' contributions left out
    heads = original.q.weight.unflatten(0, (4, 6))
    kept = [
        h
        for h in range(4)
        for j in range(2)
        if torch.equal(heads[h], attention.q.weight[j * 6 : j * 6 + 6])
    ]
    assert len(kept) == 2 and kept == sorted(kept)
    silenced = copy.deepcopy(original)
    with torch.no_grad():
        for h in set(range(4)) - set(kept):
            silenced.out.weight[:, h * 6 : h * 6 + 6] = 0
    assert torch.allclose(attention(x), silenced(x), atol=1e-5)
    assert prune_heads(attention, 0.9) == 1  # at least one head stays


def test_uncovered_parameters_name_what_stays_fp32() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.MultiheadAttention(16, 2, batch_first=True))
    model.forward = lambda x: model[1](model[0](x), model[0](x), model[0](x))[0]  # type: ignore[method-assign]
    x = torch.randn(2, 3, 8)
    left = {name: (n, why) for name, n, why in uncovered_parameters(model, x)}
    assert left["1.in_proj_weight"] == (3 * 16 * 16, left["1.in_proj_weight"][1])
    assert "decompose_attention" in left["1.in_proj_weight"][1]
    assert "1.out_proj.weight" in left  # never called as a module
    decompose_attention(model)
    assert uncovered_parameters(model, x) == []
    vit = build_model("vit", [1, 8, 8], 10, {"dim": 16, "patch": 4, "pool": "cls", "depth": 1})
    left = {name: why for name, _, why in uncovered_parameters(vit, torch.zeros(1, 1, 8, 8))}
    assert set(left) == {
        "cls",
        "encoder.pos",
        *(
            f"encoder.{n}.{p}"
            for n in ("blocks.0.norm1", "blocks.0.norm2", "norm")
            for p in ("weight", "bias")
        ),
    }
    assert (
        "positional embedding" in left["encoder.pos"]
        and left["encoder.norm.bias"] == "normalisation"
    )
