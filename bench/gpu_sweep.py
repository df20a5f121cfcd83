"""GPU benchmark: eager vs torch.compile vs fused, side by side in one process.

Part 1 (targets): the small-batch targets of the CUDA issue, with the weight-streaming
floor measured in the same run (weight bytes / device-to-device copy bandwidth).
Part 2 (sweep): M in {1, 16, 64, 256, 1024, 8192} over four MLPs, bf16 and fp32,
forward and forward+backward. Times are GPU time per step from CUDA-graph replay
(warm-up, then the three variants' graphs replayed in turn over 3 rounds, each round a
median of replays; the median round); ratios are against eager in the same run.

    python bench/gpu_sweep.py --out DIR          # full (H100: a few minutes)
    python bench/gpu_sweep.py --quick            # a couple of shapes
Writes DIR/sweep.json and DIR/RESULTS.md (a markdown table) and prints the table last.
"""
import argparse
import datetime
import json
import os
import statistics
import time

import torch

import fused_mlp
from fused_mlp.profiling import MLPSpec, build_mlp, fused_version


# ----------------------------------------------------------------------------- models
SPECS = {
    "narrow64x5-relu": MLPSpec(64, 64, 64, depth=5, activation="relu", gated=False, bias=True),
    "geglu-768-3072": MLPSpec(768, 3072, activation="gelu_tanh", gated=True),
    "mlp-1024-4096-gelu_tanh": MLPSpec(1024, 4096, depth=2, activation="gelu_tanh", gated=False, bias=True),
    "swiglu-4096-14336": MLPSpec(4096, 14336, activation="silu", gated=True),
}
MODELS = list(SPECS)


# ----------------------------------------------------------------------------- timing
def capture_graph(step):
    """A CUDA graph of one step (after warm-up on a side stream), or None if it can't be captured."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            step()
    except Exception as e:  # noqa: BLE001  (reported in the table)
        print(f"    capture failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        return None
    for _ in range(3):
        g.replay()
    return g


def replay_time_us(g, replays):
    """Median GPU time of one replay of g (µs): back-to-back replays between two events (per-step
    GPU time without the host's launch gaps), the median over `replays` such batches (fewer for
    long steps: about half a second of replays per measurement at most)."""
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    g.replay()
    b.record()
    b.synchronize()
    one_us = a.elapsed_time(b) * 1e3
    per_batch = max(1, min(10, int(1000 / max(one_us, 1e-3))))
    replays = max(3, min(replays, int(5e5 / max(one_us * per_batch, 1e-3))))
    times = []
    for _ in range(replays):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(per_batch):
            g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / per_batch)
    return statistics.median(times)


def graph_time_us(step, replays):
    """Median GPU time of one step from CUDA-graph replay (µs), or None if it can't be captured."""
    g = capture_graph(step)
    return None if g is None else replay_time_us(g, replays)


def side_by_side_us(steps, replays, rounds=6):
    """{label: µs} for several steps measured in turn, `rounds` times over, each the median of
    its rounds: clock and thermal drift over a long sweep then lands on every variant alike
    instead of on whichever ran last (session 4: a 0.94x row at M = 8192 measured level when
    eager and fused were re-timed back to back). The order rotates each round (A B C, B C A,
    C A B, ...), so no variant always runs first or right after the same other one (session 11:
    the M = 8192 row measured 0.94x in the sweep and level side by side, same kernels)."""
    graphs = {label: capture_graph(step) for label, step in steps.items()}
    times = {label: [] for label in steps}
    order = [label for label, g in graphs.items() if g is not None]
    for r in range(rounds):
        k = r % len(order) if order else 0
        for label in order[k:] + order[:k]:
            times[label].append(replay_time_us(graphs[label], max(3, replays // rounds)))
    return {label: statistics.median(t) if t else None for label, t in times.items()}


def warm_gpu(seconds=1.0):
    """Run the GPU busy first: clocks idle low and ramp up under load."""
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()


def forced(strategy, step):
    """step, run with FUSED_MLP_STRATEGY=strategy set around each call (read per call, also
    while a CUDA graph is captured); for the dev scripts that compare strategies."""
    def run():
        os.environ["FUSED_MLP_STRATEGY"] = strategy
        try:
            return step()
        finally:
            os.environ.pop("FUSED_MLP_STRATEGY", None)
    return run


def loop_times_us(steps, iters=500, rounds=7):
    """Wall time per call of a Python loop (host time included), µs, for each of `steps`
    (label -> (step, FUSED_MLP_STRATEGY or None)). The host of the GPU machine drifts by
    tens of percent within seconds, so the variants take turns: each round times one loop
    of every variant; per variant the median round. The strategy is set outside the timed
    loop (setting os.environ costs ~2-4 µs there)."""
    def one(step, strategy):
        if strategy:
            os.environ["FUSED_MLP_STRATEGY"] = strategy
        try:
            step()
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(iters):
                step()
            torch.cuda.synchronize()
            return (time.perf_counter() - t) / iters * 1e6
        finally:
            os.environ.pop("FUSED_MLP_STRATEGY", None)

    for step, strategy in steps.values():  # warm-up
        one(step, strategy)
    runs = {label: [] for label in steps}
    for _ in range(rounds):
        for label, (step, strategy) in steps.items():
            runs[label].append(one(step, strategy))
    return {label: statistics.median(v) for label, v in runs.items()}


def copy_bandwidth_gbs():
    n = 1 << 28  # 256 MiB
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    a.random_()
    for _ in range(3):
        b.copy_(a)
    times = []
    for _ in range(20):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        b.copy_(a)
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1e-3)
    return 2 * n / statistics.median(times) / 1e9


def make_step(model, x, train):
    if train:
        def step():
            model(x).sum().backward()
    else:
        def step():
            with torch.no_grad():
                model(x)
    return step


# ----------------------------------------------------------------------------- parts
def targets(replays):
    """The issue's small-batch shapes: eager, and the fused op under every strategy
    (FUSED_MLP_STRATEGY is read per call), in graph replay and in a Python loop."""
    bw = copy_bandwidth_gbs()
    rows = []
    torch.manual_seed(0)
    for name, m_list in (("mlp-1024-4096-gelu_tanh", (1, 16)), ("geglu-768-3072", (64,))):
        eager = build_mlp(SPECS[name], "cuda", torch.bfloat16)
        fused = fused_version(eager)
        wbytes = sum(p.numel() * p.element_size() for p in eager.parameters())
        floor_us = wbytes / (bw * 1e9) * 1e6
        for m in m_list:
            x = torch.randn(m, SPECS[name].in_features, device="cuda", dtype=torch.bfloat16)
            row = dict(model=name, M=m, floor_us=floor_us, copy_gbs=bw,
                       eager_graph_us=graph_time_us(make_step(eager, x, False), replays))
            for strategy in ("auto", "gemm", "small_m", "skinny"):
                os.environ["FUSED_MLP_STRATEGY"] = strategy
                row[f"{strategy}_graph_us"] = graph_time_us(make_step(fused, x, False), replays)
                if strategy == "auto":
                    with torch.no_grad():  # as the timed calls run: explain() plans a grad-mode call as training
                        row["strategy"] = fused_mlp.explain(x, [p for p in fused.parameters() if p.dim() == 2],
                                                            SPECS[name].activation, gated=SPECS[name].gated)["strategy"]
            os.environ.pop("FUSED_MLP_STRATEGY")
            loops = loop_times_us({"eager": (make_step(eager, x, False), None),
                                   **{s: (make_step(fused, x, False), s) for s in ("auto", "gemm", "small_m", "skinny")}})
            row.update({f"{k}_loop_us": v for k, v in loops.items()})
            rows.append(row)
    return rows


def sweep(replays, quick, on_model_done=lambda rows: None):
    ms = [1, 64, 8192] if quick else [1, 16, 64, 256, 1024, 8192]
    models = ["narrow64x5-relu", "geglu-768-3072"] if quick else MODELS
    rows = []
    for name in models:
        for dtype in (torch.bfloat16, torch.float32):
            torch.manual_seed(0)
            eager = build_mlp(SPECS[name], "cuda", dtype)
            fused = fused_version(eager)
            compiled = torch.compile(eager, dynamic=True)
            for train in (False, True):
                for m in ms:
                    x = torch.randn(m, SPECS[name].in_features, device="cuda", dtype=dtype, requires_grad=train)
                    steps = {}
                    for label, mod in (("eager", eager), ("compile", compiled), ("fused", fused)):
                        try:
                            make_step(mod, x, train)()  # compile / first-call failures are reported, not fatal
                            steps[label] = make_step(mod, x, train)
                        except Exception as e:  # noqa: BLE001
                            print(f"    {label} failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
                    t = {"eager": None, "compile": None, "fused": None}
                    t.update(side_by_side_us(steps, replays))
                    for p in eager.parameters():
                        p.grad = None
                    row = dict(model=name, dtype=str(dtype).replace("torch.", ""), mode="fwd+bwd" if train else "fwd",
                               M=m, **t)
                    rows.append(row)
                    print(fmt_row(row), flush=True)
        on_model_done(rows)
    return rows


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "n/a"


def us(v):
    return f"{v:.1f}" if v else "n/a"


def fmt_row(r):
    return (f"| {r['model']} | {r['dtype']} | {r['mode']} | {r['M']} | {us(r['eager'])} | {us(r['compile'])} | "
            f"{us(r['fused'])} | {ratio(r['eager'], r['fused'])} | {ratio(r['compile'], r['fused'])} |")


def plot(rows, path, head):
    """Speedup over eager against M, one panel per model; bf16 and fp32, fwd and fwd+bwd."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        for dtype in ("bfloat16", "float32"):
            for mode, style in (("fwd", "-"), ("fwd+bwd", "--")):
                pts = [(r["M"], r["eager"] / r["fused"]) for r in rows
                       if r["model"] == model and r["dtype"] == dtype and r["mode"] == mode and r["eager"] and r["fused"]]
                if pts:
                    ax.plot(*zip(*pts), style, marker="o", ms=3, label=f"{dtype} {mode}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("M (rows)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("fused speedup over eager (x)")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(head.replace("`", ""), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_out")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--replays", type=int, default=30)
    p.add_argument("--skip-sweep", action="store_true")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    dev = torch.cuda.get_device_name()
    head = f"{dev}, torch {torch.__version__}, {datetime.date.today()}, `python bench/gpu_sweep.py`"
    warm_gpu()
    t_rows = targets(args.replays)
    write_results(args.out, head, dev, t_rows, [])
    if not args.skip_sweep:
        # written after every model, so a run cut short still leaves its results
        sweep(args.replays, args.quick, on_model_done=lambda rows: write_results(args.out, head, dev, t_rows, rows))
    with open(os.path.join(args.out, "RESULTS.md")) as f:
        print(f.read())


def write_results(out, head, dev, t_rows, s_rows):
    with open(os.path.join(out, "sweep.json"), "w") as f:
        json.dump(dict(device=dev, targets=t_rows, sweep=s_rows), f, indent=1)
    lines = [f"# GPU results\n\n{head}\n", "## Small-batch targets (bf16, forward; µs per call)\n",
             "graph: GPU time per call in CUDA-graph replay; loop: wall time per call of a Python loop.\n",
             "loop: the variants take turns over 7 rounds of 500 calls, median round (the host drifts).\n",
             "| model | M | floor | eager graph | auto graph | gemm graph | small_m graph | skinny graph | auto/floor | "
             "eager loop | auto loop | gemm loop | small_m loop | skinny loop | eager/auto graph | eager/auto loop | "
             "auto chose |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in t_rows:
        lines.append(f"| {r['model']} | {r['M']} | {r['floor_us']:.1f} | {us(r['eager_graph_us'])} | "
                     f"{us(r['auto_graph_us'])} | {us(r['gemm_graph_us'])} | {us(r['small_m_graph_us'])} | "
                     f"{us(r['skinny_graph_us'])} | {ratio(r['auto_graph_us'], r['floor_us'])} | "
                     f"{us(r['eager_loop_us'])} | {us(r['auto_loop_us'])} | {us(r['gemm_loop_us'])} | "
                     f"{us(r['small_m_loop_us'])} | {us(r['skinny_loop_us'])} | "
                     f"{ratio(r['eager_graph_us'], r['auto_graph_us'])} | "
                     f"{ratio(r['eager_loop_us'], r['auto_loop_us'])} | {r['strategy']} |")
    lines.append(f"\ncopy bandwidth (read + write): {t_rows[0]['copy_gbs']:.0f} GB/s\n")
    if s_rows:
        lines += ["## Sweep (GPU time per step, CUDA-graph replay, µs; ratio > 1: fused faster)\n",
                  "| model | dtype | mode | M | eager | compile | fused | eager/fused | compile/fused |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [fmt_row(r) for r in s_rows]
        worst = min((r["eager"] / r["fused"], r["model"], r["dtype"], r["mode"], r["M"]) for r in s_rows
                    if r["eager"] and r["fused"])
        lines.append(f"\nworst eager/fused ratio: {worst[0]:.2f}x ({worst[1]}, {worst[2]}, {worst[3]}, M={worst[4]})")
    if s_rows:
        plot(s_rows, os.path.join(out, "speedup.png"), head)
        lines.append("\n![speedup](speedup.png)")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "RESULTS.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
