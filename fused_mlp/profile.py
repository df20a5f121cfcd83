"""python -m fused_mlp.profile — profile an MLP eager, compiled and fused; print one table,
write Chrome/Perfetto traces and a time-vs-batch plot.

Default: the GeGLU block gate/up/down 768->3072->768, bf16, batch 64 x seq 128 on a GPU;
without a GPU, float32 and batch 4 x seq 64 (finishes in well under a minute on 2 cores).

    python -m fused_mlp.profile                              # the default block
    python -m fused_mlp.profile --no-gated --in 1024 --hidden 4096 --bias --activation gelu_tanh
    python -m fused_mlp.profile --train --out prof_out       # forward+backward, traces + plot in prof_out/
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from . import profiling


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m fused_mlp.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("the MLP")
    g.add_argument("--in", dest="in_features", type=int, default=768)
    g.add_argument("--hidden", type=int, default=3072)
    g.add_argument("--out-features", type=int, default=None, help="default: = --in")
    g.add_argument("--depth", type=int, default=2, help="Linear layers of a plain MLP (ignored when gated)")
    g.add_argument("--activation", default="gelu_tanh")
    g.add_argument("--gated", dest="gated", action="store_true", default=True, help="gate/up/down block (default)")
    g.add_argument("--no-gated", dest="gated", action="store_false", help="a plain Linear/activation stack")
    g.add_argument("--bias", action="store_true")
    r = p.add_argument_group("the run")
    r.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    r.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 on cuda, float32 on cpu")
    r.add_argument("--batch", type=int, default=None, help="default: 64 on cuda, 4 on cpu")
    r.add_argument("--seq", type=int, default=None, help="default: 128 on cuda, 64 on cpu")
    r.add_argument("--batches", default=None,
                   help="comma-separated row counts for the plot sweep (default: powers of 2 up to batch*seq)")
    r.add_argument("--train", action="store_true", help="profile forward+backward instead of forward")
    r.add_argument("--variants", default="eager,compiled,fused")
    r.add_argument("--out", default=None, help="directory for traces, plot and results.json")
    r.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


def _mem(b):
    if b is None:
        return "n/a"
    return f"{b / 2**20:.1f} MiB"


def format_table(results, spec, rows, device, dtype, train) -> str:
    head = (f"{spec.describe()}, {rows} rows, {str(dtype).replace('torch.', '')}, {device}, "
            f"{'forward+backward' if train else 'forward'}; per step")
    cols = ["variant", "kernels", "kernel time", "CPU dispatch", "wall", "peak mem", "speedup"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in results:
        label = r.name + (f" [{r.strategy}]" if r.strategy else "")
        lines.append(f"| {label} | {r.kernels_per_step:.0f} | {r.kernel_time_us:.1f} us | {r.cpu_dispatch_us:.1f} us | "
                     f"{r.wall_us:.1f} us | {_mem(r.peak_memory_bytes)} | {r.speedup:.2f}x |")
    lines.append("")
    kind = "kernels" if device.type == "cuda" else "operators"
    for r in results:
        top = ", ".join(f"{k.name[:60]} x{k.calls_per_step:g}" for k in r.kernels[:6])
        lines.append(f"{r.name} {kind}: {top}")
    return "\n".join(lines)


def main(argv=None):
    a = parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    on_gpu = device.type == "cuda"
    dtype = getattr(torch, a.dtype) if a.dtype else (torch.bfloat16 if on_gpu else torch.float32)
    batch = a.batch or (64 if on_gpu else 4)
    seq = a.seq or (128 if on_gpu else 64)
    rows = batch * seq
    spec = profiling.MLPSpec(a.in_features, a.hidden, a.out_features, a.depth, a.activation, a.gated, a.bias)
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    torch.manual_seed(0)
    model = profiling.build_mlp(spec, device, dtype)
    x = profiling.make_input(spec, rows, device, dtype)
    print(f"profiling {spec.describe()} on {device} ...", file=sys.stderr)
    results = profiling.profile_variants(model, x, train=a.train, out_dir=a.out, variants=variants)
    table = format_table(results, spec, rows, device, dtype, a.train)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        batches = [int(b) for b in a.batches.split(",")] if a.batches else \
            [2 ** k for k in range(0, max(rows, 1).bit_length())]
        times = None
        if not a.no_plot:
            times = profiling.sweep_batches(model, spec, batches, device, dtype, a.train, variants,
                                            progress=lambda s: print(s, file=sys.stderr, flush=True))
            png = profiling.plot_sweep(batches, times, f"{spec.describe()}, {str(dtype).replace('torch.', '')}, "
                                       f"{torch.cuda.get_device_name(device) if on_gpu else 'CPU'}",
                                       os.path.join(a.out, "time_vs_batch.png"))
            print(f"plot: {png}", file=sys.stderr)
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump({"spec": vars(spec), "rows": rows, "device": str(device), "dtype": str(dtype),
                       "train": a.train, "variants": [vars(r) | {"kernels": [vars(k) for k in r.kernels]}
                                                     for r in results],
                       "sweep": {"batches": batches, "times_us": times}}, f, indent=1)
        for r in results:
            if r.trace_path:
                print(f"trace: {r.trace_path} (open in https://ui.perfetto.dev or chrome://tracing)", file=sys.stderr)
    print(table)
    return results


if __name__ == "__main__":
    main()
