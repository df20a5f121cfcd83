"""Where a Python-loop call's host time goes on the GPU machine (issue 3's loop target).

At decode sizes a Python loop is host-bound: the wall time per call is what the CPU
spends in Python, torch's dispatcher, the allocator and the CUDA driver. This times each
piece alone in a loop (the pieces take turns, one synchronize per loop; median round), side
by side with the eager nn.Sequential; --profile then runs torch.profiler over the fused and
the eager calls and lists the CPU-side events (aten ops and CUDA runtime calls) by self time.

    python dev/diag/host_loop.py [--m 1] [--calls 1000] [--rounds 7] [--profile]
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fused_mlp  # noqa: E402
from fused_mlp._ops import _below_autograd, _forward_entry  # noqa: E402
from gpu_sweep import forced  # noqa: E402


def per_call_us(cases, calls, rounds):
    """Per case, µs per call: the cases take turns (one loop of each per round; the host
    drifts by tens of percent within seconds), median round."""
    def loop(fn):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - t) / calls * 1e6

    for fn in cases.values():
        for _ in range(200):
            fn()
    torch.cuda.synchronize()
    runs = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            runs[name].append(loop(fn))
    return {name: statistics.median(v) for name, v in runs.items()}


def no_grad_step(model):
    """As bench/gpu_sweep.py's loop times a step: torch.no_grad() entered per call."""
    def step():
        with torch.no_grad():
            model(x_of[model])
    return step


x_of = {}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--m", type=int, default=1)
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--after-graph", action="store_true", help="loop again after capturing graphs (as gpu_sweep)")
    a = p.parse_args()
    torch.manual_seed(0)
    dt, dev = torch.bfloat16, "cuda"
    seq = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(approximate="tanh"),
                              torch.nn.Linear(4096, 1024)).to(dev, dt)
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(a.m, 1024, device=dev, dtype=dt)
    w = [seq[0].weight, seq[2].weight]
    b = [seq[0].bias, seq[2].bias]
    small = torch.randn(a.m, 1024, device=dev, dtype=dt)
    x_of[seq] = x_of[fused] = x

    def op_direct():
        with _below_autograd():
            return _forward_entry(x, w, b, [1, 1], [3, 0], 0.01, False, False)

    cases = {
        "eager nn.Sequential": lambda: seq(x),
        "FusedMLP (auto)": lambda: fused(x),
        "fused_mlp.fused_mlp": lambda: fused_mlp.fused_mlp(x, w, b, "gelu_tanh"),
        "op direct, below autograd": op_direct,
        "FusedMLP, strategy gemm": forced("gemm", lambda: fused(x)),
        "FusedMLP, strategy small_m": forced("small_m", lambda: fused(x)),
        "env set/pop only": forced("gemm", lambda: None),
        "F.linear layer 0": lambda: F.linear(x, w[0], b[0]),
        "x.neg() (one launch)": lambda: small.neg(),
        "torch.empty (M, 1024)": lambda: torch.empty(a.m, 1024, device=dev, dtype=dt),
        "torch.empty x2": lambda: (torch.empty(a.m, 1024, device=dev, dtype=dt),
                                   torch.empty(4096 * a.m + 64, device=dev, dtype=dt)),
        "is_current_stream_capturing": torch.cuda.is_current_stream_capturing,
        "eager, no_grad per call": no_grad_step(seq),
        "FusedMLP, no_grad per call": no_grad_step(fused),
    }
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; 1024-4096-1024 gelu_tanh bf16, M = {a.m}; "
          f"us per call, cases in turn, median of {a.rounds} rounds of {a.calls}")
    with torch.no_grad():
        res = per_call_us(cases, a.calls, a.rounds)
        print(f"auto chose: {fused_mlp.explain(x, w, 'gelu_tanh')['strategy']}")
    for name, us in res.items():
        print(f"  {name:32s} {us:8.2f}")
    print(f"eager / FusedMLP: {res['eager nn.Sequential'] / res['FusedMLP (auto)']:.2f}x")
    if a.after_graph:
        # As bench/gpu_sweep.py's targets do: capture and replay graphs of both first, then loop.
        for model in (seq, fused):
            g = torch.cuda.CUDAGraph()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s), torch.no_grad():
                for _ in range(3):
                    model(x)
            torch.cuda.current_stream().wait_stream(s)
            with torch.no_grad(), torch.cuda.graph(g):
                model(x)
            for _ in range(10):
                g.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            res2 = per_call_us({k: cases[k] for k in ("eager nn.Sequential", "FusedMLP (auto)")}, a.calls, a.rounds)
        res2.update(per_call_us({k: cases[k] for k in ("eager, no_grad per call", "FusedMLP, no_grad per call")},
                                a.calls, a.rounds))
        for name, us in res2.items():
            print(f"  after graph capture: {name:32s} {us:8.2f}")

    if a.profile:
        from torch.profiler import ProfilerActivity, profile
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(300):
                fused(x)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(300):
                seq(x)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
