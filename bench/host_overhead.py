"""Host (CPU) time per call at a tiny shape: what a Python loop waits for when the
kernels themselves cost nothing (decode-size batches on a GPU).

A 2-layer MLP, Linear(8, 8) -> GELU(tanh) -> Linear(8, 8), one row, float32. Each row of
the table is the median over --repeats runs of the per-call time of a loop of --calls
calls (after a warm-up loop). On CUDA each run ends with one synchronize, so a kernel
slower than the host would show; at this shape the loop is host-bound.

    python bench/host_overhead.py                  # CPU
    python bench/host_overhead.py --device cuda    # GPU (launch-bound shape)
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import fused_mlp


def per_call_us(fn, calls, repeats, sync):
    for _ in range(max(calls // 10, 100)):
        fn()
    sync()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        runs.append((time.perf_counter() - t) / calls * 1e6)
    return statistics.median(runs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--width", type=int, default=8)
    args = p.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    n = args.width
    seq = torch.nn.Sequential(torch.nn.Linear(n, n), torch.nn.GELU(approximate="tanh"),
                              torch.nn.Linear(n, n)).to(dev)
    f = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(1, n, device=dev)
    w = [seq[0].weight, seq[2].weight]
    b = [seq[0].bias, seq[2].bias]
    op = torch.ops.fused_mlp.forward
    cases = {
        "eager nn.Sequential": lambda: seq(x),
        "F.linear (one aten op)": lambda: F.linear(x, w[0], b[0]),
        "FusedMLP module": lambda: f(x),
        "fused_mlp.fused_mlp": lambda: fused_mlp.fused_mlp(x, w, b, "gelu_tanh"),
        "op direct (save=False)": lambda: op(x, w, b, [1, 1], [3, 0], 0.01, False, False),
    }
    print(f"torch {torch.__version__}, device {dev}, {torch.get_num_threads()} threads, "
          f"2-layer MLP {n}-{n}-{n} gelu_tanh, 1 row; us per call, median of {args.repeats} x {args.calls} calls")
    results = {}
    for mode in ("no_grad", "grad"):
        ctx = torch.no_grad if mode == "no_grad" else torch.enable_grad
        with ctx():
            for name, fn in cases.items():
                results[name, mode] = per_call_us(fn, args.calls, args.repeats, sync)
    print(f"{'call':26s} {'no_grad us':>11s} {'grad us':>9s}")
    for name in cases:
        print(f"{name:26s} {results[name, 'no_grad']:11.2f} {results[name, 'grad']:9.2f}")
    for mode in ("no_grad", "grad"):
        e, m = results["eager nn.Sequential", mode], results["FusedMLP module", mode]
        print(f"{mode}: FusedMLP is {e / m:.2f}x eager")


if __name__ == "__main__":
    main()
