"""Backward: gradcheck in float64 through the whole op, and float32/bf16 gradients of
fused vs eager against a float64 reference."""
import random

import pytest
import torch

import fused_mlp
from mlp_reference import ACTS, DEVICES, DTYPES, apply_act, eps, random_mlp, reference_mlp, rel_err


def _leaves(weights, biases):
    return [w for w in weights] + [b for b in biases if b is not None]


def _away_from_kinks(draw, weights, biases, acts, gated, slope, margin=1e-3):
    """x = draw(), redrawn until every pre-activation of the float64 MLP is at least
    `margin` from 0 (the kink of relu / leaky_relu); returned with requires_grad."""
    w = [t.detach() for t in weights]
    b = [None if t is None else t.detach() for t in biases]

    def lin(h, i):
        return h @ w[i].T + (b[i] if b[i] is not None else 0)

    for _ in range(1000):
        x = draw()
        zs, h, i = [], x, 0
        for li, act in enumerate(acts):
            zs.append(lin(h, i))
            h = apply_act(act, zs[-1], slope)
            if gated and li == 0:
                h = h * lin(x, 1)
                i += 1
            i += 1
        if min(z.abs().min().item() for z in zs) >= margin:
            return x.requires_grad_()
    raise AssertionError("no input away from the kinks in 1000 draws")


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gated", [False, True])
def test_gradcheck_float64(act, gated):
    if gated:
        weights, biases, _ = random_mlp([5, 7, 4], gated=True, dtype=torch.float64, requires_grad=True)
        acts = [act, "identity"]
    else:
        weights, biases, _ = random_mlp([5, 7, 6, 4], dtype=torch.float64, requires_grad=True)
        biases[1] = None
        acts = [act, act, act]
    # keep z away from the kinks of relu/leaky_relu, where finite differences are meaningless
    # (gradcheck's step is 1e-6: one z within ~1e-6 of 0 fails it; seen about once in 300 draws)
    x = _away_from_kinks(lambda: torch.randn(6, 5, dtype=torch.float64), weights, biases, acts, gated, 0.3)
    n_w = len(weights)

    def f(x, *params):
        ws = list(params[:n_w])
        it = iter(params[n_w:])
        bs = [next(it) if b is not None else None for b in biases]
        return fused_mlp.fused_mlp(x, ws, bs, acts, gated=gated, negative_slope=0.3)

    assert torch.autograd.gradcheck(f, (x, *_leaves(weights, biases)), atol=1e-6, rtol=1e-5)


def _grads(fn, x, weights, biases, g):
    """Gradients of <fn(x, weights, biases), g> with respect to x and every parameter."""
    leaves = [x] + _leaves(weights, biases)
    out = fn(x, weights, biases)
    return torch.autograd.grad(out, leaves, g.to(out.dtype))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("gated", [False, True])
def test_gradients_match_eager(poison, device, dtype, act, gated):
    widths = [random.choice([16, 17, 64]), random.choice([32, 45]), random.choice([8, 24])]
    if not gated:
        widths.insert(2, 40)
    weights, biases, _ = random_mlp(widths, gated=gated, dtype=dtype, device=device, requires_grad=True)
    if not gated:
        biases[0] = None
    acts = [act] * (len(widths) - 2) + ["identity"]
    # Through a relu kink a gradient follows the sign of z. Two correct 16-bit runs can round a
    # hidden h one ulp apart and so put a pre-activation within ~eps·rms(z) of 0 on opposite
    # sides: one such flip moved a gradient 6x past the bound (1 run in ~40 failed). So for
    # kinked activations in 16 bits the reference stores h in the dtype as both runs do, and x
    # is redrawn (8 rows, to keep that cheap) until every pre-activation of that reference is
    # at least eps·rms(z) from the kink: then every correct run takes the reference's side.
    kinked = act in ("relu", "leaky_relu") and dtype != torch.float32
    rows = 8 if kinked else 53
    for _ in range(5000):
        x = torch.randn(rows, widths[0], dtype=dtype, device=device)
        pre = []
        with torch.no_grad():
            reference_mlp(x, weights, biases, acts, gated, 0.2, store=dtype, pre=pre)
        if not kinked or all(bool((z.abs() >= eps(dtype) * z.square().mean().sqrt()).all()) for z in pre):
            break
    else:
        pytest.fail("no input found with every pre-activation away from the kink")
    x.requires_grad_()
    g = torch.randn(rows, widths[-1], dtype=torch.float64, device=device)

    def fused(x, w, b):
        return fused_mlp.fused_mlp(x, w, b, acts, gated=gated, negative_slope=0.2)

    def eager(x, w, b):
        return reference_mlp(x, w, b, acts, gated, 0.2, dtype=dtype)

    def ref(x, w, b):
        return reference_mlp(x, w, b, acts, gated, 0.2, store=dtype if kinked else None)

    up = lambda t: None if t is None else t.detach().double().requires_grad_()  # noqa: E731
    g_ref = _grads(ref, up(x), [up(w) for w in weights], [up(b) for b in biases], g)
    g_fused = _grads(fused, x, weights, biases, g)
    g_eager = _grads(eager, x, weights, biases, g)
    for k, (gf, ge, gr) in enumerate(zip(g_fused, g_eager, g_ref)):
        assert gf.dtype == dtype and not torch.isnan(gf).any(), f"gradient {k}: NaN or wrong dtype"
        bound = 2 * rel_err(ge, gr) + 4 * eps(dtype)
        assert rel_err(gf, gr) <= bound, (k, rel_err(gf, gr), bound)


@pytest.mark.parametrize("device", DEVICES)
def test_grad_of_input_only_and_params_only(device):
    weights, biases, acts = random_mlp([8, 16, 4], device=device)
    x = torch.randn(10, 8, device=device, requires_grad=True)
    fused_mlp.fused_mlp(x, weights, biases, acts).sum().backward()
    ref_x = x.detach().double().requires_grad_()
    reference_mlp(ref_x, weights, biases, acts).sum().backward()
    assert rel_err(x.grad, ref_x.grad) < 1e-5
    w = [t.detach().requires_grad_() for t in weights]
    fused_mlp.fused_mlp(x.detach(), w, biases, acts).sum().backward()
    assert all(t.grad is not None for t in w)


@pytest.mark.parametrize("device", DEVICES)
def test_zero_rows_backward_gives_zero_param_grads(device):
    weights, biases, acts = random_mlp([8, 16, 4], device=device, requires_grad=True)
    x = torch.randn(0, 8, device=device, requires_grad=True)
    fused_mlp.fused_mlp(x, weights, biases, acts).sum().backward()
    assert x.grad.shape == (0, 8)
    for t in weights + biases:
        assert torch.equal(t.grad, torch.zeros_like(t))


def test_double_backward_is_a_clear_error():
    weights, biases, acts = random_mlp([4, 6, 3], dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    (gx,) = torch.autograd.grad(fused_mlp.fused_mlp(x, weights, biases, acts).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()
