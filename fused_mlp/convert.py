"""fused_mlp.fuse: swap the MLPs inside an existing model for fused modules, in place.

    model = fused_mlp.fuse(model)                  # returns the model
    print(model.fused_mlp_report)                  # what was fused, what was skipped and why
    model, report = fused_mlp.convert.fuse_with_report(model)

What is replaced (each by a :class:`~fused_mlp.FusedMLP` or :class:`~fused_mlp.FusedGatedMLP`
holding the very same child modules under the very same names, so ``state_dict()`` keys and
values, Parameter objects, optimizers and ``load_state_dict`` are unaffected):

* ``"sequential"``: an ``nn.Sequential`` (whose ``forward`` is not overridden) in which at
  least two ``nn.Linear`` layers are joined into one fused run (Linear, at most one supported
  activation, Linear, ...; ``Identity`` and ``Dropout(p=0)`` are transparent). Other children
  (a LayerNorm, a Dropout with p > 0, ...) stay and run as they are between fused runs.
* ``"mlp"``: any module whose ``forward`` is a plain chain of calls to its own children,
  ``return self.c(self.b(self.a(x)))`` (temporaries allowed), that covers every child once
  and holds such a run: timm ``Mlp`` (fc1, act, drop1, norm, fc2, drop2), transformers
  GPT-NeoX / GPT-J / GPT-Neo / CodeGen / GPT-BigCode / CLIP / SigLIP MLPs, your own MLPs.
  The replacement is a FusedMLP whose children are the original ones in call order.
* ``"gated_mlp"``: any module whose ``forward`` computes
  ``self.down(self.act(self.gate(x)) * self.up(x))`` (the Hugging Face gate_proj / up_proj /
  down_proj / act_fn blocks of Llama, Mistral, Qwen, Gemma, ...; timm ``SwiGLU``), where
  calls to ``Identity`` / ``Dropout(p=0)`` children may wrap any part. Replaced by a
  FusedGatedMLP with the original names; the Identity-like children are kept as extra
  (unused) children so attribute access keeps working.

The ``forward`` source is read (``inspect``, then ``ast``) so that a module is only
rewritten when its computation is known to be exactly the fused one: a gated block that
clamps, scales, upcasts or sparsifies (DeepSeek-V4, Gemma-3n, Falcon-H1, ...) is skipped
and reported, never silently changed. Plain (non-Module, non-Parameter) instance
attributes of a replaced module (``config``, ``hidden_size``, ...) are copied onto the
replacement. Training mode is kept (without touching the children's modes); nothing is
copied or moved, so device and dtype are kept too.

Skipped, with a reason in the report: a ``Linear`` subclass that overrides ``forward``
(LoRA, quantized layers), ``transformers``' ``Conv1D`` (GPT-2: weight stored (in, out)),
unsupported activations (QuickGELU, ReLU6, ...), a norm or a Dropout(p>0) between the
layers, modules or fused children with forward / backward / state-dict hooks or an
instance-level ``forward`` (accelerate offloading), dtypes / devices the op lacks, runs
of more than 32 layers, forwards that do anything else. Candidates are reported only
when they look like an MLP (two or more Linear-like children and an activation child, or a
recognised forward); attention blocks and the like are passed over silently. Replaced
modules are not descended into, already fused modules are left as they are, and a module
shared by several parents is replaced by one shared replacement.

If ``model`` itself is one of the patterns (e.g. ``fuse(nn.Sequential(...))``), there is
no parent to swap it in: the replacement is returned (it shares all children with
``model``), so always use the return value. Global module hooks
(``torch.nn.modules.module.register_module_forward_hook``) are not seen by fused children.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import weakref
from collections import OrderedDict
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from . import _activations
from .modules import FusedGatedMLP, FusedMLP, _plan, _Run

__all__ = ["fuse", "fuse_with_report", "FuseReport", "FuseEntry"]

_OK_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

FUSED = "fused"
SKIPPED = "skipped"


class FuseEntry(NamedTuple):
    """One candidate module: its qualified name in the model ('' for the model itself),
    the pattern ('sequential', 'mlp', 'gated_mlp'), 'fused' or 'skipped', the reason (for
    'fused': what it became), and the original module's class."""

    name: str
    kind: str
    status: str
    reason: str
    module_type: str


class FuseReport:
    """What fuse() did: a list of FuseEntry, in model order. Iterable; str() is a table."""

    def __init__(self, entries: Optional[List[FuseEntry]] = None):
        self.entries: List[FuseEntry] = list(entries or [])

    @property
    def fused(self) -> List[FuseEntry]:
        return [e for e in self.entries if e.status == FUSED]

    @property
    def skipped(self) -> List[FuseEntry]:
        return [e for e in self.entries if e.status == SKIPPED]

    def __iter__(self) -> Iterator[FuseEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):
        return self.entries[i]

    def __repr__(self) -> str:
        return f"FuseReport(fused={len(self.fused)}, skipped={len(self.skipped)})"

    def __str__(self) -> str:
        lines = [f"fused_mlp.fuse: {len(self.fused)} fused, {len(self.skipped)} skipped"]
        for e in self.entries:
            lines.append(f"  {e.status:7s} {e.name or '<model>'} [{e.kind}, {e.module_type}]: {e.reason}")
        return "\n".join(lines)


def fuse(model: nn.Module, *, verbose: bool = False) -> nn.Module:
    """Replaces, in place, the MLPs inside ``model`` by fused modules and returns the model
    (see the module docstring for what is matched). The report (a :class:`FuseReport`:
    what was fused and what was skipped, and why) is stored on the returned model as
    ``model.fused_mlp_report`` (a plain attribute: not in the state_dict) and printed
    when ``verbose``. Use :func:`fuse_with_report` to get it as a return value instead."""
    model, report = fuse_with_report(model)
    if verbose:
        print(report)
    return model


def fuse_with_report(model: nn.Module) -> Tuple[nn.Module, FuseReport]:
    """Like :func:`fuse`, returning ``(model, report)``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    report = FuseReport()
    if not isinstance(model, FusedMLP):
        new = _try_replace(model, "", report)
        if new is not None:
            model = new
        else:
            _walk(model, "", report, {})
    object.__setattr__(model, "fused_mlp_report", report)
    return model, report


def _walk(parent: nn.Module, prefix: str, report: FuseReport, memo: Dict[int, tuple]) -> None:
    for name, child in list(parent._modules.items()):
        if child is None:
            continue
        qual = f"{prefix}.{name}" if prefix else name
        seen = memo.get(id(child))
        if seen is not None:  # a module shared by several parents: handled once
            if seen[1] is not None:
                setattr(parent, name, seen[1])
            continue
        if isinstance(child, (FusedMLP, torch.jit.ScriptModule)):  # done / not ours to edit
            memo[id(child)] = (child, None)
            continue
        new = _try_replace(child, qual, report)
        memo[id(child)] = (child, new)  # keeps child alive so its id stays unique
        if new is not None:
            setattr(parent, name, new)
        else:
            _walk(child, qual, report, memo)


# ---------------------------------------------------------------------------------------
# matching

def _qualname(m) -> str:
    cls = m if isinstance(m, type) else type(m)
    return f"{cls.__module__}.{cls.__qualname__}"


def _short(m: nn.Module) -> str:
    if isinstance(m, nn.Dropout):
        return f"{type(m).__name__}(p={m.p})"
    return type(m).__name__


def _is_conv1d_like(m: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D (GPT-2 and friends): a Linear with a (in, out) weight
    return type(m).__name__ == "Conv1D" and isinstance(getattr(m, "weight", None), torch.Tensor)


def _linear_like(m: nn.Module) -> bool:
    return isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) or _is_conv1d_like(m)


def _activation_like(m: nn.Module) -> bool:
    found = _activations.from_module(m)
    if found is not None:
        return found[0] != "identity"
    mod = type(m).__module__
    return "activation" in mod or mod.startswith("torch.nn.modules.activation")


def _identity_like(m: nn.Module) -> bool:
    found = _activations.from_module(m)
    return found is not None and found[0] == "identity"


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_STATE_HOOK_DICTS = ("_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                     "_load_state_dict_post_hooks")


def _hook_problem(m: nn.Module, what: str, state_hooks: bool) -> Optional[str]:
    names = _HOOK_DICTS + (_STATE_HOOK_DICTS if state_hooks else ())
    for attr in names:
        if getattr(m, attr, None):
            return f"{what} has {attr.strip('_').replace('_', ' ')} that the fused module would not run"
    if "forward" in m.__dict__:
        return f"{what} has an instance-level forward (e.g. accelerate hooks) that the fused module would bypass"
    return None


def _linear_problem(name: str, m: nn.Module) -> Optional[str]:
    """Why the Linear-like child `name` cannot be run by the fused op, or None."""
    if _is_conv1d_like(m):
        return (f"'{name}' is {_qualname(m)} (weight stored transposed, (in, out)), not nn.Linear; "
                "FusedMLP needs nn.Linear weights (out, in)")
    if not isinstance(m, nn.Linear):
        return f"'{name}' is {type(m).__name__}, not nn.Linear"
    if type(m).forward is not nn.Linear.forward:
        return f"'{name}' ({_qualname(m)}) overrides nn.Linear.forward (LoRA, quantization, ...)"
    w = getattr(m, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        return f"'{name}' has no plain 2-D weight tensor (quantized?)"
    return _hook_problem(m, f"'{name}'", state_hooks=False)


def _dtype_problem(linears: List[Tuple[str, nn.Linear]]) -> Optional[str]:
    tensors = []
    for _, lin in linears:
        tensors.append(lin.weight)
        if lin.bias is not None:
            tensors.append(lin.bias)
    dtypes = {t.dtype for t in tensors}
    devices = {t.device for t in tensors}
    if len(dtypes) > 1:
        return f"the layers' parameters mix dtypes {sorted(str(d) for d in dtypes)}"
    if len(devices) > 1:
        return f"the layers' parameters are on several devices {sorted(str(d) for d in devices)}"
    (dt,), (dev,) = dtypes, devices
    if dev.type not in ("cpu", "cuda", "meta"):
        return f"the fused op has no {dev.type} kernel (cpu and cuda only)"
    if dt in _OK_DTYPES or (dt == torch.float64 and dev.type in ("cpu", "meta")):
        return None
    return f"dtype {dt} is not supported by the fused op (float32, bfloat16, float16; float64 on CPU)"


def _sequence_problem(named: List[Tuple[str, nn.Module]]) -> Tuple[Optional[str], int]:
    """For children run in this order by a FusedMLP: (why it should not be built, or None;
    the longest fused run's number of Linear layers)."""
    children = [m for _, m in named]
    steps = _plan(children)
    runs = [s for s in steps if isinstance(s, _Run)]
    longest = max((len(r.linears) for r in runs), default=0)
    if longest < 2:
        return _why_no_run(named, steps), longest
    names = [n for n, _ in named]
    fused_linears = []
    for r in runs:
        for i in range(r.first, r.last + 1):
            name, m = named[i]
            if isinstance(m, nn.Linear):
                p = _linear_problem(name, m)
                if p is not None:
                    return p, longest
                fused_linears.append((name, m))
            else:
                p = _hook_problem(m, f"'{names[i]}'", state_hooks=False)
                if p is not None:
                    return p, longest
    return _dtype_problem(fused_linears), longest


def _why_no_run(named, steps) -> str:
    lin_idx = [i for i, (_, m) in enumerate(named) if _linear_like(m)]
    blockers = []
    for i, (name, m) in enumerate(named):
        if not lin_idx or i < lin_idx[0] or i > lin_idx[-1]:
            continue
        if not any(m is s for s in steps):
            continue  # fused into a (one-Linear) run
        found = _activations.from_module(m)
        if _linear_like(m):
            blockers.append(_linear_problem(name, m) or f"'{name}' cannot join a fused run")
        elif found is not None:
            prev = named[i - 1][1] if i else None
            if found[0] != "identity" and prev is not None and _activations.from_module(prev) is not None:
                blockers.append(f"'{name}' ({_short(m)}) is a second activation in a row")
        elif _activation_like(m):
            blockers.append(f"'{name}' ({_short(m)}) is an unsupported activation "
                            f"(supported: {', '.join(_activations.CODES)})")
        elif isinstance(m, nn.Dropout):
            blockers.append(f"'{name}' ({_short(m)}) has p > 0")
        else:
            blockers.append(f"'{name}' ({_short(m)}) is not an activation")
    detail = "; ".join(b for b in blockers if b) or "no two Linear layers are adjacent"
    return f"no two nn.Linear layers can form one fused run: {detail}"


# --- reading forward ---------------------------------------------------------------------

_FORWARD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Call(NamedTuple):
    child: str
    arg: object  # _Call, _Mul, or _INPUT


class _Mul(NamedTuple):
    a: object
    b: object


_INPUT = "<input>"


def _parse_forward(cls) -> object:
    """The expression cls.forward returns, as _Call / _Mul / _INPUT nodes over `self.<child>`
    calls, or a string saying why it is not of that form. Cached per forward function."""
    fn = cls.forward
    if fn in _FORWARD_CACHE:
        return _FORWARD_CACHE[fn]
    try:
        result = _parse_forward_uncached(fn)
    except Exception as e:  # noqa: BLE001  (any failure means: not recognised)
        result = f"forward could not be read ({type(e).__name__}: {e})"
    try:
        _FORWARD_CACHE[fn] = result
    except TypeError:  # not weak-referenceable: just don't cache
        pass
    return result


def _parse_forward_uncached(fn) -> object:
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return "the source of forward is not available"
    tree = ast.parse(src)
    fdef = tree.body[0] if tree.body else None
    if not isinstance(fdef, (ast.FunctionDef, ast.AsyncFunctionDef)) or isinstance(fdef, ast.AsyncFunctionDef):
        return "forward is not a plain function"
    if fdef.decorator_list:
        return "forward is decorated"
    a = fdef.args
    if (len(a.args) != 2 or a.vararg or a.kwarg or a.kwonlyargs or getattr(a, "posonlyargs", None)
            or a.defaults):
        return "forward does not take exactly one input"
    self_name, inp = a.args[0].arg, a.args[1].arg
    env: Dict[str, object] = {inp: _INPUT}

    def expr(node):
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            raise ValueError(f"uses {node.id!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            return _Mul(expr(node.left), expr(node.right))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == self_name
                and len(node.args) == 1 and not node.keywords
                and not isinstance(node.args[0], ast.Starred)):
            return _Call(node.func.attr, expr(node.args[0]))
        raise ValueError(f"computes {ast.unparse(node)!r}")

    body = list(fdef.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]  # docstring
    try:
        for i, st in enumerate(body):
            last = i == len(body) - 1
            if isinstance(st, ast.Return) and last and st.value is not None:
                return expr(st.value)
            if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name):
                env[st.targets[0].id] = expr(st.value)
            elif isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None:
                env[st.target.id] = expr(st.value)
            else:
                return f"forward has a statement other than assignments and return: {ast.unparse(st)[:80]!r}"
    except ValueError as e:
        return f"forward is not a chain of child-module calls (it {e})"
    return "forward does not end with a return"


def _names_in(e) -> List[str]:
    if isinstance(e, _Call):
        return _names_in(e.arg) + [e.child]
    if isinstance(e, _Mul):
        return _names_in(e.a) + _names_in(e.b)
    return []


def _strip_identity(e, mods, stripped: List[str]):
    """e with calls to Identity / Dropout(p=0) children removed (their names go to stripped)."""
    while isinstance(e, _Call) and e.child in mods and _identity_like(mods[e.child]):
        stripped.append(e.child)
        e = e.arg
    if isinstance(e, _Call):
        return _Call(e.child, _strip_identity(e.arg, mods, stripped))
    if isinstance(e, _Mul):
        return _Mul(_strip_identity(e.a, mods, stripped), _strip_identity(e.b, mods, stripped))
    return e


def _chain(e) -> Optional[List[str]]:
    names = []
    while isinstance(e, _Call):
        names.append(e.child)
        e = e.arg
    return names[::-1] if e == _INPUT else None


def _gated(e, mods) -> Optional[Tuple[Tuple[str, str, str, str], List[str]]]:
    """((gate, up, down, act), identity-like children used) if e is down(act(gate(x)) * up(x))."""
    stripped: List[str] = []
    e = _strip_identity(e, mods, stripped)
    if not (isinstance(e, _Call) and isinstance(e.arg, _Mul)):
        return None
    down, prod = e.child, e.arg
    for left, right in ((prod.a, prod.b), (prod.b, prod.a)):
        if (isinstance(left, _Call) and isinstance(left.arg, _Call) and left.arg.arg == _INPUT
                and isinstance(right, _Call) and right.arg == _INPUT):
            return (left.arg.child, right.child, down, left.child), stripped
    return None


# --- building replacements ---------------------------------------------------------------

def _try_replace(m: nn.Module, qual: str, report: FuseReport) -> Optional[nn.Module]:
    cls = type(m)
    if isinstance(m, (nn.ModuleList, nn.ModuleDict, FusedMLP)):
        return None
    if isinstance(m, nn.Sequential) and cls.forward is nn.Sequential.forward:
        return _try_sequential(m, qual, report)
    if cls.forward is nn.Module.forward or cls.__module__.startswith("torch."):
        return None
    mods = {n: c for n, c in m._modules.items() if c is not None}
    n_lin = sum(1 for c in mods.values() if _linear_like(c))
    if n_lin < 2:
        return None
    parsed = _parse_forward(cls)
    looks_mlp = any(_activation_like(c) for c in mods.values()) or \
        {"gate_proj", "up_proj", "down_proj"} <= set(mods)

    def skip(kind, reason):
        report.entries.append(FuseEntry(qual, kind, SKIPPED, reason, _qualname(m)))
        return None

    if isinstance(parsed, str):
        hint = _KNOWN_SKIPS.get(_qualname(m))
        return skip("mlp", f"{hint} ({parsed})" if hint else parsed) if looks_mlp else None
    unknown = [n for n in _names_in(parsed) if n not in mods]
    if unknown:
        return skip("mlp", f"forward calls self.{unknown[0]}, which is not a child module") if looks_mlp else None
    common = _common_problem(m, mods)
    chain = _chain(parsed)
    if chain is not None:
        if common:
            return skip("mlp", common)
        return _replace_chain(m, qual, report, mods, chain)
    gated = _gated(parsed, mods)
    if gated is not None:
        if common:
            return skip("gated_mlp", common)
        return _replace_gated(m, qual, report, mods, *gated)
    return skip("mlp", "forward is neither a chain of child calls nor down(act(gate(x)) * up(x))") \
        if looks_mlp else None


_KNOWN_SKIPS = {
    "timm.layers.mlp.GluMlp": "fc1 holds the gate and value halves in one Linear (split with "
                              "chunk); FusedGatedMLP needs separate gate and up Linear layers",
}


def _common_problem(m: nn.Module, mods) -> Optional[str]:
    if m._parameters or m._buffers:
        names = list(m._parameters) + list(m._buffers)
        return f"the module holds its own parameters/buffers ({', '.join(names)})"
    return _hook_problem(m, "the module", state_hooks=True)


def _unused_problem(mods, used: List[str]) -> Optional[str]:
    counts: Dict[str, int] = {}
    for n in used:
        counts[n] = counts.get(n, 0) + 1
    twice = [n for n, c in counts.items() if c > 1]
    if twice:
        return f"forward calls '{twice[0]}' more than once"
    unused = [n for n in mods if n not in counts]
    if unused:
        return f"child '{unused[0]}' is not called by forward"
    return None


def _replace_chain(m, qual, report, mods, chain) -> Optional[nn.Module]:
    def skip(reason):
        report.entries.append(FuseEntry(qual, "mlp", SKIPPED, reason, _qualname(m)))

    p = _unused_problem(mods, chain)
    if p:
        return skip(p)
    named = [(n, mods[n]) for n in chain]
    p, longest = _sequence_problem(named)
    if p:
        return skip(p)
    new = FusedMLP(OrderedDict(named))
    return _finish(m, new, qual, report, "mlp", f"FusedMLP, runs {new.fused_runs}")


def _replace_gated(m, qual, report, mods, names, stripped) -> Optional[nn.Module]:
    g, u, d, a = names

    def skip(reason):
        report.entries.append(FuseEntry(qual, "gated_mlp", SKIPPED, reason, _qualname(m)))

    p = _unused_problem(mods, [g, u, d, a] + stripped)
    if p:
        return skip(p)
    for n in (g, u, d):
        p = _linear_problem(n, mods[n])
        if p:
            return skip(p)
    act = mods[a]
    found = _activations.from_module(act)
    if found is None:
        return skip(f"'{a}' ({_short(act)}) is an unsupported activation "
                    f"(supported: {', '.join(_activations.CODES)})")
    for n in [a] + stripped:
        p = _hook_problem(mods[n], f"'{n}'", state_hooks=False)
        if p:
            return skip(p)
    p = _dtype_problem([(n, mods[n]) for n in (g, u, d)])
    if p:
        return skip(p)
    try:
        new = FusedGatedMLP(mods[g], mods[u], mods[d], act, names=(g, u, d, a))
    except (TypeError, ValueError) as e:
        return skip(str(e))
    for n in stripped:
        new.add_module(n, mods[n])
    return _finish(m, new, qual, report, "gated_mlp",
                   f"FusedGatedMLP({g}, {u}, {d}, {a}={found[0]})")


def _try_sequential(seq: nn.Sequential, qual: str, report: FuseReport) -> Optional[nn.Module]:
    named = list(seq._modules.items())
    if sum(1 for _, c in named if c is not None and _linear_like(c)) < 2:
        return None

    def skip(reason):
        report.entries.append(FuseEntry(qual, "sequential", SKIPPED, reason, _qualname(seq)))

    if any(c is None for _, c in named):
        return skip("a child is None")
    p = _hook_problem(seq, "the Sequential", state_hooks=True)
    if p is None and (seq._parameters or seq._buffers):
        p = "the Sequential holds its own parameters/buffers"
    if p is None:
        p, _ = _sequence_problem(named)
    if p:
        return skip(p)
    new = FusedMLP(OrderedDict(named))
    return _finish(seq, new, qual, report, "sequential", f"FusedMLP, runs {new.fused_runs}")


def _finish(old: nn.Module, new: FusedMLP, qual: str, report: FuseReport, kind: str,
            what: str) -> FusedMLP:
    new.training = old.training  # not .train(): the children keep their own modes
    cls_attrs = set(dir(type(new)))
    for k, v in old.__dict__.items():
        if k not in new.__dict__ and k not in cls_attrs and k != "fused_mlp_report":
            object.__setattr__(new, k, v)
    report.entries.append(FuseEntry(qual, kind, FUSED, what, _qualname(old)))
    return new
