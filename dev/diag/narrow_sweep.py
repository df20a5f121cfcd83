"""Where does the narrow kernel beat cuBLAS? Inference forward of plain MLPs at narrow widths,
GPU time per call in CUDA-graph replay, side by side: eager nn.Sequential, the GEMM strategy
and the narrow kernel (both forced with FUSED_MLP_STRATEGY), plus each against float64.

    python dev/diag/narrow_sweep.py [--quick] [--widths 32 64] [--ms 1 64] [--dtypes float32]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402
from torch import nn  # noqa: E402

import fused_mlp  # noqa: E402
from gpu_sweep import forced, side_by_side_us, warm_gpu  # noqa: E402


def mlp(width, depth, dtype, act=nn.ReLU):
    layers = []
    for i in range(depth):
        layers.append(nn.Linear(width, width))
        if i < depth - 1:
            layers.append(act())
    return nn.Sequential(*layers).to("cuda", dtype)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--widths", type=int, nargs="*")
    p.add_argument("--ms", type=int, nargs="*")
    p.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    a = p.parse_args()
    warm_gpu()
    torch.manual_seed(0)
    widths = a.widths or ([64, 128] if a.quick else [32, 64, 128])
    ms = a.ms or ([1, 64, 8192] if a.quick else [1, 16, 64, 256, 1024, 8192, 65536])
    print(f"{'width':>5} {'depth':>5} {'dtype':>9} {'M':>6} {'eager':>8} {'gemm':>8} {'narrow':>8} "
          f"{'eager/nar':>9} {'gemm/nar':>8}  err(narrow) err(eager)")
    for dtype in [getattr(torch, d) for d in a.dtypes]:
        for width in widths:
            for depth in (3, 5):
                model = mlp(width, depth, dtype)
                fused = fused_mlp.FusedMLP.from_sequential(model)
                ref = mlp(width, depth, torch.float64)
                ref.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
                for m in ms:
                    x = torch.randn(m, width, device="cuda", dtype=dtype)
                    with torch.no_grad():
                        weights = [layer.weight for layer in model if isinstance(layer, nn.Linear)]
                        strat = forced("narrow", lambda: fused_mlp.explain(x, weights, "relu"))()["strategy"]
                        out = forced("narrow", lambda: fused(x))()
                        r = ref(x.double())
                        e = model(x)
                        err = ((out.double() - r).norm() / r.norm()).item()
                        eerr = ((e.double() - r).norm() / r.norm()).item()
                        t = side_by_side_us({"eager": lambda: model(x),
                                             "gemm": forced("gemm", lambda: fused(x)),
                                             "narrow": forced("narrow", lambda: fused(x))}, 200)
                    tag = "" if strat == "narrow" else f"  (narrow unsupported: {strat})"
                    print(f"{width:5d} {depth:5d} {str(dtype)[6:]:>9} {m:6d} {t['eager']:8.2f} {t['gemm']:8.2f} "
                          f"{t['narrow']:8.2f} {t['eager'] / t['narrow']:9.2f} {t['gemm'] / t['narrow']:8.2f}  "
                          f"{err:.2e} {eerr:.2e}{tag}", flush=True)


if __name__ == "__main__":
    main()
