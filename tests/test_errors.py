"""Bad input raises an exception that names the argument and what was expected —
through the public function, the modules, and the raw ops (the C shim's own checks)."""
import pytest
import torch
from torch import nn

import fused_mlp
from fused_mlp._ops import forward_op
from mlp_reference import random_mlp


@pytest.fixture
def mlp():
    weights, biases, acts = random_mlp([16, 32, 8])
    return torch.randn(4, 16), weights, biases, acts


def test_wrong_input_width(mlp):
    x, w, b, a = mlp
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 16\).*got \(4, 15\)"):
        fused_mlp.fused_mlp(x[:, :15], w, b, a)


def test_mismatched_layer_shapes(mlp):
    x, w, b, a = mlp
    w[1] = torch.randn(8, 31)
    with pytest.raises(RuntimeError, match=r"weights\[1\] must have shape \(out, 32\), got \(8, 31\)"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_wrong_bias_shape(mlp):
    x, w, b, a = mlp
    b[0] = torch.randn(31)
    with pytest.raises(RuntimeError, match=r"biases\[0\].*must have shape \(32,\), got \(31,\)"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_dtype_mix(mlp):
    x, w, b, a = mlp
    w[1] = w[1].double()
    with pytest.raises(RuntimeError, match=r"weights\[1\] must have the dtype of x \(torch.float32\), got torch.float64"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_unsupported_dtype(mlp):
    x, w, b, a = mlp
    with pytest.raises(RuntimeError, match=r"x must be float32, bfloat16 or float16.*got"):
        forward_op(x.to(torch.int32), w, [t for t in b], [1, 1], [1, 0], 0.0, False, False)


def test_device_mix(mlp):
    x, w, b, a = mlp
    w[0] = w[0].to("meta")
    with pytest.raises(RuntimeError, match=r"weights\[0\] must be on x's device \(cpu\), got meta"):
        fused_mlp.fused_mlp(x, w, b, a)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_cuda_mix(mlp):
    x, w, b, a = mlp
    w[0] = w[0].cuda()
    with pytest.raises(RuntimeError, match=r"weights\[0\] must be on x's device \(cpu\), got cuda:0"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_non_contiguous_weight(mlp):
    x, w, b, a = mlp
    w[1] = torch.randn(32, 8).t()
    with pytest.raises(RuntimeError, match=r"weights\[1\] must be contiguous"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_misaligned_weight(mlp):
    x, w, b, a = mlp
    w[1] = torch.randn(1 + 8 * 32)[1:].view(8, 32)
    with pytest.raises(RuntimeError, match=r"weights\[1\] must be 16-byte aligned"):
        fused_mlp.fused_mlp(x, w, b, a)


def test_op_rejects_non_contiguous_and_misaligned_x(mlp):
    x, w, b, a = mlp
    args = (w, b, [1, 1], [1, 0], 0.0, False, False)
    with pytest.raises(RuntimeError, match=r"x must be contiguous"):
        forward_op(torch.randn(16, 4).t(), *args)
    with pytest.raises(RuntimeError, match=r"x must be 16-byte aligned"):
        forward_op(torch.randn(1 + 4 * 16)[1:].view(4, 16), *args)
    with pytest.raises(RuntimeError, match=r"x must be 2-D"):
        forward_op(torch.randn(16), *args)


def test_unsupported_activation(mlp):
    x, w, b, _ = mlp
    with pytest.raises(ValueError, match=r"unsupported activation 'mish'; supported: identity, relu"):
        fused_mlp.fused_mlp(x, w, b, "mish")
    with pytest.raises(RuntimeError, match=r"activations\[0\] = 42 is not a supported activation code"):
        forward_op(x, w, b, [1, 1], [42, 0], 0.0, False, False)


def test_activation_count(mlp):
    x, w, b, _ = mlp
    with pytest.raises(ValueError, match=r"one activation per layer \(2\), got 3"):
        fused_mlp.fused_mlp(x, w, b, ["relu", "relu", "relu"])
    with pytest.raises(RuntimeError, match=r"activations must have one entry per layer \(2"):
        forward_op(x, w, b, [1, 1], [1], 0.0, False, False)


def test_empty_weight_list(mlp):
    x = mlp[0]
    with pytest.raises(ValueError, match=r"weights must hold at least one weight tensor"):
        fused_mlp.fused_mlp(x, [])
    with pytest.raises(RuntimeError, match=r"weights must hold at least one weight tensor"):
        forward_op(x, [], [], [], [], 0.0, False, False)


def test_bias_list_length_and_has_bias(mlp):
    x, w, b, a = mlp
    with pytest.raises(ValueError, match=r"biases must have one entry .* per weight \(2\), got 1"):
        fused_mlp.fused_mlp(x, w, b[:1], a)
    with pytest.raises(RuntimeError, match=r"biases must hold one tensor per has_bias entry set \(1\), got 2"):
        forward_op(x, w, b, [1, 0], [1, 0], 0.0, False, False)


def test_gated_needs_three_weights(mlp):
    x, w, b, a = mlp
    with pytest.raises(ValueError, match=r"gated=True needs weights \[gate, up, down, \.\.\.\]"):
        fused_mlp.fused_mlp(x, w, b, "silu", gated=True)


def test_gated_up_must_match_gate():
    x = torch.randn(3, 8)
    w = [torch.randn(16, 8), torch.randn(15, 8), torch.randn(8, 16)]
    with pytest.raises(RuntimeError, match=r"weights\[1\] must have shape \(16, 8\), got \(15, 8\)"):
        fused_mlp.fused_mlp(x, w, None, "silu", gated=True)


def test_wrong_types(mlp):
    x, w, b, a = mlp
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        fused_mlp.fused_mlp(x.numpy(), w, b, a)
    with pytest.raises(TypeError, match="weights must be a list"):
        fused_mlp.fused_mlp(x, w[0], b, a)


def test_float64_on_cuda_is_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    weights, biases, acts = random_mlp([4, 8, 2], dtype=torch.float64, device="cuda")
    with pytest.raises(RuntimeError, match="float64, which runs on the CPU only"):
        fused_mlp.fused_mlp(torch.randn(3, 4, dtype=torch.float64, device="cuda"), weights, biases, acts)


def test_gated_module_checks_shapes():
    with pytest.raises(ValueError, match=r"gate and up must have the same shape"):
        fused_mlp.FusedGatedMLP(nn.Linear(4, 8), nn.Linear(4, 9), nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"down must take 8 input features"):
        fused_mlp.FusedGatedMLP(nn.Linear(4, 8), nn.Linear(4, 8), nn.Linear(7, 4))
