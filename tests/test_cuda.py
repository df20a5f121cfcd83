"""GPU-only behaviour: every strategy against the float64 reference (forced through
FUSED_MLP_STRATEGY), the dispatcher's choices, side streams, CUDA-graph capture, a
second GPU, and compile. Skipped without CUDA; numerics on CUDA also run in
test_numerics.py / test_gradients.py (their DEVICES include cuda)."""
import random

import pytest
import torch
from torch import nn

import fused_mlp
from mlp_reference import ACTS, DTYPES, apply_act, eps, forward_bound, random_mlp, reference_mlp, rel_err

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or not fused_mlp._C.has_cuda(),
                                reason="needs a CUDA device and a CUDA build")

STRATEGIES = ["gemm", "small_m", "narrow", "skinny"]


def check(x, weights, biases, acts, gated=False):
    out = fused_mlp.fused_mlp(x, weights, biases, acts, gated=gated, negative_slope=0.1)
    ref, terms = reference_mlp(x, weights, biases, acts, gated, 0.1, last_terms=True)
    eager = reference_mlp(x, weights, biases, acts, gated, 0.1, dtype=x.dtype)
    torch.cuda.synchronize()
    assert not torch.isnan(out).any()
    if ref.numel():
        # the same bound as tests/test_numerics.py::check_forward
        bound = forward_bound(x, ref, terms, eager, weights, acts)
        assert rel_err(out, ref) <= bound, (rel_err(out, ref), rel_err(eager, ref), bound)


def backward_three_ways(x, weights, biases, acts, gated, dout):
    """(fused, eager in x's dtype, float64) gradients of x, each weight and each bias, in that
    order, for out.backward(dout) (the leaves' .grad end up holding eager's)."""
    params = [x] + weights + biases
    fused_mlp.fused_mlp(x, weights, biases, acts, gated=gated).backward(dout)
    got = [t.grad for t in params]
    for t in params:
        t.grad = None
    reference_mlp(x, weights, biases, acts, gated=gated, dtype=x.dtype).backward(dout)
    eager = [t.grad for t in params]
    up = [t.detach().double().requires_grad_() for t in params]
    nw = len(weights)
    reference_mlp(up[0], up[1:1 + nw], up[1 + nw:], acts, gated=gated).backward(dout.double())
    return [(a, e, r.grad) for a, e, r in zip(got, eager, up)]


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


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("widths,gated", [([768, 3072, 768], True), ([768, 4096, 768], True),
                                          ([1024, 4096, 1024], False), ([1536, 2560, 896], True),
                                          ([256, 512, 384, 256], False)])
@pytest.mark.parametrize("m", [1, 7, 16, 37])
def test_small_m_at_transformer_widths(poison, monkeypatch, dtype, widths, gated, m):
    """The single launch where its layer inputs are staged in shared memory (16-bit, rows of
    16-byte multiples), with odd and even K-loop trip counts: a gated layer with an odd trip
    count once came out wrong (GeGLU 768-3072 at M = 1 and 7; the widths above are far from
    the small ones of test_strategies_forward)."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "small_m")
    layers = len(widths) - 1
    acts = ["gelu_tanh"] + ["silu"] * (layers - 2) + ["identity"]
    weights, biases, acts = random_mlp(widths, acts, gated=gated, bias=m != 16, dtype=dtype, device="cuda")
    x = torch.randn(m, widths[0], dtype=dtype, device="cuda")
    assert fused_mlp.explain(x, weights, acts, gated=gated)["strategy"] == "small_m"
    check(x, weights, biases, acts, gated)


SKINNY_SHAPES = [([768, 3072, 768], True), ([1024, 4096, 1024], False), ([4096, 1024], False),
                 ([1536, 2560, 896], True), ([17, 33, 5], False), ([1000, 17, 3, 1000], False),
                 ([40, 24, 16, 24, 8, 24, 8], False), ([72, 200, 136, 24], True), ([8192, 96], False)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("widths,gated", SKINNY_SHAPES)
@pytest.mark.parametrize("m", [0, 1, 7, 16, 24, 37, 48, 64])
def test_skinny_kernel(poison, monkeypatch, dtype, widths, gated, m):
    """One tensor-core launch per layer at M <= 64: transformer widths (K split across blocks,
    PDL between layers), widths that are not multiples of 8 (element loads), deep stacks, gated
    first layers, and x one element off 16-byte alignment at M = 1, 16 and 48. On sm_90 at
    M > 16 the layers with 16-byte rows run the staged tile kernel (K split over a cluster):
    every layer at M = 24, 37 and 64; at M = 48 the misaligned first layer runs the register
    kernel and the later ones the tile kernel."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "skinny")
    layers = len(widths) - 1
    acts = (["gelu_tanh"] + ["silu", "relu", "leaky_relu"] * 3)[:layers - 1] + ["identity"]
    weights, biases, acts = random_mlp(widths, acts, gated=gated, bias=m % 2 == 1, dtype=dtype, device="cuda")
    base = torch.randn(m * widths[0] + 1, dtype=dtype, device="cuda")
    x = (base[1:] if m in (1, 16, 48) else base[:-1]).view(m, widths[0])
    assert fused_mlp.explain(x, weights, acts, gated=gated)["strategy"] == "skinny"
    check(x, weights, biases, acts, gated)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("m", [1, 16, 37, 64])
def test_skinny_gelu_tanh_elementwise(monkeypatch, dtype, m):
    """gelu_tanh element by element, the negative tail included, in the skinny epilogue (one
    function for all its kernels; here the 32-row register kernel at M <= 16 and the tile kernel
    above). Selection weights make z = x exactly (layer 0: row n picks x[n % 1024]) and the
    output h (layer 1 picks h[:1024]), so each output is checked against float64 on its own: a
    norm-wide error hides a wrong tail (tanh.approx lost up to 30% of gelu_tanh at z = -4)."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "skinny")
    k, n = 1024, 4096
    w0 = torch.zeros(n, k, dtype=dtype, device="cuda")
    w0[torch.arange(n), torch.arange(n) % k] = 1
    w1 = torch.zeros(k, n, dtype=dtype, device="cuda")
    w1[torch.arange(k), torch.arange(k)] = 1
    x = (torch.rand(m, k, device="cuda", dtype=torch.float64) * 14 - 9).to(dtype)  # z in [-9, 5]
    acts = ["gelu_tanh", "identity"]
    assert fused_mlp.explain(x, [w0, w1], acts)["strategy"] == "skinny"
    out = fused_mlp.fused_mlp(x, [w0, w1], [None, None], acts).double()
    ref = apply_act("gelu_tanh", x.double()).to(dtype).double()  # z exact, h rounded once
    eager = apply_act("gelu_tanh", x).double()
    tol = 2 * eps(dtype) * ref.abs() + 1e-6  # an ulp or two; 1e-6: float32's cancellation in eager
    assert ((eager - ref).abs() <= tol).all()  # the bound holds for eager itself
    bad = (out - ref).abs() > tol
    assert not bad.any(), (x[bad][:5], out[bad][:5], ref[bad][:5])


@pytest.mark.parametrize("widths,gated", [([768, 3072, 768], True), ([1024, 4096, 1024], False), ([17, 33, 5], False)])
@pytest.mark.parametrize("m", [1, 16, 64])
def test_skinny_training_forward(monkeypatch, widths, gated, m):
    """The skinny forward saving z for backward (z rounded once, as eager stores it): the
    gradients it leads to are as close to float64 as eager bfloat16's."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "skinny")
    dtype = torch.bfloat16
    weights, biases, acts = random_mlp(widths, ["gelu_tanh", "identity"], gated=gated, dtype=dtype, device="cuda",
                                       requires_grad=True)
    x = torch.randn(m, widths[0], dtype=dtype, device="cuda", requires_grad=True)
    assert fused_mlp.explain(x, weights, acts, gated=gated)["strategy"] == "skinny"
    dout = torch.randn(m, widths[-1], dtype=dtype, device="cuda")
    for a, e, r in backward_three_ways(x, weights, biases, acts, gated, dout):
        assert rel_err(a, r) <= 2 * rel_err(e, r) + 4 * eps(dtype), (rel_err(a, r), rel_err(e, r))


def test_skinny_in_a_cuda_graph_and_on_a_side_stream(monkeypatch):
    """Programmatic dependent launches captured into a CUDA graph and run on a non-default
    stream give the loop's answer; replays see new inputs."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "skinny")
    weights, biases, acts = random_mlp([1024, 4096, 1024], dtype=torch.bfloat16, device="cuda")
    x = torch.randn(16, 1024, dtype=torch.bfloat16, device="cuda")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        side = fused_mlp.fused_mlp(x, weights, biases, acts)
        side2 = fused_mlp.fused_mlp(x, weights, biases, acts)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        captured = fused_mlp.fused_mlp(x, weights, biases, acts)
    x.copy_(torch.randn_like(x))
    for _ in range(3):
        g.replay()
    torch.cuda.synchronize()
    ref = reference_mlp(x.double(), [w.double() for w in weights], [b.double() for b in biases], acts)
    assert rel_err(captured, ref) < 1e-2
    assert torch.equal(side, side2)  # deterministic: K-split partials summed in a fixed order
    assert torch.equal(captured, fused_mlp.fused_mlp(x, weights, biases, acts))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("m", [0, 1, 13, 64, 97, 2500, 5003])
def test_narrow_kernel(poison, monkeypatch, dtype, m):
    """The on-chip narrow kernel: random depth (1-6), widths <= 256 not multiples of 4, every
    activation, bias on and off, and M across its row-tile choices (16 / 32 / 64 rows at
    M <= 2112 / <= 4224 / above, on 132 SMs) with a partial last tile."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "narrow")
    depth = random.randint(1, 6)
    widths = [random.choice([1, 3, 17, 33, 64, 70, 101]) for _ in range(depth + 1)]
    acts = [random.choice(ACTS) for _ in range(depth)]
    weights, biases, acts = random_mlp(widths, acts, bias=random.random() < 0.7, dtype=dtype, device="cuda")
    x = torch.randn(m, widths[0], dtype=dtype, device="cuda")
    assert fused_mlp.explain(x, weights, acts)["strategy"] == "narrow"
    check(x, weights, biases, acts)


@pytest.mark.parametrize("widths,fits", [([128] * 4, True), ([200, 16, 200, 16, 200], True), ([128] * 6, False),
                                         ([256, 256], False), ([4] * 17, True), ([4] * 18, False)])
def test_narrow_kernel_limits(poison, monkeypatch, widths, fits):
    """At the edge of what fits in 227 KB of shared memory (weights kept as float32, rows
    padded to 4 mod 32 floats): three 128-wide layers run narrow, five do not, nor one
    256x256 layer, nor more than 16 layers; what does not fit falls back and stays correct."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "narrow")
    for dtype in DTYPES:
        weights, biases, acts = random_mlp(widths, dtype=dtype, device="cuda")
        x = torch.randn(300, widths[0], dtype=dtype, device="cuda")
        got = fused_mlp.explain(x, weights, acts)
        assert (got["strategy"] == "narrow") == fits, (widths, got)
        check(x, weights, biases, acts)


def test_narrow_is_chosen_where_it_measured_faster(monkeypatch):
    """fp32 inference at 16 < M <= 1024 and widths <= 64 (cuBLAS split-K zone, fmlp_dispatch.c);
    not at one row, not at large M, not in bf16, not for training or gated blocks."""
    monkeypatch.delenv("FUSED_MLP_STRATEGY", raising=False)
    w = [torch.empty(64, 64, device="cuda") for _ in range(5)]
    for m in (17, 64, 1024):
        got = fused_mlp.explain(torch.empty(m, 64, device="cuda"), w, "relu")
        assert got["strategy"] == "narrow" and "on chip" in got["why"], (m, got)
    for m in (1, 16, 1025, 8192):
        assert fused_mlp.explain(torch.empty(m, 64, device="cuda"), w, "relu")["strategy"] != "narrow", m
    wb = [t.bfloat16() for t in w]
    assert fused_mlp.explain(torch.empty(64, 64, device="cuda", dtype=torch.bfloat16), wb, "relu")["strategy"] != "narrow"
    trained = [t.clone().requires_grad_() for t in w]
    assert fused_mlp.explain(torch.empty(64, 64, device="cuda"), trained, "relu")["strategy"] == "gemm"
    gated = fused_mlp.explain(torch.empty(64, 64, device="cuda"), w[:3], "silu", gated=True)
    assert gated["strategy"] != "narrow"


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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("widths", [[64, 136, 72], [17, 33, 5]])
@pytest.mark.parametrize("gated", [False, True])
def test_one_row_weight_gradients(dtype, widths, gated):
    """At M = 1 the weight gradients are a rank-1 kernel (16-byte stores when K % 8 == 0, the
    scalar path otherwise, as in [17, 33, 5]): no worse than eager's against float64."""
    weights, biases, acts = random_mlp(widths, gated=gated, dtype=dtype, device="cuda", requires_grad=True)
    x = torch.randn(1, widths[0], dtype=dtype, device="cuda", requires_grad=True)
    dout = torch.randn(1, widths[-1], dtype=dtype, device="cuda")
    for a, e, r in backward_three_ways(x, weights, biases, acts, gated, dout)[1:1 + len(weights)]:
        assert not torch.isnan(a).any()
        assert rel_err(a, r) <= 2 * rel_err(e, r) + 4 * eps(dtype), (rel_err(a, r), rel_err(e, r))


def test_forcing_a_strategy_is_visible_in_explain(monkeypatch):
    w = [torch.empty(64, 32, device="cuda", dtype=torch.bfloat16), torch.empty(8, 64, device="cuda", dtype=torch.bfloat16)]
    x = torch.empty(4, 32, device="cuda", dtype=torch.bfloat16)
    for name in STRATEGIES:
        monkeypatch.setenv("FUSED_MLP_STRATEGY", name)
        assert fused_mlp.explain(x, w)["strategy"] == name
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "bogus")
    with pytest.raises(RuntimeError, match="FUSED_MLP_STRATEGY must be auto, gemm, small_m, narrow or skinny"):
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
    assert one["strategy"] == "small_m" and "not in CUDA-graph capture" in one["why"]
    assert small["strategy"] == "small_m" and "not in CUDA-graph capture" in small["why"]
    assert mid["strategy"] == "gemm" and "M > 16" in mid["why"]
    m32 = fused_mlp.explain(torch.empty(32, 1024, device="cuda", dtype=torch.bfloat16), w, "gelu_tanh")
    hopper = torch.cuda.get_device_capability()[0] >= 9
    assert (m32["strategy"] == "skinny") == hopper and ("plain: M <= 32" in m32["why"]) == hopper, m32
    five = [torch.empty(64, 64, device="cuda", dtype=torch.bfloat16) for _ in range(5)]
    deep = fused_mlp.explain(torch.empty(16, 64, device="cuda", dtype=torch.bfloat16), five, "relu")
    assert deep["strategy"] != "skinny", deep  # 5 launches: measured slower than cuBLAS at M = 16
    trained = [t.clone().requires_grad_() for t in w]
    train = fused_mlp.explain(torch.empty(1, 1024, device="cuda", dtype=torch.bfloat16), trained, "gelu_tanh")
    assert train["strategy"] == "skinny", train  # its forward saves z; measured faster in a training step
    long = fused_mlp.explain(torch.empty(1, 1024, device="cuda", dtype=torch.bfloat16), trained * 2, "gelu_tanh")
    assert long["strategy"] == "gemm" and "training forward" in long["why"], long
    assert large["strategy"] == "gemm" and large["why"]
    assert bwd["strategy"] == "gemm"
    # GeGLU at 16 < M <= 64 (plain layers up to 32 rows, m32 above): the skinny tile kernel on
    # sm_90 (measured faster than cuBLAS), inference only; plain layers at M = 64 stay on cuBLAS
    gw = [torch.empty(3072, 768, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    gw.append(torch.empty(768, 3072, device="cuda", dtype=torch.bfloat16))
    x64 = torch.empty(64, 768, device="cuda", dtype=torch.bfloat16)
    geglu = fused_mlp.explain(x64, gw, "gelu_tanh", gated=True)
    assert (geglu["strategy"] == "skinny") == hopper and ("gated first layer" in geglu["why"]) == hopper, geglu
    gtrain = fused_mlp.explain(x64, [t.clone().requires_grad_() for t in gw], "gelu_tanh", gated=True)
    assert gtrain["strategy"] == "gemm", gtrain


def test_small_batch_under_graph_capture_matches_the_loop():
    """Small batches in a loop and under CUDA-graph capture (where the dispatcher once chose
    differently, and GPU time is all that counts) both give the reference's answer."""
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


def test_cached_workspace_across_streams_sizes_and_a_graph():
    """csrc/shim/ws_cache.h: calls outside capture reuse one cached scratch buffer per device
    while they stay on its stream. Interleave what could break that: two shapes (the smaller
    reuses the larger buffer), two streams with no synchronisation between calls, and a captured
    graph (fresh scratch of its own) replayed on a third stream while eager calls run; every
    output must be the reference's."""
    torch.manual_seed(0)
    mlps = [random_mlp([1024, 4096, 1024], dtype=torch.bfloat16, device="cuda"),
            random_mlp([256, 512, 256], dtype=torch.bfloat16, device="cuda", gated=True, acts=["silu", "identity"])]
    gated = [False, True]

    def call(k, x):
        w, b, a = mlps[k]
        return fused_mlp.fused_mlp(x, w, b, a, gated=gated[k])

    def want(k, x):
        w, b, a = mlps[k]
        return reference_mlp(x.double(), [t.double() for t in w], [t.double() for t in b], a, gated[k])

    s1, s2, s3 = torch.cuda.Stream(), torch.cuda.Stream(), torch.cuda.Stream()
    xg = torch.randn(4, 1024, dtype=torch.bfloat16, device="cuda")
    for s in (s1, s2, s3):
        s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s3):
        call(0, xg)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s3):
            g_out = call(0, xg)
    torch.cuda.synchronize()
    outs = []
    for i in range(12):
        k, m = i % 2, (1, 16, 3)[i % 3]
        x = torch.randn(m, mlps[k][0][0].shape[1], dtype=torch.bfloat16, device="cuda")
        stream = (s1, s2, torch.cuda.current_stream())[i % 3]
        stream.wait_stream(torch.cuda.current_stream())  # x was made there
        with torch.cuda.stream(stream):
            outs.append((k, x, call(k, x)))
            x.record_stream(stream)
        with torch.cuda.stream(s3):
            g.replay()
    torch.cuda.synchronize()
    for k, x, out in outs:
        assert rel_err(out, want(k, x)) < 2e-2
    assert rel_err(g_out, want(0, xg)) < 2e-2


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


# ---- the GEMM strategy at inference: bias in cuBLAS, activation in fmlp_epilogue.cu ------

@pytest.mark.parametrize("act", ["relu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("widths", [[37, 100, 13], [64, 256, 64], [1024, 4096, 1024]], ids=str)
def test_gemm_inference_bias_activation(poison, monkeypatch, act, dtype, widths):
    """Inference (nothing saved) through the forced GEMM strategy, biased relu / gelu_tanh
    layers: odd widths take the scalar epilogue path, multiples of 8 the 16-byte one."""
    monkeypatch.setenv("FUSED_MLP_STRATEGY", "gemm")
    weights, biases, _ = random_mlp(widths, dtype=dtype, device="cuda")
    for m in (1, 2, 7, 64, 257):
        x = torch.randn(m, widths[0], dtype=dtype, device="cuda")
        info = fused_mlp.explain(x, weights, act)
        assert info["strategy"] == "gemm" and "forced" in info["why"], info
        for acts in ([act, "identity"], [act, act]):
            check(x, weights, biases, acts)


# ---- fmlp_epilogue.cu kernels on raw pointers (fused_mlp._C._epilogue) ------------------
EPI_DTYPE = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}
EPI_RTOL = {torch.float32: 1e-5, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}  # one rounding + f32 math
# atol: float32 cancellation near the zeros of act and act' (e.g. dglu: g * zu * act'(zg)) reaches ~1e-5
EPI_SLOPE = 0.1
# (M, N): 16-byte path for every dtype at offset 0 ((7, 64), (5, 40), (33, 1000): several
# blocks, the last one partial), float32 only ((257, 100)), never ((3, 13)).
# (1031, 520): more than 2^16 16-byte vectors, so the vector path's two-per-thread shape runs
# too (smaller passes take one vector per thread: fmlp_epilogue.cu kSmallPassVec)
EPI_SHAPES = [(7, 64), (5, 40), (33, 1000), (257, 100), (3, 13), (1, 8), (1031, 520)]


def _at(t, offset):
    """A copy of t starting `offset` elements into a NaN-filled allocation with 16 spare
    elements: offset 0 is 16-byte aligned (torch's allocations are), an odd offset is not,
    which sends the kernel down its scalar path. The spare elements catch stray writes."""
    base = torch.full((t.numel() + 16,), float("nan"), dtype=t.dtype, device=t.device)
    v = base[offset:offset + t.numel()].view(t.shape)
    v.copy_(t)
    return v


def _untouched_outside(v, offset):
    base = v._base
    return bool(torch.isnan(base[:offset]).all() and torch.isnan(base[offset + v.numel():]).all())


def _launch(kind, dtype, m, n, act, *tensors):
    ptrs = [t.data_ptr() if t is not None else 0 for t in tensors]
    fused_mlp._C._epilogue(kind, torch.cuda.current_device(), torch.cuda.current_stream().cuda_stream,
                           EPI_DTYPE[dtype], m, n, ACTS.index(act), EPI_SLOPE, tuple(ptrs + [0] * (6 - len(ptrs))))


def _act64(act, z):
    return apply_act(act, z.double(), EPI_SLOPE)


def _dact64(act, z):
    z = z.double().requires_grad_()
    (d,) = torch.autograd.grad(apply_act(act, z, EPI_SLOPE).sum(), z)
    return d


def _epilogue_case(case, dtype, m, n, act, offset, gen):
    """Runs one kernel configuration at the given pointer offset; returns (outputs, references).
    Inputs come from gen, so two offsets see the same numbers."""
    def rnd(*shape):
        return (2 * torch.randn(*shape, generator=gen)).to(dtype).cuda()

    def nan(*shape):
        return torch.full(shape, float("nan"), dtype=dtype, device="cuda")

    f64 = lambda t: t.double()
    if case.startswith("bias_act"):
        z0, b0 = rnd(m, n), rnd(n) if "bias" in case.split(":") else None
        z, b = _at(z0, offset), (_at(b0, offset) if b0 is not None else None)
        zb = f64(z0) + (f64(b0) if b0 is not None else 0)
        if "inplace" in case:
            _launch("bias_act", dtype, m, n, act, z, b, z)
            return {"h": z}, {"h": _act64(act, zb)}
        h = _at(nan(m, n), offset)
        _launch("bias_act", dtype, m, n, act, z, b, h)
        # z written back as float32(z) + float32(b) rounded once; untouched without a bias
        want_z = (z0.float() + b0.float()).to(dtype) if b0 is not None else z0
        return {"h": h, "z": z}, {"h": _act64(act, zb), "z": want_z}
    if case.startswith("glu"):
        zg0, zu0, bg0, bu0 = rnd(m, n), rnd(m, n), rnd(n), rnd(n)
        zg, zu, bg, bu = (_at(t, offset) for t in (zg0, zu0, bg0, bu0))
        g64, u64 = f64(zg0) + f64(bg0), f64(zu0) + f64(bu0)
        if "inplace" in case:
            _launch("glu", dtype, m, n, act, zg, zu, bg, bu, zg)
            return {"h": zg}, {"h": _act64(act, g64) * u64}
        h = _at(nan(m, n), offset)
        _launch("glu", dtype, m, n, act, zg, zu, bg, bu, h)
        return ({"h": h, "zg": zg, "zu": zu},
                {"h": _act64(act, g64) * u64, "zg": (zg0.float() + bg0.float()).to(dtype),
                 "zu": (zu0.float() + bu0.float()).to(dtype)})
    if case.startswith("dact"):
        g0, z0 = rnd(m, n), rnd(m, n)
        g, z = _at(g0, offset), _at(z0, offset)
        want = f64(g0) * _dact64(act, z0)
        if "inplace" in case:  # dz aliases g, no h
            _launch("dact", dtype, m, n, act, g, z, g, None)
            return {"dz": g}, {"dz": want}
        dz, h = _at(nan(m, n), offset), _at(nan(m, n), offset)
        _launch("dact", dtype, m, n, act, g, z, dz, h)
        return {"dz": dz, "h": h}, {"dz": want, "h": _act64(act, z0)}
    if case == "dglu":
        g0, zg0, zu0 = rnd(m, n), rnd(m, n), rnd(m, n)
        g, zg, zu = (_at(t, offset) for t in (g0, zg0, zu0))
        dzg, dzu, h = (_at(nan(m, n), offset) for _ in range(3))
        _launch("dglu", dtype, m, n, act, g, zg, zu, dzg, dzu, h)
        return ({"dzg": dzg, "dzu": dzu, "h": h},
                {"dzg": f64(g0) * f64(zu0) * _dact64(act, zg0), "dzu": f64(g0) * _act64(act, zg0),
                 "h": _act64(act, zg0) * f64(zu0)})
    assert case == "add"
    y0, t0 = rnd(m, n), rnd(m, n)
    y, t = _at(y0, offset), _at(t0, offset)
    _launch("add", dtype, m, n, act, y, t)
    return {"y": y}, {"y": (y0.float() + t0.float()).to(dtype)}


EPI_CASES = ["bias_act", "bias_act:bias", "bias_act:bias:inplace", "bias_act:inplace", "glu", "glu:inplace",
             "dact", "dact:inplace", "dglu", "add"]


@pytest.mark.parametrize("case", EPI_CASES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_epilogue_vector_and_scalar_paths_agree(case, dtype):
    """Each elementwise kernel on 16-byte aligned pointers (vector path where N allows) and on
    pointers one element off (scalar path): bit-identical results, both within one rounding of
    the float64 reference, and nothing written outside the outputs."""
    for act in (["identity"] if case == "add" else ACTS):
        for m, n in EPI_SHAPES:
            runs = []
            for offset in (0, 1):
                gen = torch.Generator().manual_seed(1234 + m * n)
                outs, refs = _epilogue_case(case, dtype, m, n, act, offset, gen)
                torch.cuda.synchronize()
                for name, out in outs.items():
                    assert _untouched_outside(out, offset), (case, act, m, n, offset, name)
                    want = refs[name]
                    if want.dtype == dtype:  # an exactly specified result (write-back of z + b, y + t)
                        assert torch.equal(out, want), (case, act, m, n, offset, name)
                    else:
                        torch.testing.assert_close(out.double(), want, rtol=EPI_RTOL[dtype], atol=1e-4,
                                                   msg=lambda e: f"{case} {act} {m}x{n} offset {offset} {name}: {e}")
                runs.append({k: v.clone() for k, v in outs.items()})
            for name in runs[0]:  # both paths run the same float32 math per element
                assert torch.equal(runs[0][name], runs[1][name]), (case, act, m, n, name)


def test_epilogue_hook_rejects_unknown_kind():
    with pytest.raises(RuntimeError, match="unknown kind 'nope'"):
        _launch("nope", torch.float32, 1, 1, "relu")
