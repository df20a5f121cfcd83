"""GPU time per forward when a CUDA graph holds K forwards instead of one.

bench/gpu_sweep.py times a graph of ONE forward, replayed back to back, so every forward also
pays the graph's own launch (~1.9-2.2 µs for a graph of one empty kernel on the H100:
dev/diag/stream_ceiling.cu). A model captured whole (as decode servers capture theirs) pays
that once for all its layers. This prints both conventions side by side for the issue's
small-batch rows, with the weight-streaming floor of the same run:

    python dev/diag/graph_batch.py [--ks 1 8 32]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402

from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS, copy_bandwidth_gbs, forced, side_by_side_us, warm_gpu  # noqa: E402

ROWS = (("mlp-1024-4096-gelu_tanh", 1), ("mlp-1024-4096-gelu_tanh", 16), ("geglu-768-3072", 64))


def k_calls(step, k):
    """One step that is k calls of step: side_by_side_us captures it as one graph."""
    def run():
        for _ in range(k):
            step()
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ks", type=int, nargs="*", default=[1, 8, 32])
    a = p.parse_args()
    warm_gpu()
    bw = copy_bandwidth_gbs()
    torch.manual_seed(0)
    print(f"copy bandwidth {bw:.0f} GB/s; µs per forward, graphs of K forwards (variants in turn, "
          "gpu_sweep.side_by_side_us)")
    print(f"{'model':>24} {'M':>3} {'floor':>6} {'K':>3} {'eager':>7} {'auto':>7} {'skinny':>7} {'auto/floor':>10}")
    for name, m in ROWS:
        spec = SPECS[name]
        eager = build_mlp(spec, "cuda", torch.bfloat16)
        fused = fused_version(eager)
        floor = sum(q.numel() * q.element_size() for q in eager.parameters()) / (bw * 1e9) * 1e6
        x = torch.randn(m, spec.in_features, device="cuda", dtype=torch.bfloat16)

        def step(model):
            def run():
                with torch.no_grad():
                    model(x)
            return run
        for k in a.ks:
            t = side_by_side_us({"eager": k_calls(step(eager), k), "auto": k_calls(step(fused), k),
                                 "skinny": k_calls(forced("skinny", step(fused)), k)}, replays=240)
            t = {label: v / k for label, v in t.items()}  # the models here all capture
            print(f"{name:>24} {m:3d} {floor:6.2f} {k:3d} {t['eager']:7.2f} {t['auto']:7.2f} {t['skinny']:7.2f} "
                  f"{t['auto'] / floor:10.2f}", flush=True)


if __name__ == "__main__":
    main()
