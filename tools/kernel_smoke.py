"""A short run of every CUDA strategy, forward and backward (and inference forwards, where
small_m, narrow and skinny apply), on odd shapes: the workload tools/gpu_check.sh runs under
compute-sanitizer memcheck."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import fused_mlp  # noqa: E402
from mlp_reference import random_mlp  # noqa: E402

for strategy in ("gemm", "small_m", "narrow", "skinny"):
    os.environ["FUSED_MLP_STRATEGY"] = strategy
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for widths, gated, m in (([17, 33, 5], False, 3), ([64, 136, 64], True, 16), ([72, 8, 24, 72], False, 64),
                                 ([200, 136, 64], True, 40)):
            weights, biases, acts = random_mlp(widths, gated=gated, dtype=dtype, device="cuda", requires_grad=True)
            x = torch.randn(m, widths[0], dtype=dtype, device="cuda", requires_grad=True)
            fused_mlp.fused_mlp(x, weights, biases, "gelu", gated=gated).float().square().sum().backward()
            with torch.no_grad():
                fused_mlp.fused_mlp(x, weights, biases, "gelu", gated=gated)
                fused_mlp.fused_mlp(torch.randn(100, widths[0], dtype=dtype, device="cuda"), weights, biases, "gelu",
                                    gated=gated)
torch.cuda.synchronize()
print("kernel smoke OK")
