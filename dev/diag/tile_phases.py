"""Where the staged tile kernel's time goes (EXPERIMENT build only: needs the FMLP_ST_DBG0/1 and
FMLP_ST_CARVE knobs of dev/cuda/skinny/tried_v7_phase_mask_multicast.diff). GeGLU 768/3072 bf16 M=64,
skinny forced, CUDA-graph replay side by side; layer 0's or layer 1's kernel runs with phases
removed (the diff lists the bits). Numbers are wrong in
every variant but "full": timing only.

    python dev/diag/tile_phases.py [--m 64]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
import torch  # noqa: E402

from fused_mlp.profiling import build_mlp, fused_version  # noqa: E402
from gpu_sweep import SPECS, make_step, side_by_side_us, warm_gpu  # noqa: E402


def with_env(env, step):
    def run():
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            return step()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return run


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--m", type=int, default=64)
    p.add_argument("--model", default="geglu-768-3072")
    p.add_argument("--replays", type=int, default=100)
    a = p.parse_args()
    warm_gpu()
    torch.manual_seed(0)
    spec = SPECS[a.model]
    eager = build_mlp(spec, "cuda", torch.bfloat16)
    fused = fused_version(eager)
    x = torch.randn(a.m, spec.in_features, device="cuda", dtype=torch.bfloat16)
    base = {"FUSED_MLP_STRATEGY": "skinny"}
    variants = {
        "full": {},
        "L0 no epilogue (2)": {"FMLP_ST_DBG0": "2"},
        "L0 copies+waits only (3)": {"FMLP_ST_DBG0": "3"},
        "L0 no copies (4)": {"FMLP_ST_DBG0": "4"},
        "L0 no copies, no MMA (5)": {"FMLP_ST_DBG0": "5"},
        "L0 prologue only (8)": {"FMLP_ST_DBG0": "8"},
        "L1 no epilogue (2)": {"FMLP_ST_DBG1": "2"},
        "L1 copies+waits only (3)": {"FMLP_ST_DBG1": "3"},
        "L1 no copies (4)": {"FMLP_ST_DBG1": "4"},
        "L1 no copies, no MMA (5)": {"FMLP_ST_DBG1": "5"},
        "L1 prologue only (8)": {"FMLP_ST_DBG1": "8"},
        "both prologue only (8,8)": {"FMLP_ST_DBG0": "8", "FMLP_ST_DBG1": "8"},
        "full, v6 tail on both (64)": {"FMLP_ST_DBG0": "64", "FMLP_ST_DBG1": "64"},
        "full, v6 tail on L0 (64)": {"FMLP_ST_DBG0": "64"},
        "full, v6 tail on L1 (64)": {"FMLP_ST_DBG1": "64"},
        "L0 tail only, no stores (21)": {"FMLP_ST_DBG0": "21"},
        "L1 tail only, no stores (21)": {"FMLP_ST_DBG1": "21"},
        "L0 full, no stores (16)": {"FMLP_ST_DBG0": "16"},
        "full, carveout 100": {"FMLP_ST_CARVE": "100"},
        "both prologue only, carveout 100": {"FMLP_ST_DBG0": "8", "FMLP_ST_DBG1": "8", "FMLP_ST_CARVE": "100"},
    }
    steps = {"eager": make_step(eager, x, False)}
    # carveout is a function attribute that sticks: carve variants last, in their own group
    plain = {k: v for k, v in variants.items() if "FMLP_ST_CARVE" not in v}
    carve = {k: v for k, v in variants.items() if "FMLP_ST_CARVE" in v}
    steps.update({k: with_env({**base, **v}, make_step(fused, x, False)) for k, v in plain.items()})
    t = side_by_side_us(steps, a.replays)
    steps2 = {k: with_env({**base, **v}, make_step(fused, x, False)) for k, v in carve.items()}
    t.update(side_by_side_us(steps2, a.replays))
    print(f"{a.model} bf16 M={a.m}, skinny, CUDA-graph replay µs (median of rounds)")
    for k, v in t.items():
        print(f"  {k:36s} {v:7.2f}")


if __name__ == "__main__":
    main()
