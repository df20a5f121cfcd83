"""M sweep at small M on the CPU: eager vs fused (auto / packed path / small-M path).

Each fused mode runs in its own subprocess, because the core reads FMLP_CPU_SMALL_M once
per process (0 = never the small-M path, i.e. always packed; a large value = always the
small-M path; unset = the built-in threshold). Eager is timed in every subprocess and the
median over them is reported. Forward only, inference_mode, torch's default threads.
Each timing: median of --repeats calls (after warm-up), the whole measurement is repeated
--rounds times per process and the median of those medians is shown, with the spread
(max/min of the round medians) in the raw output (--verbose).

    python dev/cpu/small_m_sweep.py                       # the full table
    python dev/cpu/small_m_sweep.py --ms 1,8,64 --cases geglu768
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CASES = {
    # name: (kind, widths)
    "geglu768": ("geglu", (768, 3072, 768)),
    "mlp1024": ("mlp", (1024, 4096, 1024)),
}
MODES = {"auto": None, "packed": "0", "small": "100000"}


def child(args):
    import torch
    from torch import nn
    import fused_mlp

    torch.manual_seed(0)
    out = []
    dt = getattr(torch, args.dtype)
    for cname in args.cases.split(","):
        kind, (a, b, c) = CASES[cname]
        if kind == "geglu":
            fused = fused_mlp.FusedGatedMLP.build(a, b, c, activation="gelu_tanh", bias=False, dtype=dt)
            g, u, d = fused.gate_proj, fused.up_proj, fused.down_proj
            act = nn.GELU(approximate="tanh")

            def eager(x, g=g, u=u, d=d, act=act):
                return d(act(g(x)) * u(x))
        else:
            seq = nn.Sequential(nn.Linear(a, b), nn.GELU(approximate="tanh"), nn.Linear(b, c)).to(dt)
            fused = fused_mlp.FusedMLP.from_sequential(seq)
            eager = seq
        for m in [int(v) for v in args.ms.split(",")]:
            x = torch.randn(m, a, dtype=dt)
            with torch.inference_mode():
                ref = eager(x).float()
                err = ((fused(x).float() - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
                res = {}
                for name, fn in (("eager", eager), ("fused", fused)):
                    rounds = []
                    for _ in range(args.rounds):
                        for _ in range(3):
                            fn(x)
                        ts = []
                        for _ in range(args.repeats):
                            t = time.perf_counter()
                            fn(x)
                            ts.append(time.perf_counter() - t)
                        rounds.append(statistics.median(ts))
                    res[name] = rounds
            out.append({"case": cname, "M": m, "err": err, **res})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ms", default="1,2,4,8,16,32,64,128")
    p.add_argument("--cases", default="geglu768,mlp1024")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--modes", default="auto,packed,small")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--child", action="store_true")
    p.add_argument("--dtype", default="float32")
    args = p.parse_args()
    if args.child:
        return child(args)
    import torch
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward, us; median of "
          f"{args.rounds} rounds x {args.repeats} calls; spread = max/min of round medians")
    for dtn in args.dtypes.split(","):
        table = {}
        for mode in args.modes.split(","):
            env = dict(os.environ)
            env.pop("FMLP_CPU_SMALL_M", None)
            if MODES[mode] is not None:
                env["FMLP_CPU_SMALL_M"] = MODES[mode]
            cmd = [sys.executable, __file__, "--child", "--dtype", dtn, "--ms", args.ms, "--cases", args.cases,
                   "--repeats", str(args.repeats), "--rounds", str(args.rounds)]
            res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
            for r in res:
                t = table.setdefault((r["case"], r["M"]), {"eager": []})
                t["eager"] += r["eager"]
                t[mode] = r["fused"]
                t[mode + "_err"] = r["err"]
        modes = args.modes.split(",")
        print(f"\n{dtn}")
        print(f"{'case':10s} {'M':>4s} {'eager':>8s} " + " ".join(f"{m:>8s}" for m in modes)
              + f" {'eager/auto':>10s}  spread(eager, " + ", ".join(modes) + ")  max rel err")
        for (case, m), t in sorted(table.items()):
            med = {k: statistics.median(v) * 1e6 for k, v in t.items() if not k.endswith("_err")}
            spread = {k: max(v) / min(v) for k, v in t.items() if not k.endswith("_err")}
            ratio = med["eager"] / med["auto"] if "auto" in med else float("nan")
            print(f"{case:10s} {m:4d} {med['eager']:8.1f} " + " ".join(f"{med[k]:8.1f}" for k in modes)
                  + f" {ratio:9.2f}x  " + " ".join(f"{spread[k]:.2f}" for k in ["eager"] + modes)
                  + "  " + " ".join(f"{t[k + '_err']:.1e}" for k in modes))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
