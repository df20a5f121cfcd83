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
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402

from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS, copy_bandwidth_gbs, forced, warm_gpu  # noqa: E402

ROWS = (("mlp-1024-4096-gelu_tanh", 1), ("mlp-1024-4096-gelu_tanh", 16), ("geglu-768-3072", 64))


def graph_of(step, k):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(k):
            step()
    return g


def per_forward_us(g, k, batches=40):
    for _ in range(3):
        g.replay()
    times = []
    for _ in range(batches):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(5):
            g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / (5 * k))
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ks", type=int, nargs="*", default=[1, 8, 32])
    a = p.parse_args()
    warm_gpu()
    bw = copy_bandwidth_gbs()
    torch.manual_seed(0)
    print(f"copy bandwidth {bw:.0f} GB/s; µs per forward, graphs of K forwards (rounds: variants in turn)")
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
            graphs = {"eager": graph_of(step(eager), k), "auto": graph_of(step(fused), k),
                      "skinny": graph_of(forced("skinny", step(fused)), k)}
            t = {label: [] for label in graphs}
            for r in range(4):
                for label in list(graphs)[r % 3:] + list(graphs)[:r % 3]:
                    t[label].append(per_forward_us(graphs[label], k))
            t = {label: statistics.median(v) for label, v in t.items()}
            print(f"{name:>24} {m:3d} {floor:6.2f} {k:3d} {t['eager']:7.2f} {t['auto']:7.2f} {t['skinny']:7.2f} "
                  f"{t['auto'] / floor:10.2f}", flush=True)


if __name__ == "__main__":
    main()
