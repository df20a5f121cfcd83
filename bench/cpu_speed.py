"""Eager nn.Sequential vs fused_mlp.FusedMLP on the CPU, side by side in one run.

Forward only, float32, torch's default thread count (all cores). The same modules
(same Parameter objects) run both ways; each timing is the median of --repeats runs
after warm-up. Napkin math: FLOPs = 2·M·Σ(in·out); the GFLOP/s column is that over
the median time.

    python bench/cpu_speed.py            # the issue's shapes
    python bench/cpu_speed.py --quick    # small shapes, a few seconds (CI, README)
"""
import argparse
import statistics
import time

import torch
from fused_mlp.profiling import MLPSpec, build_mlp, fused_version

CASES = {
    # name: (spec, M, M in --quick)
    "narrow 64x5 relu": (MLPSpec(64, 64, 64, depth=5, activation="relu", gated=False, bias=True), 65536, 4096),
    "1024-4096-1024 gelu_tanh": (MLPSpec(1024, 4096, depth=2, activation="gelu_tanh", gated=False, bias=True),
                                 2048, 128),
}


def median_seconds(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small M: finishes in seconds")
    p.add_argument("--repeats", type=int, default=None)
    args = p.parse_args()
    repeats = args.repeats or (5 if args.quick else 15)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, forward, "
          f"median of {repeats}")
    rows = []
    for name, (spec, m, m_quick) in CASES.items():
        m = m_quick if args.quick else m
        eager = build_mlp(spec)
        fused = fused_version(eager)
        widths = [spec.in_features] + [spec.hidden] * (spec.depth - 1) + [spec.out]
        x = torch.randn(m, widths[0])
        with torch.inference_mode():
            err = (fused(x) - eager(x)).abs().max().item() / eager(x).abs().max().item()
            t_e = median_seconds(lambda: eager(x), repeats)
            t_f = median_seconds(lambda: fused(x), repeats)
        flops = 2 * m * sum(widths[i] * widths[i + 1] for i in range(len(widths) - 1))
        rows.append((name, m, t_e, t_f, flops, err))
    print(f"{'case':28s} {'M':>7s} {'eager ms':>9s} {'fused ms':>9s} {'speedup':>8s} "
          f"{'eager GF/s':>10s} {'fused GF/s':>10s} {'max rel err':>11s}")
    for name, m, t_e, t_f, flops, err in rows:
        print(f"{name:28s} {m:7d} {t_e * 1e3:9.2f} {t_f * 1e3:9.2f} {t_e / t_f:7.2f}x "
              f"{flops / t_e / 1e9:10.1f} {flops / t_f / 1e9:10.1f} {err:11.1e}")


if __name__ == "__main__":
    main()
