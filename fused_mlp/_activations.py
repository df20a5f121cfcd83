"""Activation names, their C codes (csrc/fmlp.h: fmlp_activation), and recognition of
activation modules from torch, Hugging Face transformers and timm."""
from __future__ import annotations

from typing import Optional, Tuple

from torch import nn

# Same numbers as the C enum fmlp_activation.
CODES = {
    "identity": 0,
    "relu": 1,
    "gelu": 2,  # exact (erf)
    "gelu_tanh": 3,  # tanh approximation
    "silu": 4,
    "tanh": 5,
    "sigmoid": 6,
    "leaky_relu": 7,
}
ALIASES = {
    "none": "identity",
    "linear": "identity",
    "swish": "silu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "geglu": "gelu",
    "swiglu": "silu",
}
GATING = ("gelu", "gelu_tanh", "silu")  # GeGLU and SwiGLU

# Activation classes recognised by qualified class name (module.__class__.__module__ + name).
# Each maps to a canonical name; modules whose behaviour depends on attributes are
# handled in from_module.
_BY_CLASS_NAME = {
    # transformers.activations
    "transformers.activations.NewGELUActivation": "gelu_tanh",
    "transformers.activations.FastGELUActivation": "gelu_tanh",
    "transformers.activations.PytorchGELUTanh": "gelu_tanh",
    "transformers.activations.GELUTanh": "gelu_tanh",
    "transformers.activations.SiLUActivation": "silu",
    "transformers.activations.LinearActivation": "identity",
    # timm.layers.activations
    "timm.layers.activations.GELUTanh": "gelu_tanh",
    "timm.layers.activations.Swish": "silu",
    "timm.layers.activations.Sigmoid": "sigmoid",
    "timm.layers.activations.Tanh": "tanh",
}


def canonical(name: str) -> str:
    """Canonical activation name, or ValueError naming the supported ones."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string such as 'relu', got {type(name).__name__}")
    key = name.lower()
    key = ALIASES.get(key, key)
    if key not in CODES:
        raise ValueError(
            f"unsupported activation {name!r}; supported: {', '.join(CODES)} "
            f"(aliases: {', '.join(ALIASES)})"
        )
    return key


def code(name: str) -> int:
    return CODES[canonical(name)]


def from_module(m: nn.Module) -> Optional[Tuple[str, float]]:
    """(canonical name, negative_slope) for an activation module we can fuse, else None.

    Identity and Dropout(p=0) count as 'identity' (they change nothing)."""
    def exactly(c):  # the class, or a subclass that keeps its forward
        return isinstance(m, c) and type(m).forward is c.forward

    if exactly(nn.Identity):
        return "identity", 0.0
    if exactly(nn.Dropout) and m.p == 0:
        return "identity", 0.0
    if exactly(nn.ReLU):
        return "relu", 0.0
    if exactly(nn.GELU):
        return ("gelu_tanh" if m.approximate == "tanh" else "gelu"), 0.0
    if exactly(nn.SiLU):
        return "silu", 0.0
    if exactly(nn.Tanh):
        return "tanh", 0.0
    if exactly(nn.Sigmoid):
        return "sigmoid", 0.0
    if exactly(nn.LeakyReLU):
        return "leaky_relu", float(m.negative_slope)
    cls = type(m)
    qual = f"{cls.__module__}.{cls.__name__}"
    if qual in _BY_CLASS_NAME:
        return _BY_CLASS_NAME[qual], 0.0
    if qual == "transformers.activations.GELUActivation":
        # exact GELU unless it was built with the python fallback formula (same maths)
        return "gelu", 0.0
    if qual == "timm.layers.activations.GELU":
        return ("gelu_tanh" if getattr(m, "approximate", "none") == "tanh" else "gelu"), 0.0
    return None
