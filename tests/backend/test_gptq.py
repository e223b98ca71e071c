"""GPTQ rounding: closer layer outputs than nearest rounding, on the same grid, same scales."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from autocompress.backend import WeightFormat, gptq_round, quantize_weight, snap_weights


def correlated(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Inputs whose features are correlated (as real activations are): where GPTQ's error
    compensation has something to exploit."""
    features = shape[1]
    mix = torch.randn(features, features, generator=torch.Generator().manual_seed(0))
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    return torch.einsum("bc...,cd->bd...", x, mix / features**0.5) + 0.5 * x


def batches(shape: tuple[int, ...], n: int = 4) -> list[torch.Tensor]:
    return [correlated(shape, seed=i) for i in range(n)]


def output_error(layer: nn.Module, rounded: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((layer(x) - rounded(x)).pow(2).mean())


@pytest.mark.parametrize(
    "layer, shape",
    [
        (nn.Linear(48, 24), (256, 48)),
        (nn.Conv2d(8, 16, 3, padding=1), (32, 8, 6, 6)),
        (nn.Conv2d(8, 16, 3, stride=2, padding="valid"), (32, 8, 7, 7)),
        (nn.Conv2d(8, 16, 3, padding="same", padding_mode="reflect"), (32, 8, 6, 6)),
    ],
    ids=["linear", "conv", "conv-strided", "conv-same-reflect"],
)
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gptq_keeps_a_layers_output_closer_than_nearest_rounding(layer, shape, bits) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(layer)
    nearest, gptq = copy.deepcopy(model), copy.deepcopy(model)
    snap_weights(nearest, {"0": bits})
    assert gptq_round(gptq, {"0": bits}, batches(shape), 4) == ["0"]
    held_out = correlated(shape, seed=99)
    assert output_error(model, gptq, held_out) < 0.8 * output_error(model, nearest, held_out)


@pytest.mark.parametrize("fmt", [WeightFormat(4), WeightFormat(4, "nbits", 16)], ids=str)
def test_rounded_weights_are_on_the_grid_they_were_rounded_with(fmt: WeightFormat) -> None:
    """QAT and snapping recompute the max-abs scale from the weights: it must be the scale GPTQ
    rounded with, so that rounding again changes nothing (the deployable runs these codes)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 32))
    before = quantize_weight(model[0].weight, fmt.bits, fmt)
    gptq_round(model, {"0": fmt}, batches((256, 64)), 4)
    rounded = model[0].weight.detach().clone()
    again = quantize_weight(rounded, fmt.bits, fmt)
    assert torch.equal(again.scale, before.scale)
    assert torch.equal(again.dequantize(), rounded)
    assert not torch.equal(again.q, before.q)  # GPTQ chose other codes than nearest rounding


@pytest.mark.parametrize("wide", [7, 8])
def test_seven_bit_and_wider_and_grouped_layers_are_left_to_nearest_rounding(wide: int) -> None:
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1, groups=4), nn.Flatten(),
        nn.Linear(8 * 5 * 5, 10),
    )  # fmt: skip
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    done = gptq_round(model, {"0": wide, "1": 4, "3": 6}, batches((16, 4, 5, 5)), 2)
    assert done == ["3"]
    assert torch.equal(model[0].weight, weights["0.weight"])
    assert torch.equal(model[1].weight, weights["1.weight"])
    assert not torch.equal(model[3].weight, weights["3.weight"])


def test_no_calibration_batches_means_nearest_rounding() -> None:
    model = nn.Sequential(nn.Linear(16, 8))
    weight = model[0].weight.detach().clone()
    assert gptq_round(model, {"0": 4}, batches((32, 16)), 0) == []
    assert torch.equal(model[0].weight, weight)


def test_layers_are_rounded_on_the_inputs_of_the_rounded_layers_before_them() -> None:
    """Sequential GPTQ: the second layer's Hessian sees the first layer's rounded output."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 8))
    seen: list[torch.Tensor] = []
    model[2].register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    first = copy.deepcopy(model[0])
    gptq_round(model, {"0": 3, "2": 3}, batches((64, 32), 1), 1)
    x = batches((64, 32), 1)[0]
    assert torch.allclose(seen[-1], torch.relu(model[0](x)), atol=1e-6)
    assert not torch.allclose(seen[-1], torch.relu(first(x)), atol=1e-3)


class _Shared(nn.Module):
    """One Linear called twice per forward (shared weights), a layer after it, and a model
    that swallows exceptions: the Hessian must still see every call's input exactly once."""

    def __init__(self) -> None:
        super().__init__()
        self.shared, self.after = nn.Linear(16, 16), nn.Linear(16, 4)
        self.after_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            h = self.shared(torch.relu(self.shared(x)))
        except Exception:  # a careless user model
            h = x
        self.after_calls += 1
        return self.after(h)


def test_hessian_stops_the_forward_once_the_layer_has_its_inputs_and_sees_every_call() -> None:
    from autocompress.backend._gptq import _hessian

    torch.manual_seed(3)
    model, xs = _Shared(), batches((32, 16), 3)
    rows = []
    for x in xs:
        with torch.no_grad():
            rows += [x, torch.relu(model.shared(x))]
    expected = sum(r.T @ r for r in rows) / sum(r.shape[0] for r in rows)
    model.after_calls = 0
    hessian = _hessian(model, model.shared, xs)
    assert hessian is not None and torch.allclose(hessian, expected, atol=1e-5)
    assert model.after_calls == 1  # only the first batch ran past the layer's last call


class _Counted(nn.Sequential):
    """A small CNN that counts its forward passes."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(8 * 6 * 6, 10),
        )  # fmt: skip
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += 1
        return super().forward(x)


def test_one_pass_rounds_as_the_layer_by_layer_form_does_in_two_forward_passes() -> None:
    """Joined batches: every layer rounded in one forward pass (plus a one-sample pass that
    counts calls), on the same Hessians as one pass per layer, so the same codes."""
    from autocompress.backend._gptq import _round_layer_by_layer

    torch.manual_seed(4)
    one_pass, by_layer = _Counted(), _Counted()
    by_layer.load_state_dict(one_pass.state_dict())
    one_pass.train()
    formats = {"0": 3, "2": 4, "5": 2}
    xs = batches((16, 4, 6, 6), 3)
    assert gptq_round(one_pass, formats, xs, 3) == ["0", "2", "5"]
    assert one_pass.passes == 2 and one_pass.training  # mode restored
    assert all(not m._forward_pre_hooks for m in one_pass.modules())
    layers = {name: dict(by_layer.named_modules())[name] for name in formats}
    with torch.no_grad():
        assert _round_layer_by_layer(by_layer, layers, formats, xs) == ["0", "2", "5"]
    assert by_layer.passes > 3 * 2  # each layer re-ran the layers before it on every batch
    for name in formats:
        a, b = dict(one_pass.named_modules())[name].weight, layers[name].weight
        assert torch.allclose(a, b, atol=1e-5), name


def test_a_pass_too_large_to_hold_goes_one_batch_at_a_time_to_the_same_codes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ONE_PASS_BYTES (estimated from the largest activation of one sample: here the first
    conv's 8 x 6 x 6 floats) the layer-by-layer form runs, and rounds as the one pass does."""
    from autocompress.backend import _gptq

    torch.manual_seed(7)
    one_pass, by_batch = _Counted(), _Counted()
    by_batch.load_state_dict(one_pass.state_dict())
    formats, xs = {"0": 3, "2": 4, "5": 2}, batches((16, 4, 6, 6), 3)
    largest = 8 * 6 * 6 * 4  # bytes of one sample's largest activation
    monkeypatch.setattr(_gptq, "ONE_PASS_BYTES", 3 * largest * 48)  # 3 x 16 samples fit
    assert gptq_round(one_pass, formats, xs, 3) == ["0", "2", "5"]
    assert one_pass.passes == 2
    monkeypatch.setattr(_gptq, "ONE_PASS_BYTES", 3 * largest * 48 - 1)
    assert gptq_round(by_batch, formats, xs, 3) == ["0", "2", "5"]
    assert by_batch.passes > 3 * 2 and all(not m._forward_hooks for m in by_batch.modules())
    for name in formats:
        a, b = (dict(m.named_modules())[name].weight for m in (one_pass, by_batch))
        assert torch.allclose(a, b, atol=1e-5), name


def test_a_shared_layer_is_rounded_once_after_its_last_call_in_the_one_pass() -> None:
    from autocompress.backend._gptq import _round_layer_by_layer

    torch.manual_seed(5)
    one_pass, by_layer = _Shared(), _Shared()
    by_layer.load_state_dict(one_pass.state_dict())
    xs = batches((32, 16), 3)
    assert gptq_round(one_pass, {"shared": 3, "after": 3}, xs, 3) == ["shared", "after"]
    layers = {"shared": by_layer.shared, "after": by_layer.after}
    with torch.no_grad():
        _round_layer_by_layer(by_layer, layers, {"shared": 3, "after": 3}, xs)
    assert torch.allclose(one_pass.shared.weight, by_layer.shared.weight, atol=1e-5)
    assert torch.allclose(one_pass.after.weight, by_layer.after.weight, atol=1e-5)


class _Tokens(nn.Module):
    """A text model whose batches differ in length (a loader's own padding)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.mix, self.head = nn.Embedding(50, 16), nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.mix(self.embed(ids))).mean(1))


def test_batches_of_different_shapes_are_rounded_one_layer_at_a_time() -> None:
    torch.manual_seed(6)
    model = _Tokens()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    xs = [torch.randint(0, 50, (8, length)) for length in (5, 9, 7)]
    assert gptq_round(model, {"mix": 3, "head": 3}, xs, 3) == ["mix", "head"]
    assert not torch.equal(model.mix.weight, before["mix.weight"])
    assert all(not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("n", [5, 300, 700])
def test_the_upper_cholesky_factor_of_the_inverse_is_gptqs(n: int) -> None:
    """One factorization of the flipped Hessian gives the factor GPTQ's three steps give."""
    from autocompress.backend._gptq import _upper_inverse_cholesky

    x = correlated((2 * n, n), seed=n)
    h = x.T @ x / (2 * n) + 0.01 * torch.eye(n)
    lower = torch.linalg.cholesky(h.double())
    expected = torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)
    got = _upper_inverse_cholesky(h)
    assert got is not None and torch.equal(got, got.triu())
    assert torch.allclose(
        got.double(), expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max())
    )
    assert _upper_inverse_cholesky(-h) is None  # not positive definite: nearest rounding
