"""Forward numerics of the fused op against a float64 reference, on every device.

Bound (flash-attention's rule): the fused error against float64 may be at most twice
eager PyTorch's own error in the same dtype, plus one ulp of the dtype."""
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fused_mlp
from mlp_reference import ACTS, DEVICES, DTYPES, eps, forward_bound, random_mlp, reference_mlp, rel_err


def check_forward(x, weights, biases, acts, gated=False, slope=0.01):
    out = fused_mlp.fused_mlp(x, weights, biases, acts, gated=gated, negative_slope=slope)
    ref, terms = reference_mlp(x, weights, biases, acts, gated, slope, last_terms=True)
    eager = reference_mlp(x, weights, biases, acts, gated, slope, dtype=x.dtype)
    assert out.dtype == x.dtype and out.shape == ref.shape and out.device == x.device
    assert not torch.isnan(out).any(), "NaN in the output: an element was not written"
    if ref.numel():
        bound = forward_bound(x, ref, terms, eager, weights, acts)
        assert rel_err(out, ref) <= bound, (rel_err(out, ref), bound)
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
def test_each_activation(poison, device, dtype, act, bias):
    depth = 1 + ACTS.index(act) % 4
    widths = [random.choice([3, 17, 64, 100]) for _ in range(depth + 1)]
    weights, biases, _ = random_mlp(widths, bias=bias, dtype=dtype, device=device)
    acts = [act] * depth  # the activation after every layer, the last included
    x = torch.randn(37, widths[0], dtype=dtype, device=device)
    check_forward(x, weights, biases, acts, slope=0.2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_depths(poison, device, depth):
    widths = [random.choice([8, 33, 64]) for _ in range(depth + 1)]
    weights, biases, acts = random_mlp(widths, device=device)
    check_forward(torch.randn(29, widths[0], device=device), weights, biases, acts)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "silu", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_gated(poison, device, dtype, act, bias):
    d, h = random.choice([(16, 48), (17, 33), (64, 200)])
    weights, biases, _ = random_mlp([d, h, d], gated=True, bias=bias, dtype=dtype, device=device)
    x = torch.randn(23, d, dtype=dtype, device=device)
    check_forward(x, weights, biases, [act, "identity"], gated=True)


@pytest.mark.parametrize("device", DEVICES)
def test_gated_with_extra_layers(poison, device):
    weights, biases, _ = random_mlp([12, 40, 24, 5], gated=True, device=device)
    check_forward(torch.randn(9, 12, device=device), weights, biases, ["silu", "relu", "identity"], gated=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [0, 1, 2, 7, 97, 131])
@pytest.mark.parametrize("widths", [[1, 1], [3, 17, 1], [17, 3, 17], [1000, 17, 1000], [5, 1000, 3]])
def test_odd_shapes(poison, device, dtype, m, widths):
    weights, biases, acts = random_mlp(widths, dtype=dtype, device=device)
    check_forward(torch.randn(m, widths[0], dtype=dtype, device=device), weights, biases, acts)


@pytest.mark.parametrize("device", DEVICES)
def test_leading_dims(poison, device):
    weights, biases, acts = random_mlp([16, 32, 8], device=device)
    x = torch.randn(2, 3, 5, 16, device=device)
    out = check_forward(x, weights, biases, acts)
    assert out.shape == (2, 3, 5, 8)


@pytest.mark.parametrize("device", DEVICES)
def test_strided_and_misaligned_inputs_are_copied(poison, device):
    """Like nn.Linear, the functional form accepts any x strides (it copies when it must)."""
    weights, biases, acts = random_mlp([16, 32, 8], device=device)
    base = torch.randn(64, 40, device=device)
    check_forward(base[:, 3:19], weights, biases, acts)  # non-contiguous
    flat = torch.randn(1 + 30 * 16, device=device)
    check_forward(flat[1:].view(30, 16), weights, biases, acts)  # offset by 4 bytes


def test_float64_matches_reference_exactly_enough(poison):
    weights, biases, acts = random_mlp([13, 29, 7], dtype=torch.float64, acts=["gelu", "tanh"])
    x = torch.randn(11, 13, dtype=torch.float64)
    out = fused_mlp.fused_mlp(x, weights, biases, acts)
    assert rel_err(out, reference_mlp(x, weights, biases, acts)) < 1e-13


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(0, 70),
    widths=st.lists(st.integers(1, 80), min_size=2, max_size=6),
    act=st.sampled_from(ACTS),
    bias=st.booleans(),
    gated=st.booleans(),
    seed=st.integers(0, 2**30),
)
def test_property_random_shapes(m, widths, act, bias, gated, seed):
    if gated and len(widths) < 3:
        widths = widths + [widths[-1]]
    weights, biases, _ = random_mlp(widths, gated=gated, bias=bias, seed=seed)
    n_layers = len(widths) - 1
    acts = [act] * (n_layers - 1) + ["identity"]
    x = torch.randn(m, widths[0], generator=torch.Generator().manual_seed(seed))
    check_forward(x, weights, biases, acts, gated=gated, slope=0.1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act", ACTS)
def test_nan_and_inf_propagate_like_eager(device, act):
    """A NaN in the input reaches the output as it does in eager PyTorch (no activation
    silently turns it into a number)."""
    weights, biases, _ = random_mlp([8, 8, 8], device=device)
    x = torch.randn(4, 8, device=device)
    x[1, 3] = float("nan")
    acts = [act, "identity"]
    out = fused_mlp.fused_mlp(x, weights, biases, acts)
    eager = reference_mlp(x, weights, biases, acts, dtype=torch.float32)
    assert torch.equal(torch.isnan(out), torch.isnan(eager))
