"""Swap the MLPs of a Llama-style transformers model (built from a config, random
weights, nothing downloaded) with fused_mlp.fuse(); outputs match; per-step time
printed for eager and fused.

    python examples/llama_fuse.py            # a ~100M-parameter config (GPU recommended)
    python examples/llama_fuse.py --small    # a tiny config, seconds on a CPU
"""
import argparse
import copy
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import fused_mlp


def step_time_ms(model, ids, repeats):
    with torch.no_grad():
        for _ in range(2):
            model(ids)
        times = []
        for _ in range(repeats):
            if ids.is_cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
            model(ids)
            if ids.is_cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    torch.manual_seed(0)
    if a.small:
        cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
        batch, seq, repeats = 2, 16, 3
    else:
        cfg = LlamaConfig(vocab_size=32000, hidden_size=768, intermediate_size=3072, num_hidden_layers=8,
                          num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=512)
        batch, seq, repeats = 1, 1, 20  # one decode-sized step: where fusion pays most
    dtype = torch.bfloat16 if a.device == "cuda" else torch.float32
    eager = LlamaForCausalLM(cfg).to(a.device, dtype).eval()
    fused, report = fused_mlp.convert.fuse_with_report(copy.deepcopy(eager))
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device=a.device)
    with torch.no_grad():
        want, got = eager(ids).logits.float(), fused(ids).logits.float()
    err = ((got - want).norm() / want.norm()).item()
    print(report)
    print(f"logits relative difference: {err:.2e}")
    assert err < (2e-2 if dtype == torch.bfloat16 else 1e-4)
    te, tf = step_time_ms(eager, ids, repeats), step_time_ms(fused, ids, repeats)
    print(f"per step ({a.device}, {str(dtype).replace('torch.', '')}, batch {batch} x seq {seq}): "
          f"eager {te:.2f} ms, fused {tf:.2f} ms, speedup {te / tf:.2f}x")


if __name__ == "__main__":
    main()
