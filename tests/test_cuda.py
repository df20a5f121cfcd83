"""GPU-only behaviour: every strategy against the float64 reference (forced through
FUSED_MLP_STRATEGY), the dispatcher's choices, side streams, CUDA-graph capture, a
second GPU, and compile. Skipped without CUDA; numerics on CUDA also run in
test_numerics.py / test_gradients.py (their DEVICES include cuda)."""
import random

import pytest
import torch
from torch import nn

import fused_mlp
from mlp_reference import ACTS, DTYPES, eps, output_error_scale, random_mlp, reference_mlp, rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not fused_mlp._C.has_cuda(),
                                reason="needs a CUDA device and a CUDA build")

STRATEGIES = ["gemm", "small_m"]


def check(x, weights, biases, acts, gated=False):
    out = fused_mlp.fused_mlp(x, weights, biases, acts, gated=gated, negative_slope=0.1)
    ref, terms = reference_mlp(x, weights, biases, acts, gated, 0.1, last_terms=True)
    eager = reference_mlp(x, weights, biases, acts, gated, 0.1, dtype=x.dtype)
    torch.cuda.synchronize()
    assert not torch.isnan(out).any()
    if ref.numel():
        # the same bound as tests/test_numerics.py::check_forward
        scale = max(1.0, output_error_scale(ref, terms, weights[-1].shape[1]))
        assert rel_err(out, ref) <= 2 * rel_err(eager, ref) + eps(x.dtype) * scale, (rel_err(out, ref), rel_err(eager, ref))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [1, 3, 16, 37, 64])
@pytest.mark.parametrize("gated", [False, True])
def test_strategies_forward(poison, monkeypatch, strategy, dtype, m, gated):
    monkeypatch.setenv("FUSED_MLP_STRATEGY", strategy)
    widths = [random.choice([64, 72, 128, 136]) for _ in range(3)]
    acts = [random.choice(ACTS[1:]), random.choice(ACTS)]
    weights, biases, _ = random_mlp(widths, gated=gated, bias=bool(m % 2), dtype=dtype, device="cuda")
    check(torch.randn(m, widths[0], dtype=dtype, device="cuda"), weights, biases, acts, gated)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("widths", [[17, 33, 5], [1, 1], [1000, 17, 3, 1000], [8, 24, 16, 24, 8, 24, 8]])
def test_strategies_odd_widths(poison, monkeypatch, strategy, widths):
    monkeypatch.setenv("FUSED_MLP_STRATEGY", strategy)
    for dtype in DTYPES:
        weights, biases, acts = random_mlp(widths, dtype=dtype, device="cuda")
        check(torch.randn(13, widths[0], dtype=dtype, device="cuda"), weights, biases, acts)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_training_forward_saves_for_backward(monkeypatch, strategy):
    """The forward of a training step (save=True) on every strategy feeds a correct backward."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", strategy)
    weights, biases, acts = random_mlp([64, 128, 64], dtype=torch.float32, device="cuda", requires_grad=True)
    x = torch.randn(16, 64, device="cuda", requires_grad=True)
    fused_mlp.fused_mlp(x, weights, biases, acts).square().sum().backward()
    got = [x.grad] + [t.grad for t in weights + biases]
    up = [t.detach().double().requires_grad_() for t in [x] + weights + biases]
    reference_mlp(up[0], up[1:3], up[3:5], acts).square().sum().backward()
    for a, b in zip(got, up):
        assert rel_err(a, b.grad) < 1e-5


def test_forcing_a_strategy_is_visible_in_explain(monkeypatch):
    w = [torch.empty(64, 32, device="cuda"), torch.empty(8, 64, device="cuda")]
    x = torch.empty(4, 32, device="cuda")
    for name in STRATEGIES:
        monkeypatch.setenv("FUSED_MLP_STRATEGY", name)
        assert fused_mlp.explain(x, w)["strategy"] == name
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "bogus")
    with pytest.raises(RuntimeError, match="FUSED_MLP_STRATEGY must be auto, gemm or small_m"):
        fused_mlp.fused_mlp(x, w)


def test_dispatcher_choices_are_inspectable(monkeypatch):
    monkeypatch.delenv("FUSED_MLP_STRATEGY", raising=False)
    w = [torch.empty(4096, 1024, device="cuda", dtype=torch.bfloat16),
         torch.empty(1024, 4096, device="cuda", dtype=torch.bfloat16)]
    one = fused_mlp.explain(torch.empty(1, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh")
    small = fused_mlp.explain(torch.empty(16, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh")
    mid = fused_mlp.explain(torch.empty(64, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh")
    large = fused_mlp.explain(torch.empty(8192, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh")
    bwd = fused_mlp.explain(torch.empty(16, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh", backward=True)
    assert one["strategy"] == "small_m" and "M = 1" in one["why"]
    assert small["strategy"] == "small_m" and "not in CUDA-graph capture" in small["why"]
    assert mid["strategy"] == "gemm" and "M > 16" in mid["why"]
    trained = [t.clone().requires_grad_() for t in w]
    train = fused_mlp.explain(torch.empty(1, 1024, device="cuda", dtype=torch.bfloat16), trained, "gelu_tanh")
    assert train["strategy"] == "gemm" and "training forward" in train["why"]
    assert large["strategy"] == "gemm" and large["why"]
    assert bwd["strategy"] == "gemm"


def test_small_batch_under_graph_capture_matches_the_loop():
    """Up to 16 rows the dispatcher picks the single launch in a loop and cuBLAS under CUDA-graph
    capture (GPU time is all that counts there); both give the reference's answer."""
    weights, biases, acts = random_mlp([1024, 4096, 1024], dtype=torch.bfloat16, device="cuda")
    x = torch.randn(16, 1024, dtype=torch.bfloat16, device="cuda")
    loop = fused_mlp.fused_mlp(x, weights, biases, acts)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fused_mlp.fused_mlp(x, weights, biases, acts)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        captured = fused_mlp.fused_mlp(x, weights, biases, acts)
    g.replay()
    torch.cuda.synchronize()
    ref = reference_mlp(x.double(), [w.double() for w in weights], [b.double() for b in biases], acts)
    for got in (loop, captured):
        assert rel_err(got, ref) < 2e-2


def test_side_stream():
    weights, biases, acts = random_mlp([64, 256, 64], dtype=torch.bfloat16, device="cuda")
    x = torch.randn(1024, 64, dtype=torch.bfloat16, device="cuda")
    want = fused_mlp.fused_mlp(x, weights, biases, acts)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            got = fused_mlp.fused_mlp(x, weights, biases, acts)
    torch.cuda.current_stream().wait_stream(s)
    assert torch.equal(got, want)


@pytest.mark.parametrize("m", [8, 4096])
@pytest.mark.parametrize("train", [False, True])
def test_cuda_graph_capture(m, train):
    model = fused_mlp.FusedGatedMLP.build(64, 192, activation="gelu_tanh", bias=True, device="cuda")
    x = torch.randn(m, 64, device="cuda", requires_grad=train)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):  # warm up on a side stream, as graph capture requires
        for _ in range(2):
            out = model(x)
            if train:
                out.sum().backward()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = model(x)
        if train:
            out.sum().backward()
    x.data.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    with torch.no_grad():
        want = model(x)
    assert rel_err(out, want) < 1e-6


def test_second_gpu_when_present():
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    weights, biases, acts = random_mlp([32, 64, 8], device="cuda:1")
    x = torch.randn(10, 32, device="cuda:1")
    with torch.cuda.device(0):  # current device differs from the tensors'
        check(x, weights, biases, acts)


def test_nondefault_device_index_matches_tensors():
    dev = f"cuda:{torch.cuda.device_count() - 1}"
    weights, biases, acts = random_mlp([32, 64, 8], device=dev)
    check(torch.randn(10, 32, device=dev), weights, biases, acts)


def test_cpu_cuda_mix_is_a_clear_error():
    weights, biases, acts = random_mlp([8, 16, 4], device="cuda")
    with pytest.raises(RuntimeError, match=r"weights\[0\] must be on x's device \(cpu\), got cuda:0"):
        torch.ops.fused_mlp.forward(torch.randn(3, 8), weights, [b.cuda() for b in biases], [1, 1], [1, 0],
                                    0.0, False, False)


def test_module_on_cuda_matches_sequential_in_bf16():
    seq = nn.Sequential(nn.Linear(768, 3072), nn.GELU(approximate="tanh"), nn.Linear(3072, 768)).cuda().bfloat16()
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    for m in (1, 16, 64, 300):
        x = torch.randn(m, 768, device="cuda", dtype=torch.bfloat16)
        ref = seq.double()(x.double())
        seq.bfloat16()
        assert rel_err(fused(x), ref) <= 2 * rel_err(seq(x), ref) + eps(torch.bfloat16)
