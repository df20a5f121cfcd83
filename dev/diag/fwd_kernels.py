"""Per-kernel GPU time of one forward, eager vs fused (and torch's gelu out of place vs ours
in place on the same tensor): where does a forward row of the sweep lose time?

    python dev/diag/fwd_kernels.py [M ...]      (default M = 8192; 1024-4096-1024 gelu_tanh bf16)
"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch
import torch.nn.functional as F
import fused_mlp
from fused_mlp.profiling import MLPSpec, build_mlp, fused_version
from gpu_sweep import graph_time_us, warm_gpu

spec = MLPSpec(1024, 4096, depth=2, activation="gelu_tanh", gated=False, bias=True)
eager = build_mlp(spec, "cuda", torch.bfloat16)
fused = fused_version(eager)
warm_gpu()
ACT_GELU_TANH = ["identity", "relu", "gelu", "gelu_tanh", "silu", "tanh", "sigmoid", "leaky_relu"].index("gelu_tanh")


def kernels(fn, n=10):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
        for _ in range(n): fn()
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / n, e.count // n) for e in p.key_averages() if e.device_time_total > 0]
    for k, t, c in sorted(rows, key=lambda r: -r[1]):
        print(f"    {t:8.1f} us  x{c}  {k[:110]}")


with torch.no_grad():
    for m in [int(a) for a in sys.argv[1:]] or [8192]:
        x = torch.randn(m, 1024, device="cuda", dtype=torch.bfloat16)
        print(f"M={m} explain:", fused_mlp.explain(x, [p for p in fused.parameters() if p.dim() == 2], "gelu_tanh")["strategy"])
        print(f"  graph: eager {graph_time_us(lambda: eager(x), 30):.1f} us, fused {graph_time_us(lambda: fused(x), 30):.1f} us")
        print("  eager kernels:"); kernels(lambda: eager(x))
        print("  fused kernels:"); kernels(lambda: fused(x))
        z = torch.randn(m, 4096, device="cuda", dtype=torch.bfloat16)
        h = torch.empty_like(z)
        ours = lambda out: fused_mlp._C._epilogue("bias_act", 0, torch.cuda.current_stream().cuda_stream, 1, m, 4096,
                                                   ACT_GELU_TANH, 0.0, (z.data_ptr(), 0, out.data_ptr(), 0, 0, 0))
        print(f"  gelu pass alone (M x 4096 bf16): torch out of place {graph_time_us(lambda: F.gelu(z, approximate='tanh'), 30):.1f} us,"
              f" torch in place {graph_time_us(lambda: torch.ops.aten.gelu_(z, approximate='tanh'), 30):.1f} us,"
              f" ours out of place {graph_time_us(lambda: ours(h), 30):.1f} us, ours in place {graph_time_us(lambda: ours(z), 30):.1f} us")
        print("  gelu kernels, torch then ours:"); kernels(lambda: (F.gelu(z, approximate='tanh'), ours(h)))
