"""Where does the skinny kernel (one tensor-core launch per layer, PDL between layers) beat the
other strategies? Inference forward of the sweep's models in 16-bit at M <= 64, GPU time per
call in CUDA-graph replay, side by side: eager nn.Sequential and the fused op with each
strategy forced (FUSED_MLP_STRATEGY), plus the skinny output's error against float64.

    python dev/diag/skinny_sweep.py [--models geglu-768-3072] [--ms 1 16 64] [--train]
Run once more with FMLP_SK_PDL=0 to see what programmatic dependent launch buys.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402

import fused_mlp  # noqa: E402
from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS, forced, make_step, side_by_side_us, warm_gpu  # noqa: E402

STRATS = ("gemm", "small_m", "skinny")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(SPECS))
    p.add_argument("--ms", type=int, nargs="*", default=[1, 16, 32, 64])
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--train", action="store_true", help="time forward+backward (skinny forward saves z)")
    p.add_argument("--replays", type=int, default=100)
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    warm_gpu()
    torch.manual_seed(0)
    print(f"{'model':>24} {'M':>3} {'eager':>7} " + " ".join(f"{s:>7}" for s in STRATS) +
          f" {'eager/sk':>8} {'best/sk':>7}  err(skinny) err(eager)  auto", flush=True)
    for name in a.models:
        spec = SPECS[name]
        eager = build_mlp(spec, "cuda", dtype)
        fused = fused_version(eager)
        ref = build_mlp(spec, "cuda", torch.float64)
        ref.load_state_dict({k: v.double() for k, v in eager.state_dict().items()})
        for m in a.ms:
            x = torch.randn(m, spec.in_features, device="cuda", dtype=dtype, requires_grad=a.train)
            with torch.no_grad():
                r = ref(x.double())
                out = forced("skinny", lambda: fused(x))()
                e = eager(x)
                err = ((out.double() - r).norm() / r.norm()).item()
                eerr = ((e.double() - r).norm() / r.norm()).item()
                auto = fused_mlp.explain(x, [q for q in fused.parameters() if q.dim() == 2], spec.activation,
                                         gated=spec.gated)["strategy"]
            steps = {"eager": make_step(eager, x, a.train)}
            steps.update({s: forced(s, make_step(fused, x, a.train)) for s in STRATS})
            t = side_by_side_us(steps, a.replays)
            best = min(t[s] for s in ("eager", "gemm", "small_m"))
            print(f"{name:>24} {m:3d} {t['eager']:7.2f} " + " ".join(f"{t[s]:7.2f}" for s in STRATS) +
                  f" {t['eager'] / t['skinny']:8.2f} {best / t['skinny']:7.2f}  {err:.2e}    {eerr:.2e}  {auto}",
                  flush=True)


if __name__ == "__main__":
    main()
