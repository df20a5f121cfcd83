"""The private torch ops and what Python adds to them.

Loading fused_mlp._C registers (through the LibTorch stable C ABI, csrc/shim):
  torch.ops.fused_mlp.forward(x, weights, biases, has_bias, activations,
                              negative_slope, gated, save) -> (out, saved)
  torch.ops.fused_mlp.backward(grad_out, x, saved, weights, biases, has_bias, activations,
                               negative_slope, gated, input_grad, param_grads)
                               -> (grad_x, grad_weights, grad_biases)
  torch.ops.fused_mlp.infer(x, weights + biases, config_id(...)) -> out
                               (forward with save=False in a compact schema: ~1.4 us less
                               of torch's Python binding per call; no autograd, used for
                               calls that need no gradient outside torch.compile)
This module adds their fake (meta) kernels for torch.compile and the autograd formula.
x is 2-D (M, in); all tensors share x's dtype and device, are contiguous and 16-byte
aligned; `biases` holds only the biases that exist (has_bias marks which weight has one).
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (registers torch.ops.fused_mlp.*)

forward_op = torch.ops.fused_mlp.forward.default
backward_op = torch.ops.fused_mlp.backward.default
infer_op = torch.ops.fused_mlp.infer.default


# The op's registered autograd kernel (register_autograd below) is Python, so every call that
# reaches the Autograd key enters Python, even under no_grad, only to redispatch below
# autograd: ~5 us of a ~9 us call at a tiny size (CPU, measured). Callers that record no graph
# through the op call forward_no_autograd instead.
_below_autograd = torch._C._AutoDispatchBelowAutograd
# OpOverload's C++ entry point: calling it skips OpOverload.__call__'s Python frame
_forward_entry = getattr(forward_op, "_op", forward_op)
_infer_entry = getattr(infer_op, "_op", infer_op)
_config_ids: dict = {}


def config_id(activations, has_bias, negative_slope, gated) -> int:
    """The id fused_mlp::infer takes for this configuration (csrc/shim/configs.h), memoised:
    one dict lookup per call."""
    key = (tuple(activations), tuple(has_bias), negative_slope, gated)
    cid = _config_ids.get(key)
    if cid is None:
        cid = _config_ids[key] = _C.config_id(*key)
    return cid
_is_compiling = torch.compiler.is_compiling


def forward_no_autograd(x, weights, biases, has_bias, activations, negative_slope, gated, save):
    """forward_op dispatched below the Autograd key: for calls that need no gradient through
    the op itself (no gradient wanted, or inside FusedMLPFunction, whose node records it).
    Every other dispatch key (modes, tensor subclasses, functionalization) still applies.
    Under torch.compile the op is called as it is, so the trace holds the op."""
    if _is_compiling():
        return forward_op(x, weights, biases, has_bias, activations, negative_slope, gated, save)
    with _below_autograd():
        return _forward_entry(x, weights, biases, has_bias, activations, negative_slope, gated, save)


def saved_widths(weights, activations, gated):
    """Widths of the tensors the forward saves (mirror of fmlp_saved_* in csrc/fmlp_desc.c):
    gated: z_gate, z_up; then z_i of every later layer that is not the last, or whose
    activation is not identity. Each is (M, width)."""
    n_layers = len(activations)
    widths = []
    for i in range(n_layers):
        w = weights[i + gated if i else 0].shape[0]
        if i == 0 and gated:
            widths += [w, w]
        elif i < n_layers - 1 or activations[i] != 0:
            widths.append(w)
    return widths


@torch.library.register_fake("fused_mlp::forward")
def _forward_fake(x, weights, biases, has_bias, activations, negative_slope, gated, save):
    m = x.shape[0]
    out = x.new_empty((m, weights[-1].shape[0]))
    saved = [x.new_empty((m, w)) for w in saved_widths(weights, activations, gated)] if save else []
    return out, saved


@torch.library.register_fake("fused_mlp::infer")
def _infer_fake(x, params, config):
    _, has_bias, _, _ = _C.config_info(config)
    return x.new_empty((x.shape[0], params[len(has_bias) - 1].shape[0]))


@torch.library.register_fake("fused_mlp::backward")
def _backward_fake(grad_out, x, saved, weights, biases, has_bias, activations, negative_slope, gated,
                   input_grad, param_grads):
    gx = torch.empty_like(x) if input_grad else x.new_empty((0,))
    gw = [torch.empty_like(w) for w in weights] if param_grads else []
    gb = [torch.empty_like(b) for b in biases] if param_grads else []
    return gx, gw, gb


def _setup_context(ctx, inputs, output):
    x, weights, biases, has_bias, activations, negative_slope, gated, save = inputs
    _, saved = output
    ctx.save_for_backward(x, *saved, *weights, *biases)
    ctx.meta = (has_bias, activations, negative_slope, gated)
    ctx.saved_on_forward = save


def _flat_any(flags):
    return any(any(f) if isinstance(f, (list, tuple)) else bool(f) for f in flags)


def _contiguous(t):
    return t if t.is_contiguous() else t.contiguous()


def run_backward(grad_out, x, saved, weights, biases, meta, input_grad, param_grads):
    """The backward op for what a forward saved; None where no gradient is wanted."""
    has_bias, activations, negative_slope, gated = meta
    if grad_out is None:
        grad_out = torch.zeros((x.shape[0], weights[-1].shape[0]), dtype=x.dtype, device=x.device)
    gx, gw, gb = backward_op(_contiguous(grad_out), x, saved, weights, biases, has_bias, activations,
                             negative_slope, gated, input_grad, param_grads)
    return (gx if input_grad else None,
            list(gw) if param_grads else [None] * len(weights),
            list(gb) if param_grads else [None] * len(biases))


def _unpack(ctx):
    """(x, saved, weights, biases) from ctx.saved_tensors = (x, *saved, *weights, *biases);
    has_bias (ctx.meta[0]) has one entry per weight and a 1 per bias."""
    has_bias = ctx.meta[0]
    t = ctx.saved_tensors
    nw, nb = len(has_bias), sum(has_bias)
    ns = len(t) - 1 - nw - nb
    return t[0], list(t[1:1 + ns]), list(t[1 + ns:1 + ns + nw]), list(t[1 + ns + nw:])


def _backward(ctx, grad_out, grad_saved):
    if not ctx.saved_on_forward:
        raise RuntimeError(
            "fused_mlp: backward needs the tensors the forward saves, but the forward ran with "
            "save=False; call fused_mlp.fused_mlp / FusedMLP (they pass save=True when a gradient "
            "is needed) or pass save=True to torch.ops.fused_mlp.forward"
        )
    x, saved, weights, biases = _unpack(ctx)
    need = ctx.needs_input_grad
    gx, gw, gb = run_backward(grad_out, x, saved, weights, biases, ctx.meta, bool(need[0]), _flat_any(need[1:3]))
    return gx, gw, gb, None, None, None, None, None


class FusedMLPFunction(torch.autograd.Function):
    """What the library's own calls use when a gradient is needed. Same maths as the op's
    registered autograd (run_backward), but torch.autograd.Function's C++ node costs
    ~15 µs per call where the torch.library Python autograd wrapper costs ~55 µs
    (measured on the CPU, 2-layer MLP, 1 row): at small batch that is the whole call.
    apply(x, meta, *weights, *biases), meta = (has_bias, activations, negative_slope, gated):
    one argument and one ctx attribute, not five and two (~0.6 µs per call, measured)."""

    @staticmethod
    def forward(ctx, x, meta, *params):
        has_bias, activations, negative_slope, gated = meta
        n_weights = len(has_bias)
        weights, biases = list(params[:n_weights]), list(params[n_weights:])
        out, saved = forward_no_autograd(x, weights, biases, has_bias, activations, negative_slope, gated, True)
        ctx.save_for_backward(x, *saved, *params)
        ctx.meta = meta
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, saved, weights, biases = _unpack(ctx)
        need = ctx.needs_input_grad
        gx, gw, gb = run_backward(grad_out, x, saved, weights, biases, ctx.meta, need[0], any(need[2:]))
        return (gx, None, *gw, *gb)


torch.library.register_autograd("fused_mlp::forward", _backward, setup_context=_setup_context)


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(
        "fused_mlp: double backward (a gradient of fused_mlp's gradient, create_graph=True) "
        "is not supported; use the unfused nn.Linear stack for higher-order gradients"
    )


def _setup_backward_context(ctx, inputs, output):
    pass


torch.library.register_autograd("fused_mlp::backward", _no_double_backward,
                                setup_context=_setup_backward_context)
