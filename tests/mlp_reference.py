"""Float64 reference and random test MLPs shared by the tests."""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

ACTS = ["identity", "relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid", "leaky_relu"]
DTYPES = [torch.float32, torch.bfloat16, torch.float16]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def apply_act(name, z, slope=0.01):
    return {
        "identity": lambda t: t,
        "relu": F.relu,
        "gelu": F.gelu,
        "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
        "silu": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "leaky_relu": lambda t: F.leaky_relu(t, slope),
    }[name](z)


def reference_mlp(x, weights, biases, acts, gated=False, slope=0.01, dtype=torch.float64, last_terms=False,
                  store=None, pre=None):
    """The MLP written with plain torch ops, computed in `dtype` (float64: the reference;
    the test dtype: what eager PyTorch itself achieves). last_terms=True also returns
    |h|·|W_L|ᵀ + |b_L|, the magnitude of what the last layer sums (see output_error_scale).
    store: round each hidden layer's output to this dtype, as a 16-bit forward stores it.
    pre: a list that receives each activation's input (the gate's, for a gated layer)."""
    c = lambda t: None if t is None else t.to(dtype)  # noqa: E731
    h = c(x)
    ws, bs = [c(w) for w in weights], [c(b) for b in (biases or [None] * len(weights))]
    if gated:
        g = F.linear(h, ws[0], bs[0])
        u = F.linear(h, ws[1], bs[1])
        if pre is not None:
            pre.append(g)
        h = apply_act(acts[0], g, slope) * u
        ws, bs, acts = ws[2:], bs[2:], acts[1:]
        if store is not None:
            h = h.to(store).to(dtype)
    terms = None
    for i, (w, b, a) in enumerate(zip(ws, bs, acts)):
        terms = F.linear(h.abs(), w.abs(), None if b is None else b.abs())
        z = F.linear(h, w, b)
        if pre is not None:
            pre.append(z)
        h = apply_act(a, z, slope)
        if store is not None and i < len(ws) - 1:
            h = h.to(store).to(dtype)
    return (h, terms) if last_terms else h


def output_error_scale(ref, terms, fan_in):
    """The relative rounding error a correct float sum may leave in the output, in units of
    eps: sqrt(fan_in) (the statistical error of a fan_in-term sum, Higham) times
    ‖|h|·|W|ᵀ + |b|‖ / ‖ref‖ (the condition of the final dot products). Large when the
    output is a cancellation of much larger terms, where a relative error against the tiny
    result measures luck, not accuracy (e.g. a single output element)."""
    return fan_in ** 0.5 * (terms.norm() / ref.double().norm().clamp_min(1e-30)).item()


def random_mlp(widths, acts=None, gated=False, bias=True, dtype=torch.float32, device="cpu",
               requires_grad=False, seed=None):
    """Random weights (nn.Linear-like scale, never zeros) for widths [in, h1, ..., out].
    gated: widths [in, hidden, out, ...]; gate and up both map in -> hidden."""
    gen = torch.Generator().manual_seed(seed if seed is not None else random.randrange(1 << 30))
    shapes = []
    for i in range(len(widths) - 1):
        shapes.append((widths[i + 1], widths[i]))
        if gated and i == 0:
            shapes.append((widths[1], widths[0]))
    weights, biases = [], []
    for o, i in shapes:
        w = (torch.rand(o, i, generator=gen, dtype=torch.float64) * 2 - 1) / i ** 0.5
        b = (torch.rand(o, generator=gen, dtype=torch.float64) * 2 - 1) / i ** 0.5 if bias else None
        weights.append(w.to(dtype=dtype, device=device).requires_grad_(requires_grad))
        biases.append(None if b is None else b.to(dtype=dtype, device=device).requires_grad_(requires_grad))
    if acts is None:
        acts = ["relu"] * (len(widths) - 2) + ["identity"]
    return weights, biases, list(acts)


def rel_err(out, ref):
    out, ref = out.double(), ref.double()
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def eps(dtype):
    return torch.finfo(dtype).eps


def forward_bound(x, ref, terms, eager, weights, acts):
    """Twice eager's own error, plus the rounding a correct sum leaves in the last layer, plus
    a float32 eps per hidden layer: each activation is evaluated in float32 by our own erf /
    tanh / exp, within an ulp or two of torch's but not the same, and a tiny net carries that
    to the output whole (hypothesis found 4 -> 1 -> 1 gelu at 1.7 eps where torch's CPU erf
    happened to be exact)."""
    fan_in = weights[-1].shape[1]
    hidden = len(acts) - 1
    return (2 * rel_err(eager, ref) + eps(x.dtype) * max(1.0, output_error_scale(ref, terms, fan_in))
            + eps(torch.float32) * hidden)
