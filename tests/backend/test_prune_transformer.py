"""Transformer pruning (#19): whole heads and MLP units go, the residual width stays."""

from __future__ import annotations

import copy

import torch
from torch import nn

from autocompress.backend import (
    coupled_layers,
    decompose_attention,
    head_name,
    layer_inventory,
    prune_channels,
    unprunable_layers,
)
from autocompress.config import SearchSpace
from autocompress.models import build_model
from autocompress.study._space import bind_space

BLOCK = "encoder.blocks.0"


def vit() -> nn.Module:
    torch.manual_seed(0)
    return build_model("vit", [1, 8, 8], 10, {"dim": 32, "heads": 4, "patch": 2}).eval()


def _rows_kept(original: torch.Tensor, pruned: torch.Tensor, size: int) -> list[int]:
    """Which ``size``-row blocks of ``original`` the rows of ``pruned`` are, in order."""
    blocks = original.unflatten(0, (-1, size))
    return [
        i
        for j in range(pruned.shape[0] // size)
        for i in range(blocks.shape[0])
        if torch.equal(blocks[i], pruned[j * size : (j + 1) * size])
    ]


def test_heads_and_mlp_units_are_removed_and_the_rest_compute_as_before() -> None:
    original = vit()
    model = copy.deepcopy(original)
    x = torch.randn(3, 1, 8, 8)
    plan = {f"{BLOCK}.attn.{p}": 0.5 for p in "qkv"} | {f"{BLOCK}.fc1": 0.5}
    realized = prune_channels(model, plan, x, head="encoder.head", round_to=8)
    assert realized == plan  # truthful: 2 of 4 heads, 32 of 64 hidden units
    block, before = model.encoder.blocks[0], original.encoder.blocks[0]
    attn = block.attn
    assert (attn.num_heads, attn.head_dim) == (2, 8)
    assert [attn.q.out_features, attn.k.out_features, attn.v.out_features] == [16, 16, 16]
    assert (attn.out.in_features, attn.out.out_features) == (16, 32)
    assert (block.fc1.out_features, block.fc2.in_features) == (32, 32)
    # the residual width is untouched: patch embedding, positional embedding, norms, head
    assert model.patch.out_channels == 32 and model.encoder.pos.shape == (1, 16, 32)
    assert model.encoder.head.in_features == 32
    heads = _rows_kept(before.attn.q.weight, attn.q.weight, 8)
    for p in "kv":  # k and v keep the same heads as q
        assert _rows_kept(getattr(before.attn, p).weight, getattr(attn, p).weight, 8) == heads
    units = _rows_kept(before.fc1.weight, block.fc1.weight, 1)
    # the pruned model computes the original with the removed heads and units silenced
    silenced = copy.deepcopy(original)
    with torch.no_grad():
        out, fc2 = silenced.encoder.blocks[0].attn.out, silenced.encoder.blocks[0].fc2
        for h in set(range(4)) - set(heads):
            out.weight[:, h * 8 : (h + 1) * 8] = 0
        for u in set(range(64)) - set(units):
            fc2.weight[:, u] = 0
        assert torch.allclose(model(x), silenced(x), atol=1e-5)


def test_heads_take_the_smallest_ratio_of_q_k_and_v() -> None:
    model = vit()
    prune_channels(model, {f"{BLOCK}.attn.q": 0.5}, torch.zeros(2, 1, 8, 8), head="encoder.head")
    assert model.encoder.blocks[0].attn.num_heads == 4  # k and v not in the plan: ratio 0


def test_q_k_v_are_one_group_and_the_residual_stream_gets_no_prune_parameter() -> None:
    model = vit()
    example = torch.zeros(2, 1, 8, 8)
    groups = coupled_layers(model, example, head="encoder.head")
    assert [f"{BLOCK}.attn.q", f"{BLOCK}.attn.k", f"{BLOCK}.attn.v"] in groups
    stream = ["patch", *(f"encoder.blocks.{i}.{n}" for i in (0, 1) for n in ("attn.out", "fc2"))]
    assert not [g for g in groups if "patch" in g]
    assert unprunable_layers(model, example, head="encoder.head") == stream
    # the residual stream is never pruned, whatever the plan says
    realized = prune_channels(model, dict.fromkeys(stream, 0.5), example, head="encoder.head")
    assert realized == {}
    # so a space that would prune every layer gives the stream no parameter
    space = SearchSpace.from_dict({"layers": [{"match": ".*", "bits": [8], "prune": [0, 0.5]}]})
    names = [layer.name for layer in layer_inventory(model, example)]
    bound = bind_space(space, names, head="encoder.head", coupled=groups, unprunable=stream)
    no_param = {s.layer for s in bound.slots if s.prune_param is None}
    assert no_param == {*stream, "encoder.head"}


def test_text_transformer_traces_and_prunes_on_int64_tokens() -> None:
    torch.manual_seed(0)
    model = build_model("text_transformer", [16], 3, {"vocab": 50, "dim": 32})
    tokens = torch.randint(0, 50, (2, 16))
    layers = layer_inventory(model, tokens)
    head = head_name(layers)
    assert head == "encoder.head" and layers[0].name == f"{BLOCK}.attn.q"
    assert [f"{BLOCK}.attn.q", f"{BLOCK}.attn.k", f"{BLOCK}.attn.v"] in coupled_layers(
        model, tokens, head=head
    )
    plan = {layer.name: 0.25 for layer in layers if layer.name != head}
    realized = prune_channels(model, plan, tokens, head=head, round_to=8)
    assert realized[f"{BLOCK}.attn.q"] == 0.25 and realized[f"{BLOCK}.fc1"] == 0.25
    assert model(tokens).shape == (2, 3)


def test_a_decomposed_torch_encoder_loses_heads() -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 1, enable_nested_tensor=False))
    decompose_attention(model)
    x = torch.randn(2, 5, 16)
    attn = "0.layers.0.self_attn"
    plan = {f"{attn}.{p}": 0.5 for p in "qkv"} | {"0.layers.0.linear1": 0.5}
    realized = prune_channels(model, plan, x, head=None, round_to=8)
    assert realized == plan
    assert model[0].layers[0].self_attn.num_heads == 2
    assert model(x).shape == (2, 5, 16)
