"""The lean per-call paths (host overhead): calls that need no gradient dispatch below the
op's Python autograd kernel, the modules read parameters without nn.Module.__getattr__.
Each shortcut must give what the plain path gives, keep gradients where they are needed,
and leave hooks, dispatch modes and replaced parameters working."""
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fused_mlp
from fused_mlp._ops import backward_op, forward_op
from mlp_reference import rel_err


def _seq(widths=(8, 16, 8)):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(widths[0], widths[1]), nn.GELU(approximate="tanh"),
                         nn.Linear(widths[1], widths[2]))


@pytest.mark.parametrize("kind", ["module", "gated", "functional"])
def test_no_grad_path_matches_grad_path(kind):
    if kind == "gated":
        m = fused_mlp.FusedGatedMLP.build(8, 16, activation="silu", bias=True)
        fn = m
    else:
        seq = _seq()
        m = fused_mlp.FusedMLP.from_sequential(seq)
        w, b = [seq[0].weight, seq[2].weight], [seq[0].bias, seq[2].bias]
        fn = m if kind == "module" else (lambda x: fused_mlp.fused_mlp(x, w, b, "gelu_tanh"))
    x = torch.randn(5, 8)
    with_grad = fn(x)
    assert with_grad.grad_fn is not None
    with torch.no_grad():
        no_grad = fn(x)
    with torch.inference_mode():
        inference = fn(x)
    assert no_grad.grad_fn is None and not no_grad.requires_grad
    assert torch.equal(no_grad, with_grad.detach()) and torch.equal(inference, no_grad)


def test_gradients_flow_for_input_only_and_params_only():
    seq = _seq()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(4, 8, requires_grad=True)
    for p in seq.parameters():
        p.requires_grad_(False)
    fused(x).sum().backward()
    gx_fused, x.grad = x.grad, None
    seq(x).sum().backward()
    assert rel_err(gx_fused, x.grad) < 1e-5
    for p in seq.parameters():
        p.requires_grad_(True)
    x = x.detach()
    fused(x).sum().backward()
    g_fused = [p.grad.clone() for p in seq.parameters()]
    seq.zero_grad()
    seq(x).sum().backward()
    assert all(rel_err(a, p.grad) < 1e-5 for a, p in zip(g_fused, seq.parameters()))


def test_grad_enabled_but_nothing_requires_grad_records_no_graph():
    seq = _seq().requires_grad_(False)
    x = torch.randn(3, 8)
    out = fused_mlp.FusedMLP.from_sequential(seq)(x)
    assert out.grad_fn is None and not out.requires_grad
    assert rel_err(out, seq(x)) < 1e-5


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def test_dispatch_modes_still_see_the_no_grad_call():
    fused = fused_mlp.FusedMLP.from_sequential(_seq())
    x = torch.randn(2, 8)
    with torch.no_grad():
        want = fused(x)
        with _Recorder() as rec:
            got = fused(x)
    assert "fused_mlp.infer.default" in rec.ops  # the no-grad call's op (compact schema)
    assert torch.equal(got, want)


def test_module_hooks_fire():
    seq = _seq()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    calls = []
    fused.register_forward_pre_hook(lambda mod, args: (args[0] * 2,))
    fused.register_forward_hook(lambda mod, args, out: calls.append(out.shape) or out + 1)
    x = torch.randn(3, 8)
    with torch.no_grad():
        out = fused(x)
        want = seq(2 * x) + 1
    assert calls == [torch.Size([3, 8])]
    assert rel_err(out, want) < 1e-5


def test_replaced_parameters_and_removed_bias_are_used():
    seq = _seq()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(3, 8)
    with torch.no_grad():
        fused(x)  # plan made
        seq[0].weight = nn.Parameter(torch.randn(16, 8))
        seq[2].bias = None
        assert rel_err(fused(x), seq(x)) < 1e-5
    assert fused.state_dict().keys() == seq.state_dict().keys()
    assert all(a is b for a, b in zip(fused.parameters(), seq.parameters()))


def test_parametrized_weight_is_read_through_its_parametrization():
    import torch.nn.utils.parametrize as P

    class Double(nn.Module):
        def forward(self, w):
            return 2 * w

    seq = _seq()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(3, 8)
    fused(x)  # plan made before the parametrization
    P.register_parametrization(seq[0], "weight", Double())
    with torch.no_grad():
        assert rel_err(fused(x), seq(x)) < 1e-5


def test_backward_op_names_bad_grad_out_and_saved():
    torch.manual_seed(0)
    w = [torch.randn(16, 8), torch.randn(4, 16)]
    b = [torch.randn(16), torch.randn(4)]
    args = (w, b, [1, 1], [1, 0], 0.0, False)
    x = torch.randn(3, 8)
    out, saved = forward_op(x, *args, True)
    with pytest.raises(RuntimeError, match=r"grad_out must have shape \(3, 4\), got \(3, 5\)"):
        backward_op(torch.randn(3, 5), x, saved, *args, True, True)
    with pytest.raises(RuntimeError, match=r"saved\[0\] must have shape \(3, 16\), got \(3, 15\)"):
        backward_op(torch.randn(3, 4), x, [torch.randn(3, 15)], *args, True, True)


def test_an_error_below_autograd_leaves_autograd_on():
    seq = _seq()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    excluded = torch._C._dispatch_tls_local_exclude_set()
    with torch.no_grad(), pytest.raises(RuntimeError, match=r"weights\[0\] must have the dtype of x"):
        fused(torch.randn(2, 8, dtype=torch.float64))
    assert torch._C._dispatch_tls_local_exclude_set() == excluded
    assert fused(torch.randn(2, 8)).grad_fn is not None


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_compile_without_grad(mode):
    torch._dynamo.reset()
    fused = fused_mlp.FusedMLP.from_sequential(_seq())
    x = torch.randn(4, 8)
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    with ctx():
        want = fused(x)
        got = torch.compile(fused, fullgraph=True)(x)
    assert rel_err(got, want) < 1e-6
