"""Diagnose fwd+bwd at M=1 on 1024-4096-1024 bf16: strategy, per-kernel GPU time."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch
import fused_mlp
from fused_mlp.profiling import MLPSpec, build_mlp, fused_version
from gpu_sweep import graph_time_us, make_step

spec = MLPSpec(1024, 4096, depth=2, activation="gelu_tanh", gated=False, bias=True)
eager = build_mlp(spec, "cuda", torch.bfloat16)
fused = fused_version(eager)
for m in (1, 2, 16):
    x = torch.randn(m, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    print(m, "explain:", fused_mlp.explain(x, [p for p in fused.parameters() if p.dim() == 2], "gelu_tanh")["strategy"])
    print(m, "eager", graph_time_us(make_step(eager, x, True), 50), "fused", graph_time_us(make_step(fused, x, True), 50))
x = torch.randn(1, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
step = make_step(fused, x, True)
for _ in range(5): step()
torch.cuda.synchronize()
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
    for _ in range(10): step()
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cuda_time_total", row_limit=15))
