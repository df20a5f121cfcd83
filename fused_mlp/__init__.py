"""fused_mlp: whole MLP stacks (Linear -> activation -> Linear ..., GeGLU/SwiGLU) as one
fused PyTorch op, with a C/CUDA core registered through the LibTorch stable C ABI.

Layers: _C (the C extension: torch.ops.fused_mlp.forward/backward/infer) -> _ops (fake kernels,
autograd) -> functional (fused_mlp, explain) -> modules (FusedMLP, FusedGatedMLP) ->
convert (fuse); profiling / profile (python -m fused_mlp.profile)."""
from . import _ops  # noqa: F401  (loads fused_mlp._C and registers the ops)
from . import convert
from ._activations import CODES as ACTIVATIONS
from .convert import fuse
from .functional import explain, fused_mlp
from .modules import FusedGatedMLP, FusedMLP

__all__ = ["FusedMLP", "FusedGatedMLP", "fused_mlp", "fuse", "explain", "convert", "ACTIVATIONS"]
__version__ = "0.1.0"
