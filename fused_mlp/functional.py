"""fused_mlp.fused_mlp: the public functional form of the fused op."""
from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import torch

from . import _activations
from ._ops import FusedMLPFunction, _infer_entry, config_id, forward_op

_any_autocast = torch._C._is_any_autocast_enabled  # one C call; the per-device query costs ~0.4 us
_is_compiling = torch.compiler.is_compiling

ActivationSpec = Union[str, Sequence[str]]


def _as_2d_input(x: torch.Tensor) -> torch.Tensor:
    """(..., in) -> contiguous, 16-byte aligned (M, in). Copies only when it must (like
    nn.Linear, any strides are accepted)."""
    x2 = x.reshape(-1, x.shape[-1])
    if not x2.is_contiguous():
        return x2.contiguous()
    if not torch.compiler.is_compiling() and x2.data_ptr() % 16 != 0:
        return x2.clone()
    return x2


def _autocast(x, weights, biases):
    """Under autocast, cast like nn.Linear does: everything to the autocast dtype."""
    dt = torch.get_autocast_dtype(x.device.type)
    cast = lambda t: t.to(dt) if t.is_floating_point() and t.dtype != dt else t  # noqa: E731
    return cast(x), [cast(w) for w in weights], [cast(b) for b in biases]


def _needs_grad(x, weights, biases) -> bool:
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad:
        return True
    for t in weights:
        if t.requires_grad:
            return True
    for t in biases:
        if t.requires_grad:
            return True
    return False


def run(x: torch.Tensor, weights: list, biases: list, has_bias: list, activations: list,
        negative_slope: float, gated: bool) -> torch.Tensor:
    """Fast path shared by the modules: arguments already in op form (codes, flags).
    Kept lean: at small batch the host time per call is what the user waits for."""
    if _any_autocast() and torch.is_autocast_enabled(x.device.type):
        x, weights, biases = _autocast(x, weights, biases)
    compiling = _is_compiling()
    if x.dim() == 2 and x.is_contiguous() and (compiling or x.data_ptr() % 16 == 0):
        x2, lead = x, None
    else:
        x2, lead = _as_2d_input(x), x.shape[:-1]
    if torch.is_grad_enabled() and _needs_grad(x, weights, biases):
        out = FusedMLPFunction.apply(x2, (has_bias, activations, negative_slope, gated), *weights, *biases)
    elif compiling:
        out, _ = forward_op(x2, weights, biases, has_bias, activations, negative_slope, gated, False)
    else:  # the compact inference op: the least host time. It has no autograd kernel, so
        # torch's C++ autograd fallback just passes it on (no tensor needs a gradient here);
        # cheaper than entering _below_autograd from Python (0.44 us, CPU)
        out = _infer_entry(x2, weights + biases, config_id(activations, has_bias, negative_slope, gated))
    return out if lead is None else out.reshape(*lead, out.shape[-1])


def _device_str(d: torch.device) -> str:
    return f"{d.type}:{d.index}" if d.type == "cuda" and d.index is not None else d.type


def _device_error(t: torch.Tensor, x: torch.Tensor, name: str) -> RuntimeError:
    # the C shim checks CPU/CUDA mixes too; the Python check also catches meta and other
    # devices, which the dispatcher would route elsewhere before the shim sees them
    return RuntimeError(f"fused_mlp: {name} must be on x's device ({_device_str(x.device)}), "
                        f"got {_device_str(t.device)}")


def layer_activations(activation: ActivationSpec, n_layers: int,
                      output_activation: str = "identity") -> list:
    """Activation codes, one per layer. A single name applies after every layer but the
    last, which gets output_activation; a sequence gives each layer its own."""
    if isinstance(activation, str):
        if isinstance(output_activation, str):
            return list(_named_codes(activation, n_layers, output_activation))
        return [_activations.code(activation)] * (n_layers - 1) + [_activations.code(output_activation)]
    names = list(activation)
    if len(names) != n_layers:
        raise ValueError(f"activation must name one activation per layer ({n_layers}), got {len(names)}")
    return [_activations.code(a) for a in names]


def fused_mlp(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Optional[Sequence[Optional[torch.Tensor]]] = None,
    activation: ActivationSpec = "relu",
    *,
    gated: bool = False,
    negative_slope: float = 0.01,
    output_activation: str = "identity",
) -> torch.Tensor:
    """Runs a whole MLP as one fused op.

    Plain (gated=False), L = len(weights) layers:
        h = x; for each layer i: h = act_i(h @ weights[i].T + biases[i])
    Gated (gated=True; GeGLU with 'gelu'/'gelu_tanh', SwiGLU with 'silu'),
    weights = [gate, up, down, ...], L = len(weights) - 1 layers:
        h = act_0(x @ gate.T + b_gate) * (x @ up.T + b_up); then the remaining layers.

    Args:
        x: (..., in_features), float32 / bfloat16 / float16, CPU or CUDA; any strides.
        weights: the nn.Linear weights, weights[k] of shape (out_k, in_k), contiguous.
        biases: None (no biases) or one entry per weight: a (out_k,) tensor or None.
        activation: one name, applied after every layer but the last (for gated: the
            gate's activation), or a sequence with one name per layer. Names: identity,
            relu, gelu, gelu_tanh, silu, tanh, sigmoid, leaky_relu (+ aliases).
        negative_slope: slope of leaky_relu.
        output_activation: activation after the last layer when `activation` is one name.

    Returns:
        (..., out_features) in x's dtype (or the autocast dtype under autocast).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if isinstance(weights, torch.Tensor) or not isinstance(weights, (list, tuple)):
        raise TypeError("weights must be a list of weight tensors (one per layer, shape (out, in))")
    weights = list(weights)
    if not weights:
        raise ValueError("weights must hold at least one weight tensor, got an empty list")
    xdev = x.device  # once: each .device builds a torch.device (names are formatted only on error too)
    for k, w in enumerate(weights):
        if not isinstance(w, torch.Tensor):
            raise TypeError(f"weights[{k}] must be a torch.Tensor, got {type(w).__name__}")
        if w.device != xdev:
            raise _device_error(w, x, f"weights[{k}]")
    if gated and len(weights) < 3:
        raise ValueError(f"gated=True needs weights [gate, up, down, ...] (at least 3), got {len(weights)}")
    if x.dim() < 1 or x.shape[-1] != (weights[0].shape[-1] if weights[0].dim() else -1):
        raise ValueError(
            f"x must have shape (..., {weights[0].shape[-1] if weights[0].dim() == 2 else 'in_features'}) "
            f"to match weights[0] of shape {tuple(weights[0].shape)}, got {tuple(x.shape)}"
        )
    if biases is None:
        biases = [None] * len(weights)
    biases = list(biases)
    if len(biases) != len(weights):
        raise ValueError(f"biases must have one entry (a tensor or None) per weight ({len(weights)}), got {len(biases)}")
    has_bias, present = [], []
    for k, b in enumerate(biases):
        if b is None:
            has_bias.append(0)
            continue
        if not isinstance(b, torch.Tensor):
            raise TypeError(f"biases[{k}] must be a torch.Tensor or None, got {type(b).__name__}")
        if b.device != xdev:
            raise _device_error(b, x, f"biases[{k}]")
        has_bias.append(1)
        present.append(b)
    n_layers = len(weights) - int(gated)
    acts = layer_activations(activation, n_layers, output_activation)
    return run(x, weights, present, has_bias, acts, float(negative_slope), bool(gated))


@functools.lru_cache(maxsize=256)
def _named_codes(activation: str, n_layers: int, output_activation: str) -> tuple:
    # cached: the name lookups cost ~0.4 us per call, and the same few specs recur
    return (_activations.code(activation),) * (n_layers - 1) + (_activations.code(output_activation),)


_DTYPE_CODES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


def explain(x: torch.Tensor, weights: Sequence[torch.Tensor], activation: ActivationSpec = "relu", *,
            gated: bool = False, output_activation: str = "identity", backward: bool = False) -> dict:
    """Which strategy the dispatcher picks for this call, and why (no computation runs).

    Returns {"device", "strategy", "why"}. On the CPU there is one strategy (the fused C
    core); on CUDA the choice depends on rows, widths, dtype and direction."""
    from . import _C

    rows = x.numel() // x.shape[-1] if x.dim() else 0
    if x.device.type != "cuda":
        return {"device": str(x.device), "strategy": "cpu",
                "why": "CPU: row blocks through all layers with intermediates in cache"}
    widths = [weights[0].shape[1]] + [w.shape[0] for w in (weights[1:] if gated else weights)]
    acts = layer_activations(activation, len(widths) - 1, output_activation)
    # the forward saves for backward exactly when a gradient is needed (functional.run)
    save = torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights))
    name, why = _C.cuda_plan(x.device.index or 0, _DTYPE_CODES[x.dtype], rows, widths, acts, gated, save, backward)
    return {"device": str(x.device), "strategy": name, "why": why}
