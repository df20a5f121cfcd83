"""The registered ops as torch sees them: opcheck (schema, fake kernels, autograd
registration, AOT dispatch), torch.compile without graph breaks, autocast, and the
save=False contract."""
import pytest
import torch
from torch import nn

import fused_mlp
from fused_mlp._ops import backward_op, config_id, forward_op, infer_op
from mlp_reference import DEVICES, random_mlp, reference_mlp, rel_err


def op_args(device, dtype=torch.float32, gated=False, requires_grad=True, save=True):
    widths = [12, 20, 6] if gated else [12, 20, 16, 6]
    weights, biases, _ = random_mlp(widths, gated=gated, dtype=dtype, device=device, requires_grad=requires_grad)
    biases[1] = None
    has_bias = [int(b is not None) for b in biases]
    acts = [4, 0] if gated else [3, 7, 0]
    x = torch.randn(9, 12, dtype=dtype, device=device, requires_grad=requires_grad)
    return (x, weights, [b for b in biases if b is not None], has_bias, acts, 0.1, gated, save)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_opcheck_forward(device, gated, dtype):
    if device == "cuda" and dtype == torch.float64:
        pytest.skip("float64 is CPU-only")
    torch.library.opcheck(forward_op, op_args(device, dtype, gated))
    torch.library.opcheck(forward_op, op_args(device, dtype, gated, requires_grad=False, save=False))


def infer_args(device, dtype=torch.float32, gated=False):
    x, weights, biases, has_bias, acts, slope, gated, _ = op_args(device, dtype, gated, requires_grad=False)
    return (x, weights + biases, config_id(acts, has_bias, slope, gated))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_infer_is_forward_without_saving(device, gated, dtype):
    """The compact inference op: same numbers as forward(save=False) (bit for bit: the same
    kernels), and what torch.library.opcheck checks of its schema and fake kernel."""
    if device == "cuda" and dtype == torch.float64:
        pytest.skip("float64 is CPU-only")
    args = op_args(device, dtype, gated, requires_grad=False, save=False)
    x, weights, biases, has_bias, acts, slope = args[:6]
    out, saved = forward_op(*args)
    params, cid = weights + biases, config_id(acts, has_bias, slope, gated)
    got = infer_op(x, params, cid)
    assert saved == [] and torch.equal(got, out)
    names = {v: k for k, v in fused_mlp._activations.CODES.items()}
    ref = reference_mlp(x, weights, [biases[0], None] + biases[1:], [names[a] for a in acts], gated=gated, slope=slope)
    # float64: the core keeps negative_slope as a float32 (0.1 -> 0.10000000149)
    assert rel_err(got, ref) < (1e-5 if dtype == torch.float32 else 1e-8)
    torch.library.opcheck(infer_op, (x, params, cid), test_utils=("test_schema", "test_faketensor"))


def test_config_ids_are_interned_and_checked():
    a = config_id([3, 7, 0], [1, 0, 1], 0.1, False)
    assert config_id([3, 7, 0], [1, 0, 1], 0.1, False) == a
    assert fused_mlp._C.config_id((3, 7, 0), (1, 0, 1), 0.1, False) == a  # the C table, not only the memo
    assert config_id([3, 7, 0], [1, 0, 1], 0.2, False) != a
    assert config_id([4, 0], [1, 0, 1], 0.1, True) != a
    assert fused_mlp._C.config_info(a) == ((3, 7, 0), (1, 0, 1), pytest.approx(0.1), False)
    with pytest.raises(ValueError, match="has_bias entry per weight"):
        fused_mlp._C.config_id((3, 0), (1, 0, 1), 0.1, False)
    with pytest.raises(ValueError, match=r"activations\[1\] = 9"):
        fused_mlp._C.config_id((3, 9), (1, 0), 0.1, False)
    with pytest.raises(ValueError, match=r"has_bias\[0\] must be 0 or 1"):
        fused_mlp._C.config_id((3, 0), (2, 0), 0.1, False)


@pytest.mark.parametrize("device", DEVICES)
def test_infer_errors_name_the_argument(device):
    x, params, cid = infer_args(device)
    with pytest.raises(RuntimeError, match="config 123456 is not a registered configuration"):
        infer_op(x, params, 123456)
    with pytest.raises(RuntimeError, match="params must hold the 3 weights and then the 2 biases"):
        infer_op(x, params[:-1], cid)
    with pytest.raises(RuntimeError, match=r"weights\[1\] must have shape \(out, 20\)"):
        infer_op(x, [params[0], params[0]] + params[2:], cid)
    with pytest.raises(RuntimeError, match=r"weights\[0\] must have the dtype of x \(torch.float16\)"):
        infer_op(x.half(), params, cid)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gated", [False, True])
def test_opcheck_backward(device, gated):
    x, weights, biases, has_bias, acts, slope, gated, _ = op_args(device, gated=gated, requires_grad=False)
    out, saved = forward_op(x, weights, biases, has_bias, acts, slope, gated, True)
    g = torch.randn_like(out)
    for input_grad, param_grads in ((True, True), (False, True), (True, False)):
        torch.library.opcheck(backward_op, (g, x, saved, weights, biases, has_bias, acts, slope, gated,
                                            input_grad, param_grads))


@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_matches_eager(device):
    torch._dynamo.reset()
    model = nn.Sequential(
        nn.LayerNorm(32),
        fused_mlp.FusedMLP(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32)),
        fused_mlp.FusedGatedMLP.build(32, 48, activation="silu"),
    ).to(device)
    x = torch.randn(5, 7, 32, device=device, requires_grad=True)
    compiled = torch.compile(model, fullgraph=True)
    out_c = compiled(x)
    out_e = model(x)
    assert rel_err(out_c, out_e) < 1e-5
    out_c.sum().backward()
    gx = x.grad.clone()
    x.grad = None
    out_e.sum().backward()
    assert rel_err(gx, x.grad) < 1e-5


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_behaves_like_the_linear_stack(device):
    dt = torch.bfloat16
    seq = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8)).to(device)
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(10, 16, device=device)
    with torch.autocast(device_type=device, dtype=dt):
        want = seq(x)
        got = fused(x)
    assert got.dtype == want.dtype == dt
    ref = seq.double()(x.double())
    seq.float()
    assert rel_err(got, ref) <= 2 * rel_err(want, ref) + torch.finfo(dt).eps


def test_backward_after_save_false_is_a_clear_error():
    args = op_args("cpu", save=False)
    out, saved = forward_op(*args)
    assert saved == []
    with pytest.raises(RuntimeError, match="save=False"):
        out.sum().backward()


def test_no_grad_saves_nothing():
    args = list(op_args("cpu"))
    with torch.no_grad():
        out = fused_mlp.fused_mlp(args[0], args[1], [args[2][0], None, args[2][1]], "relu")
    assert out.grad_fn is None


def test_ops_are_registered_for_cpu_and_cuda():
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fused_mlp::forward", "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fused_mlp::forward", "CUDA")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("fused_mlp::backward", "CUDA")
