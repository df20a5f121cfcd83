"""Per-block timeline of the skinny forward in CUDA-graph replay (EXPERIMENT build only: the
FMLP_STAMPS knob of dev/cuda/skinny/timeline_v9.diff). Every block of every layer records its
SM and %globaltimer at fixed points of its path; the last replay's stamps are written at exit.
This prints, per layer, when its blocks reach each point (µs after the first block of layer 0
started: min / median / max over blocks) and where the blocks ran.

    python dev/diag/skinny_timeline.py --model geglu-768-3072 --m 64
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

NAMES = {
    0: ["entry", "wait done", "loads+mma", "partials", "fenced", "counter", "sums", "end"],  # register kernel
    1: ["entry", "w issued", "wait done", "chunk0", "chunk last", "mma", "merged", "cluster", "end",
        "remote sums", "stores"],  # tile kernel
}


def child(a):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
    import torch

    from fused_mlp.profiling import build_mlp, fused_version
    from gpu_sweep import SPECS

    spec = SPECS[a.model]
    torch.manual_seed(0)
    fused = fused_version(build_mlp(spec, "cuda", torch.bfloat16))
    x = torch.randn(a.m, spec.in_features, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        fused(x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                fused(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            fused(x)
    ts = []
    for _ in range(a.replays):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        g.replay()
        e1.record()
        e1.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e3)
    print(f"graph replay of one forward: median {statistics.median(ts):.2f} µs over {a.replays} "
          "(one forward per replay: includes the replay's own launch cost)")


def parse(path):
    layers = {}
    for line in open(path):
        f = line.split()
        if f[0] == "layer":
            layers[int(f[1])] = {"grid": (int(f[3]), int(f[4])), "smem": int(f[6]), "kind": int(f[8]), "blocks": []}
        else:
            v = list(map(int, f))
            g = v[3::2]
            layers[v[0]]["blocks"].append({"sm": v[2], "t": g})
    return layers


def report(layers):
    t0 = min(b["t"][0] for b in layers[0]["blocks"] if b["t"][0])
    prev_end = None
    for li in sorted(layers):
        L = layers[li]
        names = NAMES[L["kind"]]
        blocks = [b for b in L["blocks"] if b["t"][0]]
        sms = {}
        for b in blocks:
            sms.setdefault(b["sm"], []).append(b)
        kind = "tile" if L["kind"] else "register"
        print(f"\nlayer {li} ({kind} kernel): grid {L['grid'][0]} x {L['grid'][1]}, {L['smem'] // 1024} KB shared, "
              f"{len(blocks)} blocks on {len(sms)} SMs ({sum(len(v) > 1 for v in sms.values())} SMs with 2+)")
        for i, name in enumerate(names):
            # a stamp older than the block's entry is left from an earlier call (path not taken)
            v = [(b["t"][i] - t0) / 1e3 for b in blocks if b["t"][i] >= b["t"][0] and b["t"][i]]
            if v:
                print(f"  {name:>11}: {min(v):6.2f} {statistics.median(v):6.2f} {max(v):6.2f}   ({len(v)} blocks)")
        ends = [max(t for t in b["t"] if t >= b["t"][0]) for b in blocks]
        if prev_end is not None:
            early = sum(b["t"][0] < prev_end for b in blocks)
            print(f"  {early} blocks entered before the previous layer's last block ended "
                  f"({(prev_end - t0) / 1e3:.2f} µs)")
        prev_end = max(ends)
    print(f"\nlast stamp: {(prev_end - t0) / 1e3:.2f} µs after the first entry")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="geglu-768-3072")
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--replays", type=int, default=50)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        return child(a)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "stamps.txt")
        env = dict(os.environ, FMLP_STAMPS="1", FMLP_STAMPS_FILE=path, FUSED_MLP_STRATEGY="skinny")
        print(f"{a.model} M={a.m} bf16, skinny forced, {' '.join(k + '=' + v for k, v in os.environ.items() if k.startswith('FMLP_'))}")
        subprocess.run([sys.executable, __file__, "--child", "--model", a.model, "--m", str(a.m),
                        "--replays", str(a.replays)], env=env, check=True)
        report(parse(path))


if __name__ == "__main__":
    main()
