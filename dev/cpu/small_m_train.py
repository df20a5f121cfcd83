"""Training step at small M on the CPU (forward with save + backward of out.sum()), GeGLU
768->3072->768 gelu_tanh, eager vs fused; median of --repeats steps, ms. Run once per path:
    python dev/cpu/small_m_train.py                      # default threshold
    FMLP_CPU_SMALL_M=0 python dev/cpu/small_m_train.py   # packed path always
    FMLP_CPU_SMALL_M=100000 python dev/cpu/small_m_train.py  # small-M path always
"""
import argparse
import statistics
import time

import torch
from torch import nn

import fused_mlp

p = argparse.ArgumentParser()
p.add_argument("--ms", default="1,16,128,512")
p.add_argument("--dtypes", default="float32,bfloat16")
p.add_argument("--repeats", type=int, default=11)
args = p.parse_args()
for dtn in args.dtypes.split(","):
    dt = getattr(torch, dtn)
    torch.manual_seed(0)
    f = fused_mlp.FusedGatedMLP.build(768, 3072, 768, activation="gelu_tanh", bias=False, dtype=dt)
    g, u, d = f.gate_proj, f.up_proj, f.down_proj
    act = nn.GELU(approximate="tanh")

    def eager(x):
        return d(act(g(x)) * u(x))

    for m in [int(v) for v in args.ms.split(",")]:
        x = torch.randn(m, 768, dtype=dt, requires_grad=True)
        res = {}
        for name, fn in (("eager", eager), ("fused", f)):
            def step():
                fn(x).sum().backward()
            for _ in range(3):
                step()
            ts = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                step()
                ts.append(time.perf_counter() - t)
            res[name] = (statistics.median(ts) * 1e3, max(ts) / min(ts))
        print(f"{dtn:9s} M={m:4d} eager {res['eager'][0]:8.2f} ms  fused {res['fused'][0]:8.2f} ms  "
              f"(max/min {res['eager'][1]:.2f} {res['fused'][1]:.2f})", flush=True)
