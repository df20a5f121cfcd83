"""Host time of one fused_mlp::infer call by phase, from an instrumented build
(`git apply dev/diag/host_stamps.diff`, then build): the shim accumulates clock_gettime
deltas per phase in fmlp_dbg_stamp_ns, read here through ctypes.

    python dev/diag/host_stamps.py [--m 1] [--calls 20000] [--rounds 3]

Also times the same call made straight through the op (torch.ops.fused_mlp.infer's
OpOverload) and below the Autograd key, to split the Python layer from the dispatcher.
"""
import argparse
import ctypes
import time

import torch

import fused_mlp
from fused_mlp import _C
from fused_mlp._ops import _infer_entry, config_id

PHASES = {1: "unpack + check args", 2: "output alloc (empty_strided)", 3: "cuda ctx (stream, capture query)",
          4: "workspace bytes (plan)", 5: "workspace (cache take)", 6: "fmlp_forward_cuda (plan, guard, launch)",
          9: "  of which small_m entry -> launch", 8: "  of which cudaLaunchCooperativeKernel",
          7: "release handles"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--m", type=int, default=1)
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    lib = ctypes.CDLL(_C.__file__)
    st = (ctypes.c_double * 16).in_dll(lib, "fmlp_dbg_stamp_ns")
    n = ctypes.c_long.in_dll(lib, "fmlp_dbg_stamp_n")
    seq = torch.nn.Sequential(torch.nn.Linear(1024, 4096), torch.nn.GELU(approximate="tanh"),
                              torch.nn.Linear(4096, 1024)).to("cuda", torch.bfloat16)
    fused = fused_mlp.FusedMLP.from_sequential(seq)
    x = torch.randn(a.m, 1024, device="cuda", dtype=torch.bfloat16)
    params = [seq[0].weight, seq[2].weight, seq[0].bias, seq[2].bias]
    cfg = config_id([3, 0], [1, 1], 0.01, False)

    def op_below():
        with torch._C._AutoDispatchBelowAutograd():
            return _infer_entry(x, params, cfg)

    cases = {"FusedMLP": lambda: fused(x), "op (OpOverload._op)": lambda: _infer_entry(x, params, cfg),
             "op below autograd": op_below}
    with torch.no_grad():
        err = (fused(x).float() - seq(x).float()).abs().max().item()
        print(f"max |fused - eager| = {err:.3g}")
        for rnd in range(a.rounds):
            for name, fn in cases.items():
                for _ in range(500):
                    fn()
                torch.cuda.synchronize()
                for i in range(16):
                    st[i] = 0.0
                n.value = 0
                t = time.perf_counter()
                for _ in range(a.calls):
                    fn()
                torch.cuda.synchronize()
                wall = (time.perf_counter() - t) / a.calls * 1e6
                calls = max(n.value, 1)
                c_total = sum(st[i] for i in (1, 2, 3, 4, 5, 6, 7)) / calls / 1e3
                print(f"round {rnd}: {name:22s} M={a.m}: {wall:6.2f} us per call (wall); C {c_total:6.3f}, "
                      f"rest (Python + dispatcher) {wall - c_total:6.2f}; launch {st[8] / calls / 1e3:6.3f}")
                if rnd == a.rounds - 1 and name == "FusedMLP":
                    for i, pname in PHASES.items():
                        print(f"   {pname:42s} {st[i] / calls / 1e3:7.3f} us")


if __name__ == "__main__":
    main()
