"""Where does the time of an MLP go, and what does fusion buy? torch.profiler runs of the
same block eager, under torch.compile, and fused — as plain data.

    from fused_mlp import profiling
    spec = profiling.MLPSpec(in_features=768, hidden=3072, gated=True, activation="gelu_tanh")
    model = profiling.build_mlp(spec, device="cuda", dtype=torch.bfloat16)
    results = profiling.profile_variants(model, profiling.make_input(spec, 64 * 128, "cuda", torch.bfloat16))
    for r in results: print(r.name, r.kernels_per_step, r.wall_us, r.speedup)
    sweep = profiling.sweep_batches(model, [1, 16, 256, 4096], ...)

`python -m fused_mlp.profile` (fused_mlp/profile.py) formats the same data as a table,
Chrome traces and a plot.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function, schedule

from . import _activations
from .modules import FusedGatedMLP, FusedMLP, _activation_module, _Run

VARIANTS = ("eager", "compiled", "fused")


# ----------------------------------------------------------------------------- models
@dataclasses.dataclass
class MLPSpec:
    """An MLP to profile. Plain: in -> hidden (x depth-1 hidden layers) -> out.
    Gated: gate/up in -> hidden, down hidden -> out (depth is ignored)."""

    in_features: int = 768
    hidden: int = 3072
    out_features: Optional[int] = None
    depth: int = 2
    activation: str = "gelu_tanh"
    gated: bool = True
    bias: bool = False

    @property
    def out(self) -> int:
        return self.out_features or self.in_features

    def describe(self) -> str:
        kind = ("GeGLU" if "gelu" in self.activation else "SwiGLU" if self.activation == "silu" else "gated") \
            if self.gated else f"{self.depth}-layer MLP"
        return f"{kind} {self.in_features}->{self.hidden}->{self.out} ({self.activation}{', bias' if self.bias else ''})"


class EagerGatedMLP(nn.Module):
    """The eager gated block, laid out like Hugging Face's LlamaMLP."""

    def __init__(self, d: int, h: int, o: int, act: nn.Module, bias: bool):
        super().__init__()
        self.gate_proj = nn.Linear(d, h, bias=bias)
        self.up_proj = nn.Linear(d, h, bias=bias)
        self.down_proj = nn.Linear(h, o, bias=bias)
        self.act_fn = act

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def _act_module(name: str) -> nn.Module:
    return _activation_module(_activations.canonical(name), 0.01) or nn.Identity()


def build_mlp(spec: MLPSpec, device="cpu", dtype=torch.float32) -> nn.Module:
    """The eager module for spec (random nn.Linear initialisation)."""
    if spec.gated:
        m = EagerGatedMLP(spec.in_features, spec.hidden, spec.out, _act_module(spec.activation), spec.bias)
    else:
        widths = [spec.in_features] + [spec.hidden] * (spec.depth - 1) + [spec.out]
        layers: List[nn.Module] = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1], bias=spec.bias))
            if i < len(widths) - 2:
                layers.append(_act_module(spec.activation))
        m = nn.Sequential(*layers)
    return m.to(device=device, dtype=dtype)


def fused_version(model: nn.Module) -> nn.Module:
    """A fused module sharing model's parameters."""
    if isinstance(model, EagerGatedMLP):
        return FusedGatedMLP(model.gate_proj, model.up_proj, model.down_proj, model.act_fn)
    if isinstance(model, nn.Sequential):
        return FusedMLP.from_sequential(model)
    from .convert import fuse

    return fuse(copy.copy(model))


def make_input(spec: MLPSpec, rows: int, device="cpu", dtype=torch.float32, requires_grad=False) -> torch.Tensor:
    return torch.randn(rows, spec.in_features, device=device, dtype=dtype, requires_grad=requires_grad)


# ----------------------------------------------------------------------------- results
@dataclasses.dataclass
class KernelStat:
    name: str
    calls_per_step: float
    time_us_per_step: float


@dataclasses.dataclass
class VariantResult:
    """One variant's profile, per step (a forward, or a forward+backward)."""

    name: str
    kernels: List[KernelStat]       # device kernels (CUDA) or leaf operators (CPU), busiest first
    kernels_per_step: float
    kernel_time_us: float           # time inside those kernels per step
    cpu_dispatch_us: float          # host time per step outside kernels (Python, dispatch, launches)
    wall_us: float                  # wall time per step, median of timed runs (synchronised)
    peak_memory_bytes: int          # bytes allocated above the start at the busiest moment of a step
    speedup: float = 1.0            # eager wall time / this wall time
    trace_path: Optional[str] = None
    strategy: Optional[str] = None  # the fused op's strategy (fused_mlp.explain)


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_fn(module: nn.Module, x: torch.Tensor, train: bool) -> Callable[[], None]:
    if train:
        def step():
            module(x).float().sum().backward()
    else:
        def step():
            with torch.no_grad():
                module(x)
    return step


def wall_time_us(step: Callable[[], None], device: torch.device, repeats: int = 10, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


# Operators that move no data (views, metadata, allocation): not counted as kernels on CPU.
_NO_WORK = {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::t", "aten::transpose", "aten::as_strided",
            "aten::_unsafe_view", "aten::expand", "aten::detach", "aten::alias", "aten::resolve_conj",
            "aten::resolve_neg", "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::lift_fresh",
            "aten::permute", "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select", "detach",
            "aten::contiguous", "aten::result_type", "aten::to", "aten::_to_copy", "aten::numpy_T"}


def _works(evt) -> bool:
    return evt.device_type == torch.autograd.DeviceType.CPU and "::" in evt.name and evt.name not in _NO_WORK


def _cpu_kernels(events) -> list:
    """CPU operators that do the work themselves: working operators with no working
    operator below them (aten::linear -> aten::matmul -> aten::mm counts aten::mm)."""
    wrappers = set()
    for e in events:
        if _works(e):
            p = e.cpu_parent
            while p is not None:
                wrappers.add(id(p))
                p = p.cpu_parent
    return [e for e in events if _works(e) and id(e) not in wrappers]


def _collect(prof, device: torch.device, steps: int, label: str):
    """Kernel table, kernel time and host time per step from a finished profile.
    CUDA: kernels are the device kernels; host time is the step's CPU time (dispatch and
    launches). CPU: kernels are the operators that do the work; host time is the step's
    CPU time outside them (Python, dispatch, framework overhead)."""
    stats: Dict[str, List[float]] = {}
    events = list(prof.events())
    step_cpu = sum(e.cpu_time_total for e in events
                   if e.name == label and e.device_type == torch.autograd.DeviceType.CPU)
    if device.type == "cuda":
        # device work only: the step labels are mirrored on the GPU timeline as annotations
        work = [(e, e.device_time) for e in events if e.device_type == torch.autograd.DeviceType.CUDA
                and e.name != label and not e.name.startswith("ProfilerStep")]
    else:
        work = [(e, e.cpu_time_total) for e in _cpu_kernels(events)]
    for evt, t in work:
        s = stats.setdefault(evt.name, [0, 0.0])
        s[0] += 1
        s[1] += t
    kernels = sorted((KernelStat(n, c / steps, t / steps) for n, (c, t) in stats.items()),
                     key=lambda k: -k.time_us_per_step)
    ktime = sum(k.time_us_per_step for k in kernels)
    host = step_cpu / steps - (ktime if device.type != "cuda" else 0.0)
    return kernels, sum(k.calls_per_step for k in kernels), ktime, max(host, 0.0)


def profile_module(name: str, module: nn.Module, x: torch.Tensor, train: bool = False, out_dir: Optional[str] = None,
                   wait: int = 1, warmup: int = 2, active: int = 3, repeats: int = 10) -> VariantResult:
    """Profiles `module(x)` (and its backward when train) under torch.profiler with a
    wait/warmup/active schedule; the wall time comes from separate, unprofiled runs."""
    device = x.device
    step = _step_fn(module, x, train)
    step()  # compile / first-call work stays out of the profile
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    label = f"{name}.{'train_step' if train else 'forward'}"
    with profile(activities=activities, schedule=schedule(wait=wait, warmup=warmup, active=active)) as prof:
        for _ in range(wait + warmup + active):
            with record_function(label):
                step()
            _sync(device)
            prof.step()
    kernels, count, ktime, cpu_us = _collect(prof, device, active, label)
    trace = None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        trace = os.path.join(out_dir, f"trace_{name}.json")
        prof.export_chrome_trace(trace)
    peak = _peak_memory(step, device)
    wall = wall_time_us(step, device, repeats=repeats)
    return VariantResult(name, kernels, count, ktime, cpu_us, wall, peak, trace_path=trace)


def _peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Bytes allocated above the starting point at the busiest moment of one step.
    CUDA: the caching allocator's peak counter. CPU: replayed from the profiler's memory
    records (each operator's own allocations and every free, in time order)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    deltas = sorted((e.time_range.start, e.self_cpu_memory_usage if e.name != "[memory]" else e.cpu_memory_usage)
                    for e in prof.events() if e.name == "[memory]" or e.self_cpu_memory_usage > 0)
    peak = cur = 0
    for _, d in deltas:
        cur += d
        peak = max(peak, cur)
    return peak


def _strategy(model: nn.Module, x: torch.Tensor, train: bool) -> Optional[str]:
    """The strategy of the first fused module in model (fused_mlp.explain)."""
    from .functional import explain

    names = {code: name for name, code in _activations.CODES.items()}
    for m in model.modules():
        if isinstance(m, FusedGatedMLP):
            weights = [m._modules[n].weight for n in m._gate_names]
            acts, gated = [names[m._gate_act], "identity"], True
        elif isinstance(m, FusedMLP):
            run = next((s for s in m._steps() if isinstance(s, _Run)), None)
            if run is None:
                continue
            weights, acts, gated = [l.weight for l in run.linears], [names[c] for c in run.activations], False
        else:
            continue
        strategy = explain(x.reshape(-1, x.shape[-1]), weights, acts, gated=gated)["strategy"]
        return strategy + (" + gemm backward" if train and x.is_cuda else "")
    return None


def profile_variants(model: nn.Module, x: torch.Tensor, train: bool = False, out_dir: Optional[str] = None,
                     variants: Sequence[str] = VARIANTS, **kw) -> List[VariantResult]:
    """Profiles model eager, under torch.compile, and fused (sharing its parameters).
    Speedups are against eager's wall time in the same run."""
    makers = {
        "eager": lambda: model,
        "compiled": lambda: torch.compile(model),
        "fused": lambda: fused_version(model),
    }
    results = []
    for name in variants:
        if name not in makers:
            raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
        module = makers[name]()
        xi = x.detach().requires_grad_(train)
        r = profile_module(name, module, xi, train=train, out_dir=out_dir, **kw)
        if name == "fused":
            r.strategy = _strategy(module, xi, train)
        results.append(r)
    base = next((r.wall_us for r in results if r.name == "eager"), None)
    for r in results:
        r.speedup = base / r.wall_us if base else float("nan")
    return results


def sweep_batches(model: nn.Module, spec: MLPSpec, batches: Sequence[int], device="cpu", dtype=torch.float32,
                  train: bool = False, variants: Sequence[str] = VARIANTS, repeats: int = 10,
                  progress: Optional[Callable[[str], None]] = None) -> Dict[str, List[float]]:
    """Wall time per step (µs) for each variant at each batch size (rows), for plots."""
    modules = {"eager": model, "compiled": torch.compile(model, dynamic=True), "fused": fused_version(model)}
    out: Dict[str, List[float]] = {v: [] for v in variants}
    total = len(batches) * len(variants)
    for i, rows in enumerate(batches):
        for j, v in enumerate(variants):
            x = make_input(spec, rows, device, dtype, requires_grad=train)
            out[v].append(wall_time_us(_step_fn(modules[v], x, train), x.device, repeats=repeats))
            if progress:
                progress(f"[{i * len(variants) + j + 1}/{total}] {v} rows={rows}: {out[v][-1]:.1f} us")
    return out


def plot_sweep(batches: Sequence[int], times: Dict[str, List[float]], title: str, path: str) -> str:
    """Time per step against batch size for each variant (log-log), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for v, ts in times.items():
        ax.plot(batches, ts, marker="o", label=v)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("rows per call (batch × sequence)")
    ax.set_ylabel("time per step (µs)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    base = times.get("eager")
    if base:
        for v, ts in times.items():
            ax2.plot(batches, [b / t for b, t in zip(base, ts)], marker="o", label=v)
        ax2.axhline(1.0, color="grey", lw=0.8)
        ax2.set_xscale("log", base=2)
        ax2.set_xlabel("rows per call")
        ax2.set_ylabel("speedup over eager (×)")
        ax2.set_title("where fusion pays (> 1) and where it stops", fontsize=9)
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
