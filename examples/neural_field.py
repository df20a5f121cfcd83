"""Train a small neural-field style network (a narrow, deep MLP from 2-D coordinates to
RGB) with and without fusion: same loss curve, time per step printed.

    python examples/neural_field.py            # 64 wide x 5 layers, 65,536 points a step
    python examples/neural_field.py --small    # a few steps on a few points
"""
import argparse
import copy
import time

import torch
from torch import nn

import fused_mlp


def target(xy):
    """The 'image' to fit: smooth colour waves over [-1, 1]^2."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    return torch.cat([torch.sin(3 * x) * torch.cos(2 * y), torch.sin(5 * x * y), torch.cos(4 * (x + y))], 1)


def encode(xy, freqs=8):
    """Fourier features, as neural fields use."""
    k = (2.0 ** torch.arange(freqs, device=xy.device)) * torch.pi
    ang = xy[:, :, None] * k
    return torch.cat([ang.sin().flatten(1), ang.cos().flatten(1)], 1)  # (N, 2 * 2 * freqs)


def train(model, steps, points, device, seed=0):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator(device="cpu").manual_seed(seed)
    losses, t_total = [], 0.0
    for _ in range(steps):
        xy = (torch.rand(points, 2, generator=g) * 2 - 1).to(device)
        feats, want = encode(xy), target(xy)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = nn.functional.mse_loss(model(feats), want)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        t_total += time.perf_counter() - t
        losses.append(loss.item())
    return losses, t_total / steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--small", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    steps, points = (5, 512) if a.small else (200, 65536)
    torch.manual_seed(0)
    widths = [32, 64, 64, 64, 64, 3]
    layers = []
    for i in range(len(widths) - 1):
        layers += [nn.Linear(widths[i], widths[i + 1])] + ([nn.ReLU()] if i < len(widths) - 2 else [])
    eager = nn.Sequential(*layers).to(a.device)
    fused = fused_mlp.FusedMLP.from_sequential(copy.deepcopy(eager))
    loss_e, t_e = train(eager, steps, points, a.device)
    loss_f, t_f = train(fused, steps, points, a.device)
    for i in range(0, steps, max(1, steps // 5)):
        print(f"step {i:4d}: loss eager {loss_e[i]:.5f}  fused {loss_f[i]:.5f}")
    drift = max(abs(x - y) / max(abs(x), 1e-12) for x, y in zip(loss_e, loss_f))
    print(f"largest relative loss difference over {steps} steps: {drift:.1e}")
    assert drift < 1e-3, drift
    print(f"time per step ({a.device}, {points} points): eager {t_e * 1e3:.2f} ms, fused {t_f * 1e3:.2f} ms, "
          f"speedup {t_e / t_f:.2f}x")


if __name__ == "__main__":
    main()
