"""fused_mlp.fuse on small hand-built models: what is replaced, what is skipped (and the
report saying why), state_dict compatibility both ways, modes, gradients, copies."""
import copy
import io
import pickle

import pytest
import torch
from torch import nn

import fused_mlp
from fused_mlp import FusedGatedMLP, FusedMLP
from fused_mlp.convert import FuseReport, fuse_with_report


def assert_close_rel(out, ref, rel=1e-4):
    """Within rel of the output's scale (the fused op accumulates in fp32 like eager)."""
    scale = ref.detach().abs().max().item()
    torch.testing.assert_close(out, ref, rtol=rel, atol=rel * max(scale, 1e-6))


def same_state(a: dict, b: dict):
    assert list(a.keys()) == list(b.keys())
    for k in a:
        assert a[k].data_ptr() == b[k].data_ptr() and torch.equal(a[k], b[k]), k


def seq(*widths, act=nn.ReLU):
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class ChainMLP(nn.Module):
    """A user MLP whose forward is a chain of its children (timm Mlp style)."""

    def __init__(self, d=16, h=32, act=nn.GELU, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(d, h)
        self.act = act()
        self.drop = nn.Dropout(drop)
        self.fc2 = nn.Linear(h, d)
        self.width = h  # plain attribute: must survive the swap

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        return self.fc2(x)


class GatedMLP(nn.Module):
    """Hugging Face style gated block."""

    def __init__(self, d=16, h=24, act=nn.SiLU, bias=False):
        super().__init__()
        self.hidden_size, self.intermediate_size = d, h
        self.config = {"hidden_act": "silu"}
        self.gate_proj = nn.Linear(d, h, bias=bias)
        self.up_proj = nn.Linear(d, h, bias=bias)
        self.down_proj = nn.Linear(h, d, bias=bias)
        self.act_fn = act()

    def forward(self, x):
        down_proj = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return down_proj


class OddNamesGated(nn.Module):
    """Gated block under other names, up * act(gate) order, Identity wrappers (timm SwiGLU-like)."""

    def __init__(self, d=16, h=24):
        super().__init__()
        self.w_gate, self.w_val, self.w_out = nn.Linear(d, h), nn.Linear(d, h), nn.Linear(h, d)
        self.nonlin = nn.GELU(approximate="tanh")
        self.norm = nn.Identity()
        self.drop = nn.Dropout(0.0)

    def forward(self, inp):
        g = self.nonlin(self.w_gate(inp))
        v = self.w_val(inp)
        return self.drop(self.w_out(self.norm(v * g)))


class ClampedGated(GatedMLP):
    """Same children as GatedMLP but a different computation: must not be rewritten."""

    def forward(self, x):
        gate = self.gate_proj(x).clamp(max=1.0)
        return self.down_proj(self.act_fn(gate) * self.up_proj(x))


class ScaledChain(ChainMLP):
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * 0.5


class UnusedChild(ChainMLP):
    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))  # self.drop is never called


class Attention(nn.Module):
    """Two Linears, no activation, not a chain: not an MLP, so not even reported."""

    def __init__(self, d=16):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        a = torch.softmax(q @ k.transpose(-1, -2), dim=-1)
        return self.proj(a @ v)


class LoRALinear(nn.Linear):
    def __init__(self, i, o):
        super().__init__(i, o)
        self.lora = nn.Parameter(torch.zeros(o, i))

    def forward(self, x):
        return nn.functional.linear(x, self.weight + self.lora, self.bias)


class Net(nn.Module):
    """Sequentials, ModuleList, ModuleDict, custom MLPs, nesting and things to skip."""

    def __init__(self):
        super().__init__()
        d = 16
        self.embed = seq(d, 32, d)  # fused: Sequential at an attribute
        self.blocks = nn.ModuleList([ChainMLP(d), GatedMLP(d), OddNamesGated(d), Attention(d)])
        self.heads = nn.ModuleDict({
            "a": nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, d), nn.Dropout(0.2)),
            "norm_between": nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.Linear(d, d)),
            "drop_between": nn.Sequential(nn.Linear(d, d), nn.Dropout(0.1), nn.Linear(d, d)),
            "one_linear": nn.Sequential(nn.Linear(d, d), nn.ReLU()),
        })
        self.outer = nn.Sequential(nn.Sequential(nn.Linear(d, 8), nn.SiLU(), nn.Linear(8, d)), nn.LayerNorm(d))
        self.unsupported = ChainMLP(d, act=nn.Mish)
        self.dropout_mlp = ChainMLP(d, drop=0.1)
        self.clamped = ClampedGated(d)
        self.scaled = ScaledChain(d)
        self.unused = UnusedChild(d)
        self.lora = nn.Sequential(LoRALinear(d, d), nn.ReLU(), nn.Linear(d, d))

    def forward(self, x):
        x = self.embed(x)
        for b in self.blocks:
            x = x + b(x)
        for h in self.heads.values():
            x = x + h(x)
        x = self.outer(x)
        for m in (self.unsupported, self.dropout_mlp, self.clamped, self.scaled, self.unused, self.lora):
            x = x + m(x)
        return x


FUSED_NAMES = {"embed", "blocks.0", "blocks.1", "blocks.2", "heads.a", "outer.0"}
SKIPPED = {
    "heads.norm_between": "LayerNorm",
    "heads.drop_between": "p > 0",
    "unsupported": "unsupported activation",
    "dropout_mlp": "p > 0",
    "clamped": "forward",
    "scaled": "forward",
    "unused": "not called",
    "lora": "overrides nn.Linear.forward",
}


@pytest.fixture
def net():
    torch.manual_seed(0)
    return Net().eval()


def test_fuse_mixed_model(net):
    x = torch.randn(3, 5, 16)
    ref = net(x)
    sd = net.state_dict()
    params = dict(net.named_parameters())
    out_model = fused_mlp.fuse(net)
    assert out_model is net
    same_state(sd, net.state_dict())
    assert dict(net.named_parameters()) == params  # the very same Parameter objects
    assert_close_rel(net(x), ref)

    report = net.fused_mlp_report
    assert isinstance(report, FuseReport)
    assert {e.name for e in report.fused} == FUSED_NAMES
    skipped = {e.name: e.reason for e in report.skipped}
    assert set(skipped) == set(SKIPPED), skipped
    for name, needle in SKIPPED.items():
        assert needle in skipped[name], (name, skipped[name])
    for e in report.fused:
        assert isinstance(net.get_submodule(e.name), FusedMLP), e.name
    # skipped modules are untouched (same objects, same classes)
    assert type(net.clamped) is ClampedGated and type(net.heads["norm_between"]) is nn.Sequential
    assert not isinstance(net.blocks[3], FusedMLP) and "blocks.3" not in {e.name for e in report}
    assert "heads.one_linear" not in {e.name for e in report}
    assert type(net.heads["one_linear"]) is nn.Sequential
    assert type(net.outer) is nn.Sequential and isinstance(net.outer[0], FusedMLP)
    # kinds and what they became
    assert isinstance(net.blocks[1], FusedGatedMLP) and isinstance(net.blocks[2], FusedGatedMLP)
    assert type(net.blocks[0]) is FusedMLP
    assert net.blocks[0].fused_runs == [["fc1", "act", "drop", "fc2"]]
    kinds = {e.name: e.kind for e in report}
    assert kinds["embed"] == "sequential" and kinds["blocks.0"] == "mlp" and kinds["blocks.1"] == "gated_mlp"
    # plain attributes carried over
    assert net.blocks[0].width == 32
    assert net.blocks[1].hidden_size == 16 and net.blocks[1].config == {"hidden_act": "silu"}
    # identity-like children of the odd gated block are kept (attribute access still works)
    assert isinstance(net.blocks[2].norm, nn.Identity) and isinstance(net.blocks[2].drop, nn.Dropout)
    text = str(report)
    assert "6 fused, 8 skipped" in text and "unsupported activation" in text


def test_root_sequential_and_root_mlp():
    torch.manual_seed(1)
    s = seq(8, 32, 32, 4, act=nn.GELU)
    x = torch.randn(7, 8)
    ref = s(x)
    keys = s.state_dict()
    f, report = fuse_with_report(s)
    assert isinstance(f, FusedMLP) and f is not s  # no parent to swap into: use the return value
    assert all(a is b for a, b in zip(f.children(), s.children()))
    same_state(keys, f.state_dict())
    assert_close_rel(f(x), ref)
    assert [e.name for e in report.fused] == [""]
    assert f.fused_mlp_report is report

    g = GatedMLP()
    x = torch.randn(4, 16)
    ref = g(x)
    f = fused_mlp.fuse(g)
    assert isinstance(f, FusedGatedMLP) and f.intermediate_size == 24
    assert_close_rel(f(x), ref)


def test_nothing_to_fuse_is_untouched():
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8))
    before = list(m.children())
    out, report = fuse_with_report(m)
    assert out is m and type(m) is nn.Sequential and list(m.children()) == before
    (entry,) = report.skipped
    assert entry.name == "" and entry.kind == "sequential" and "'1' (LayerNorm) is not an activation" in entry.reason
    assert report.fused == []


def test_fuse_is_idempotent(net):
    fused_mlp.fuse(net)
    children = dict(net.named_modules())
    _, report = fuse_with_report(net)
    assert report.fused == []
    assert dict(net.named_modules()) == children


def test_hooks_block_fusion():
    torch.manual_seed(3)
    calls = []
    m = nn.Module()
    m.a = seq(8, 16, 8)
    m.a[0].register_forward_hook(lambda *args: calls.append(1))
    m.b = ChainMLP(8)
    m.b.register_forward_pre_hook(lambda *args: None)
    m.c = seq(8, 16, 8)
    _, report = fuse_with_report(m)
    skipped = {e.name: e.reason for e in report.skipped}
    assert "forward hooks" in skipped["a"] and "forward pre hooks" in skipped["b"]
    assert [e.name for e in report.fused] == ["c"]
    m.a(torch.randn(2, 8))
    assert calls == [1]


def test_mixed_dtypes_skipped_and_half_precision_fused():
    torch.manual_seed(4)
    m = nn.Module()
    m.mixed = seq(8, 16, 8)
    m.mixed[2].to(torch.float16)
    m.bf16 = seq(8, 16, 8).to(torch.bfloat16)
    _, report = fuse_with_report(m)
    (skip,) = report.skipped
    assert skip.name == "mixed" and "mix dtypes" in skip.reason
    assert isinstance(m.bf16, FusedMLP) and m.bf16[0].weight.dtype == torch.bfloat16
    x = torch.randn(5, 8, dtype=torch.bfloat16)
    ref = torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(
        x.float(), m.bf16[0].weight.float(), m.bf16[0].bias.float())).bfloat16().float(),
        m.bf16[2].weight.float(), m.bf16[2].bias.float())
    assert_close_rel(m.bf16(x).float(), ref, rel=2e-2)


def test_training_mode_is_kept_and_children_modes_untouched():
    m = nn.Module()
    m.a = seq(8, 16, 8)
    m.b = ChainMLP(8)
    m.train()
    m.b.drop.eval()  # an odd child mode must not be overwritten
    fused_mlp.fuse(m)
    assert m.a.training and m.b.training and not m.b.drop.training
    m.eval()
    m2 = nn.Module()
    m2.a = seq(8, 16, 8).eval()
    fused_mlp.fuse(m2)
    assert not m2.a.training


def test_gradients_match_eager(net):
    x = torch.randn(3, 5, 16)
    ref_net = copy.deepcopy(net)
    fused_mlp.fuse(net)
    net(x).square().mean().backward()
    ref_net(x).square().mean().backward()
    ref_grads = dict(ref_net.named_parameters())
    for name, p in net.named_parameters():
        assert_close_rel(p.grad, ref_grads[name].grad, rel=1e-4)


def test_shared_module_gets_one_replacement():
    shared = seq(8, 16, 8)
    m = nn.Module()
    m.first = shared
    m.others = nn.ModuleList([shared, nn.Linear(8, 8)])
    _, report = fuse_with_report(m)
    assert isinstance(m.first, FusedMLP) and m.others[0] is m.first
    assert [e.name for e in report.fused] == ["first"]


def test_state_dict_round_trip_fused_unfused(net):
    torch.manual_seed(5)
    unfused = copy.deepcopy(net)
    fused = fused_mlp.fuse(copy.deepcopy(net))
    with torch.no_grad():  # make fused differ, then carry its weights back into an unfused model
        for p in fused.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    unfused.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(2, 3, 16)
    assert_close_rel(fused(x), unfused(x))
    # and the other way: unfused weights into the fused model
    fresh = Net().eval()
    fused.load_state_dict(fresh.state_dict(), strict=True)
    assert_close_rel(fused(x), fresh(x))


def test_deepcopy_and_pickle_of_fused_model(net):
    fused_mlp.fuse(net)
    x = torch.randn(2, 4, 16)
    ref = net(x)
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    for clone in (copy.deepcopy(net), pickle.loads(pickle.dumps(net)),
                  torch.load(buf, weights_only=False)):
        assert type(clone.blocks[1]) is FusedGatedMLP and type(clone.embed) is FusedMLP
        assert clone.fused_mlp_report.entries == net.fused_mlp_report.entries
        torch.testing.assert_close(clone(x), ref, rtol=0, atol=0)
        # the clone runs on its own parameters (the cached plan follows the copied children)
        with torch.no_grad():
            clone.embed[0].weight.mul_(2)
            clone.blocks[1].down_proj.weight.mul_(-1)
        assert not torch.allclose(clone(x), ref)
        unfused_like = Net().eval()
        unfused_like.load_state_dict(clone.state_dict())
        assert_close_rel(clone(x), unfused_like(x))
    torch.testing.assert_close(net(x), ref, rtol=0, atol=0)


def test_verbose_prints_report(capsys):
    fused_mlp.fuse(nn.Sequential(seq(4, 8, 4)), verbose=True)
    out = capsys.readouterr().out
    assert "fused_mlp.fuse: 1 fused, 0 skipped" in out and "fused   0 [sequential" in out


def test_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        fused_mlp.fuse(lambda x: x)
