"""A few skinny forwards of one sweep model, for ncu (-k regex:sk_kernel):
    ncu ... python dev/diag/skinny_ncu.py MODEL M"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS  # noqa: E402

os.environ["FUSED_MLP_STRATEGY"] = "skinny"
spec = SPECS[sys.argv[1]]
fused = fused_version(build_mlp(spec, "cuda", torch.bfloat16))
x = torch.randn(int(sys.argv[2]), spec.in_features, device="cuda", dtype=torch.bfloat16)
with torch.no_grad():
    for _ in range(4):
        fused(x)
torch.cuda.synchronize()
