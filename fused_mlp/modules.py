"""Drop-in modules: FusedMLP (a stack of nn.Linear + activations) and FusedGatedMLP
(gate/up/down blocks). Both keep the ordinary nn.Linear submodules under their original
names, so parameters, state_dict keys, initialisation, optimizers and wrappers see what
they saw before; only forward changes."""
from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional, Sequence, Union

import torch
from torch import nn

from . import _activations
from .functional import run

MAX_LAYERS = 32  # FMLP_MAX_LAYERS in csrc/fmlp.h: longer runs are split


_MISSING = object()


def _op_params(linears):
    """(weights, biases, has_bias) in op form, read on every call: parameters may be
    replaced or a bias removed after the plan was made. Registered parameters (or None) are
    read from lin._parameters: lin.weight goes through nn.Module.__getattr__, ~0.4 us per
    read, a fifth of a small call; anything else (a parametrization's property) via getattr."""
    weights, biases, has_bias = [], [], []
    for lin in linears:
        p = lin._parameters
        w = p.get("weight", _MISSING)
        b = p.get("bias", _MISSING)
        if w is _MISSING or b is _MISSING:
            w, b = lin.weight, lin.bias
        weights.append(w)
        if b is None:
            has_bias.append(0)
        else:
            biases.append(b)
            has_bias.append(1)
    return weights, biases, has_bias


class _Run:
    """A maximal run of children executed as one fused op: Linear (act)? Linear (act)? ..."""

    __slots__ = ("linears", "activations", "negative_slope", "first", "last")

    def __init__(self, first):
        self.linears: List[nn.Linear] = []
        self.activations: List[int] = []
        self.negative_slope = 0.01
        self.first = first
        self.last = first

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        weights, biases, has_bias = _op_params(self.linears)
        return run(x, weights, biases, has_bias, self.activations, self.negative_slope, False)


def _plain_linear(m: nn.Module) -> bool:
    """An nn.Linear whose forward is nn.Linear's own (not LoRA, not quantized), with
    no hooks that running it fused would skip."""
    return (isinstance(m, nn.Linear) and type(m).forward is nn.Linear.forward
            and isinstance(getattr(m, "weight", None), torch.Tensor) and not _has_hooks(m))


def _has_hooks(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _plan(children: Sequence[nn.Module]):
    """Splits children into fused runs and modules run as they are. A Linear starts or
    continues a run; after it, at most one activation (Identity and Dropout(p=0) are
    transparent) joins the run; anything else ends it, and so does the op's layer limit."""
    steps: list = []
    cur: Optional[_Run] = None
    act_seen = False
    for i, m in enumerate(children):
        if _plain_linear(m):
            if cur is None or len(cur.linears) == MAX_LAYERS:
                cur = _Run(i)
                steps.append(cur)
            cur.linears.append(m)
            cur.activations.append(0)
            cur.last = i
            act_seen = False
            continue
        act = _activations.from_module(m) if cur is not None and not _has_hooks(m) else None
        if act is not None:
            name, slope = act
            if name == "identity":
                cur.last = i
                continue
            slope_clash = name == "leaky_relu" and "leaky_relu" in _names(cur) and slope != cur.negative_slope
            if not act_seen and not slope_clash:
                cur.activations[-1] = _activations.CODES[name]
                if name == "leaky_relu":
                    cur.negative_slope = slope
                cur.last = i
                act_seen = True
                continue
        cur = None
        act_seen = False
        steps.append(m)
    return steps


def _names(run: _Run):
    inv = {v: k for k, v in _activations.CODES.items()}
    return [inv[c] for c in run.activations]


class FusedMLP(nn.Sequential):
    """An nn.Sequential of nn.Linear layers and activations whose Linear runs execute as
    one fused op each (torch.ops.fused_mlp.forward, or ::infer when no gradient is needed).

    Children keep their names, so ``FusedMLP.from_sequential(seq)`` has the very same
    parameters and state_dict keys as ``seq``. Children that cannot be fused (a LayerNorm,
    Dropout with p > 0, ...) run as they are between fused runs.

    Example::

        mlp = FusedMLP(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16))
        mlp = FusedMLP.from_sequential(existing_sequential)
        mlp = FusedMLP.build([64, 256, 256, 3], activation="relu")
    """

    def __init__(self, *args):
        super().__init__(*args)
        self._refresh_plan()

    # the plan is cached and rebuilt when the children change
    def _refresh_plan(self):
        children = tuple(self._modules.values())
        object.__setattr__(self, "_plan_key", children)
        object.__setattr__(self, "_plan_steps", _plan(children))

    def _steps(self):
        # rebuilt only when the children change (append, insert, assignment); the tuple
        # comparison tests identity first (modules define no __eq__)
        if tuple(self._modules.values()) != self._plan_key:
            self._refresh_plan()
        return self._plan_steps

    @classmethod
    def from_sequential(cls, seq: nn.Sequential) -> "FusedMLP":
        """A FusedMLP over the same child modules (same Parameter objects, same keys)."""
        if not isinstance(seq, nn.Sequential):
            raise TypeError(f"seq must be an nn.Sequential, got {type(seq).__name__}")
        fused = cls(OrderedDict(seq.named_children()))
        fused.training = seq.training  # the container's mode only; children keep theirs
        return fused

    @classmethod
    def build(cls, widths: Sequence[int], activation: str = "relu", bias: bool = True,
              output_activation: str = "identity", negative_slope: float = 0.01,
              device=None, dtype=None) -> "FusedMLP":
        """Linear(widths[0], widths[1]), act, ..., Linear(widths[-2], widths[-1])[, output act]."""
        if len(widths) < 2:
            raise ValueError(f"widths must list at least in and out features, got {list(widths)}")
        layers: list = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=bias, device=device, dtype=dtype))
            name = activation if i < len(widths) - 2 else output_activation
            mod = _activation_module(_activations.canonical(name), negative_slope)
            if mod is not None:
                layers.append(mod)
        return cls(*layers)

    @property
    def fused_runs(self) -> List[List[str]]:
        """Names of the children each fused run covers (for inspection)."""
        names = list(self._modules.keys())
        return [names[s.first:s.last + 1] for s in self._steps() if isinstance(s, _Run)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self._steps():  # a _Run or a child module: both are called with x
            x = step(x)
        return x


def _activation_module(name: str, negative_slope: float) -> Optional[nn.Module]:
    return {
        "identity": None,
        "relu": nn.ReLU(),
        "gelu": nn.GELU(),
        "gelu_tanh": nn.GELU(approximate="tanh"),
        "silu": nn.SiLU(),
        "tanh": nn.Tanh(),
        "sigmoid": nn.Sigmoid(),
        "leaky_relu": nn.LeakyReLU(negative_slope),
    }[name]


class FusedGatedMLP(FusedMLP):
    """A gated MLP block, out = down(act(gate(x)) * up(x)) (GeGLU, SwiGLU), as one fused op.

    The three nn.Linear children and the activation keep the names given (default: the
    Hugging Face ones, gate_proj / up_proj / down_proj / act_fn), so state_dict keys of
    the block it replaces do not change.
    """

    def __init__(self, gate: nn.Linear, up: nn.Linear, down: nn.Linear,
                 activation: Union[str, nn.Module] = "silu",
                 names: Sequence[str] = ("gate_proj", "up_proj", "down_proj", "act_fn")):
        if isinstance(activation, str):
            act_name, slope = _activations.canonical(activation), 0.01
            act_mod = _activation_module(act_name, slope) or nn.Identity()
        else:
            found = _activations.from_module(activation)
            if found is None:
                raise ValueError(f"activation {type(activation).__name__} cannot be fused; "
                                 f"supported: {', '.join(_activations.CODES)}")
            (act_name, slope), act_mod = found, activation
        for label, lin in (("gate", gate), ("up", up), ("down", down)):
            if not isinstance(lin, nn.Linear):
                raise TypeError(f"{label} must be an nn.Linear, got {type(lin).__name__}")
        if gate.weight.shape != up.weight.shape:
            raise ValueError(f"gate and up must have the same shape, got {tuple(gate.weight.shape)} "
                             f"and {tuple(up.weight.shape)}")
        if down.in_features != gate.out_features:
            raise ValueError(f"down must take {gate.out_features} input features (gate's outputs), "
                             f"got {down.in_features}")
        g, u, d, a = names
        super().__init__(OrderedDict([(g, gate), (u, up), (d, down), (a, act_mod)]))
        object.__setattr__(self, "_gate_names", (g, u, d))
        object.__setattr__(self, "_gate_act", _activations.CODES[act_name])
        object.__setattr__(self, "_gate_acts", [self._gate_act, 0])  # op form, built once
        object.__setattr__(self, "_gate_slope", float(slope))

    def _refresh_plan(self):  # the gated block has one fixed plan, run by forward
        object.__setattr__(self, "_plan_key", tuple(self._modules.values()))
        object.__setattr__(self, "_plan_steps", [])

    @property
    def fused_runs(self) -> List[List[str]]:
        return [list(self._modules.keys())]

    @classmethod
    def build(cls, in_features: int, hidden_features: int, out_features: Optional[int] = None,
              activation: str = "silu", bias: bool = False, device=None, dtype=None) -> "FusedGatedMLP":
        out_features = in_features if out_features is None else out_features
        kw = dict(bias=bias, device=device, dtype=dtype)
        return cls(nn.Linear(in_features, hidden_features, **kw), nn.Linear(in_features, hidden_features, **kw),
                   nn.Linear(hidden_features, out_features, **kw), activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mods = self._modules
        weights, biases, has_bias = _op_params([mods[n] for n in self._gate_names])
        return run(x, weights, biases, has_bias, self._gate_acts, self._gate_slope, True)
