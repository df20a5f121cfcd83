"""fwd+bwd at M = 1 (bf16, CUDA-graph replay): eager vs the fused op with each forward
strategy (FUSED_MLP_STRATEGY, read per call), to decide the dispatcher's M = 1 rule when
the forward saves for backward. Usage (GPU, package built): python dev/cuda/small_m/train_m1.py"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "bench"))
from gpu_sweep import SPECS, graph_time_us, make_step, warm_gpu  # noqa: E402
from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402

warm_gpu()
for name in ("mlp-1024-4096-gelu_tanh", "geglu-768-3072"):
    torch.manual_seed(0)
    eager = build_mlp(SPECS[name], "cuda", torch.bfloat16)
    fused = fused_version(eager)
    x = torch.randn(1, SPECS[name].in_features, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    row = {"eager": graph_time_us(make_step(eager, x, True), 30)}
    for s in ("gemm", "small_m"):
        os.environ["FUSED_MLP_STRATEGY"] = s
        row[s] = graph_time_us(make_step(fused, x, True), 30)
        row[s + " fwd"] = graph_time_us(make_step(fused, x, False), 30)
    os.environ.pop("FUSED_MLP_STRATEGY")
    print(name, "M=1 bf16, us per step (graph):", {k: round(v, 1) for k, v in row.items()}, flush=True)
