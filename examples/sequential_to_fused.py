"""nn.Sequential to FusedMLP in three lines (the three marked below)."""
import torch
from torch import nn

import fused_mlp

mlp = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, 8))
x = torch.randn(1000, 32)

fast = fused_mlp.FusedMLP.from_sequential(mlp)  # 1. wrap: same Parameters, same state_dict keys
with torch.no_grad():
    y = fast(x)                                  # 2. call it like the original
print("max |fused - eager|:", (y - mlp(x)).abs().max().item())
print("fused runs:", fast.fused_runs)            # 3. see what runs as one op
assert fast.state_dict().keys() == mlp.state_dict().keys()
