"""Per-kernel GPU time of one sweep step, eager vs fused: where does a row of bench/RESULTS.md
lose time? Graph-replay time of both (side by side, as the sweep measures), then the kernels
each launches per step with their mean GPU time (torch.profiler, CUDA activity).

    python dev/diag/step_kernels.py MODEL M [--train] [--dtype bfloat16] [--strategy skinny] [--graph]
    e.g.  python dev/diag/step_kernels.py mlp-1024-4096-gelu_tanh 64
          python dev/diag/step_kernels.py geglu-768-3072 16 --train
MODEL: a key of bench/gpu_sweep.py's SPECS.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402

import fused_mlp  # noqa: E402
from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS, capture_graph, forced, make_step, side_by_side_us, warm_gpu  # noqa: E402


def kernels(step, n=20, graph=False):
    """The kernels of one step with their mean GPU time; graph: of the step's CUDA graph's replays
    (as the sweep times it), else of plain calls."""
    if graph:
        g = capture_graph(step)
        if g is None:
            raise SystemExit("--graph: the step could not be captured (the reason is printed above)")
        step = g.replay
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
        for _ in range(n):
            step()
        torch.cuda.synchronize()
    rows = [(e.key, e.device_time_total / n, e.count / n) for e in p.key_averages() if e.device_time_total > 0]
    total = sum(t for _, t, _ in rows)
    for k, t, c in sorted(rows, key=lambda r: -r[1]):
        print(f"    {t:8.2f} us  x{c:g}  {k[:110]}")
    print(f"    {total:8.2f} us  total kernel time per step")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=list(SPECS))
    p.add_argument("m", type=int)
    p.add_argument("--train", action="store_true")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--strategy", default="auto", help="FUSED_MLP_STRATEGY for the fused side")
    p.add_argument("--graph", action="store_true", help="list the kernels of graph replays, not of plain calls")
    a = p.parse_args()
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    eager = build_mlp(SPECS[a.model], "cuda", dtype)
    fused = fused_version(eager)
    x = torch.randn(a.m, SPECS[a.model].in_features, device="cuda", dtype=dtype, requires_grad=a.train)
    warm_gpu()
    with torch.set_grad_enabled(a.train):
        how = forced(a.strategy, lambda: fused_mlp.explain(x, [q for q in fused.parameters() if q.dim() == 2],
                                                           SPECS[a.model].activation, gated=SPECS[a.model].gated))()
    print(f"{a.model} {a.dtype} {'fwd+bwd' if a.train else 'fwd'} M={a.m}: fused strategy {how['strategy']}")
    fused_step = forced(a.strategy, make_step(fused, x, a.train))
    t = side_by_side_us({"eager": make_step(eager, x, a.train), "fused": fused_step}, 30)
    print(f"  graph replay: eager {t['eager']:.2f} us, fused {t['fused']:.2f} us, eager/fused {t['eager'] / t['fused']:.3f}")
    for label, step in (("eager", make_step(eager, x, a.train)), ("fused", fused_step)):
        print(f"  {label} kernels per step{' (graph replay)' if a.graph else ''}:")
        kernels(step, graph=a.graph)


if __name__ == "__main__":
    main()
