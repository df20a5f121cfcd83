"""fused_mlp: whole MLP stacks (Linear -> activation -> Linear ..., GeGLU/SwiGLU) as one
fused PyTorch op, with a C/CUDA core registered through the LibTorch stable C ABI."""
from . import _ops  # noqa: F401  (loads fused_mlp._C and registers the ops)
from ._activations import CODES as ACTIVATIONS
from .functional import explain, fused_mlp
from .modules import FusedGatedMLP, FusedMLP

__all__ = ["FusedMLP", "FusedGatedMLP", "fused_mlp", "fuse", "explain", "ACTIVATIONS"]
__version__ = "0.1.0"


def fuse(model, **kwargs):
    """Replaces, in place, the MLPs of `model` with fused modules; returns the model.
    See fused_mlp.convert.fuse."""
    from .convert import fuse as _fuse

    return _fuse(model, **kwargs)
