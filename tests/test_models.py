"""fused_mlp.fuse on real model code (transformers, timm) built from tiny configs with
random weights: no downloads, no network. transformers and timm are required test
dependencies (no importorskip): see the install lines in the CI setup.

timm and torchvision: timm (installed with --no-deps) imports torchvision at import time
(timm.layers.create_norm: ``from torchvision.ops.misc import FrozenBatchNorm2d``;
timm.data: ``torchvision.transforms``/``datasets``), and torchvision has no CPU build on
PyPI for this torch (PyPI's Linux torchvision wheel is the CUDA build: its compiled ops
link libtorch_cuda.so, and importing it on a CPU torch fails with "operator
torchvision::nms does not exist", which also breaks ``transformers`` whenever torchvision
is installed). So torchvision is not installed; ``_import_timm`` imports timm with a stand-in
torchvision visible only during that import: module stubs whose attributes are dummy
classes, plus a real FrozenBatchNorm2d. Nothing of torchvision runs in a ViT forward;
after the import the stand-in is removed from ``sys.modules`` so other code (transformers'
``is_torchvision_available``) sees no torchvision. A real, working torchvision is used when
present.
"""
import contextlib
import copy
import importlib.abc
import importlib.machinery
import sys
import types

import pytest
import torch
from torch import nn

import fused_mlp
from fused_mlp import FusedGatedMLP, FusedMLP
from fused_mlp.convert import fuse_with_report

import transformers  # noqa: E402  (required test dependency)
from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM,
                          LlamaConfig, LlamaForCausalLM)

transformers.logging.set_verbosity_error()


# --- timm without torchvision ------------------------------------------------------------

class _AnyMeta(type):
    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyMeta(name, (), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyMeta(name, (), {})  # a class: usable as a value, a base class, a namespace


class _FrozenBatchNorm2d(nn.Module):
    """torchvision.ops.misc.FrozenBatchNorm2d (timm maps 'frozenbatchnorm2d' to it)."""

    def __init__(self, num_features, eps=1e-5):
        super().__init__()
        self.eps = eps
        for n, f in (("weight", torch.ones), ("bias", torch.zeros),
                     ("running_mean", torch.zeros), ("running_var", torch.ones)):
            self.register_buffer(n, f(num_features))

    def forward(self, x):
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return x * scale[:, None, None] + (self.bias - self.running_mean * scale)[:, None, None]


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name != "torchvision" and not name.startswith("torchvision."):
            return None
        if name.startswith("torchvision.models"):
            return None  # timm then reports fx feature extraction unavailable
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []
        if module.__name__ == "torchvision.ops.misc":
            module.FrozenBatchNorm2d = _FrozenBatchNorm2d


@contextlib.contextmanager
def _torchvision_stand_in():
    finder = _TorchvisionStandIn()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]


def _import_timm():
    try:
        import torchvision  # noqa: F401
        real = True
    except ImportError:
        real = False
    if real:
        import timm.models.vision_transformer  # noqa: F401
    else:
        with _torchvision_stand_in():
            import timm.models.vision_transformer  # noqa: F401
    import timm
    return timm


timm = _import_timm()
from timm.layers import GluMlp, Mlp, QuickGELU, SwiGLU  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402


# --- helpers -----------------------------------------------------------------------------

def assert_close_rel(out, ref, rel=1e-4):
    scale = ref.detach().abs().max().item()
    torch.testing.assert_close(out, ref, rtol=rel, atol=rel * max(scale, 1e-6))


def snapshot(model):
    return {k: (v.data_ptr(), v.clone()) for k, v in model.state_dict().items()}


def assert_same_state(before, model):
    after = model.state_dict()
    assert list(after.keys()) == list(before.keys())
    for k, (ptr, val) in before.items():
        assert after[k].data_ptr() == ptr and torch.equal(after[k], val), k


def check_fused(model, run, n_expected, kind=FusedMLP):
    """fuse model; logits match, state_dict identical, every fused entry is a FusedMLP."""
    model.eval()
    ref = run(model)
    before = snapshot(model)
    out_model, report = fuse_with_report(model)
    assert out_model is model
    assert len(report.fused) == n_expected, str(report)
    for e in report.fused:
        assert isinstance(model.get_submodule(e.name), kind), e.name
    assert_same_state(before, model)
    assert_close_rel(run(model), ref)
    return report


# --- transformers ------------------------------------------------------------------------

def tiny_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=88, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg)


def test_llama_gated_mlps_fused():
    model = tiny_llama()
    ids = torch.randint(0, 101, (2, 11))
    reference64 = copy.deepcopy(model).double()
    report = check_fused(model, lambda m: m(ids).logits, 2, kind=FusedGatedMLP)
    assert report.skipped == []
    for layer in model.model.layers:
        mlp = layer.mlp
        assert type(mlp) is FusedGatedMLP
        assert mlp.hidden_size == 32 and mlp.intermediate_size == 88 and mlp.config is model.config
        assert isinstance(mlp.act_fn, transformers.activations.SiLUActivation)
    # fused float32 error vs a float64 eager run is of the order of eager float32's own error
    eager32 = copy.deepcopy(reference64).float()
    exact = reference64(ids).logits
    err_fused = (model(ids).logits.double() - exact).abs().max().item()
    err_eager = (eager32(ids).logits.double() - exact).abs().max().item()
    assert err_fused <= 4 * err_eager + 1e-6 * exact.abs().max().item(), (err_fused, err_eager)


def test_llama_training_step_gradients_match():
    model = tiny_llama().train()
    ref = copy.deepcopy(model)
    fused_mlp.fuse(model)
    assert model.model.layers[0].mlp.training
    ids = torch.randint(0, 101, (2, 9))
    model(ids, labels=ids).loss.backward()
    ref(ids, labels=ids).loss.backward()
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        assert_close_rel(p.grad, ref_params[name].grad, rel=1e-4)


def test_gpt_neox_mlps_fused():
    """GPT-style model: GPT-NeoX (Pythia), chosen because its MLP is nn.Linear
    (dense_h_to_4h -> GELU -> dense_4h_to_h). GPT-2's MLP uses transformers' Conv1D, whose
    weight is stored transposed (in, out); fusing it would need a transposed copy of every
    weight per call (or different state_dict values), so fuse() skips it and says so: see
    test_gpt2_conv1d_mlps_skipped_and_untouched."""
    torch.manual_seed(0)
    cfg = GPTNeoXConfig(vocab_size=101, hidden_size=32, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=64)
    model = GPTNeoXForCausalLM(cfg)
    ids = torch.randint(0, 101, (3, 10))
    report = check_fused(model, lambda m: m(ids).logits, 2)
    assert [e.name for e in report.fused] == ["gpt_neox.layers.0.mlp", "gpt_neox.layers.1.mlp"]
    assert all(e.kind == "mlp" for e in report.fused) and report.skipped == []
    assert model.gpt_neox.layers[0].mlp.fused_runs == [["dense_h_to_4h", "act", "dense_4h_to_h"]]


def test_gpt2_conv1d_mlps_skipped_and_untouched():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=101, n_embd=32, n_layer=2, n_head=4,
                                       n_positions=64)).eval()
    ids = torch.randint(0, 101, (2, 8))
    ref = model(ids).logits
    modules = dict(model.named_modules())
    _, report = fuse_with_report(model)
    assert report.fused == []
    assert [e.name for e in report.skipped] == ["transformer.h.0.mlp", "transformer.h.1.mlp"]
    assert all("Conv1D" in e.reason for e in report.skipped)
    assert dict(model.named_modules()) == modules
    torch.testing.assert_close(model(ids).logits, ref, rtol=0, atol=0)


def _hf_mlps():
    from transformers.models.clip.modeling_clip import CLIPMLP
    from transformers.models.codegen.modeling_codegen import CodeGenMLP
    from transformers.models.gemma.modeling_gemma import GemmaMLP
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoMLP
    from transformers.models.gptj.modeling_gptj import GPTJMLP
    from transformers.models.mistral.modeling_mistral import MistralMLP
    from transformers.models.siglip.modeling_siglip import SiglipMLP

    T = transformers
    return {
        # name: (module, expected status, needle in the reason)
        "gptj": (GPTJMLP(64, T.GPTJConfig(n_embd=32, activation_function="gelu_new", resid_pdrop=0.0)),
                 "fused", "FusedMLP"),
        # dropout p > 0 after the last layer runs as it is after the fused run
        "codegen": (CodeGenMLP(64, T.CodeGenConfig(n_embd=32, activation_function="gelu_new",
                                                   resid_pdrop=0.1)), "fused", "fc_out"),
        "gpt_neo": (GPTNeoMLP(64, T.GPTNeoConfig(hidden_size=32, activation_function="gelu_new")),
                    "fused", "FusedMLP"),
        "clip_gelu": (CLIPMLP(T.CLIPTextConfig(hidden_size=32, intermediate_size=64, hidden_act="gelu")),
                      "fused", "FusedMLP"),
        "clip_quick_gelu": (CLIPMLP(T.CLIPTextConfig(hidden_size=32, intermediate_size=64,
                                                     hidden_act="quick_gelu")),
                            "skipped", "QuickGELUActivation) is an unsupported activation"),
        "siglip": (SiglipMLP(T.SiglipVisionConfig(hidden_size=32, intermediate_size=64)), "fused", "FusedMLP"),
        "mistral": (MistralMLP(T.MistralConfig(hidden_size=32, intermediate_size=64)), "fused", "silu"),
        "gemma": (GemmaMLP(T.GemmaConfig(hidden_size=32, intermediate_size=64)), "fused", "gelu_tanh"),
    }


@pytest.mark.parametrize("name", list(_hf_mlps()))
def test_transformers_mlp_blocks(name):
    torch.manual_seed(0)
    mlp, status, needle = _hf_mlps()[name]
    holder = nn.Module()
    holder.mlp = mlp.eval()
    x = torch.randn(2, 5, 32)
    ref = mlp(x)
    before = snapshot(holder)
    _, report = fuse_with_report(holder)
    (entry,) = report.entries
    assert entry.status == status and needle in entry.reason, entry
    assert isinstance(holder.mlp, FusedMLP) == (status == "fused")
    assert_same_state(before, holder)
    assert_close_rel(holder.mlp(x), ref)


# --- timm --------------------------------------------------------------------------------

def tiny_vit(**kw):
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                             num_classes=10, **kw)


@pytest.mark.parametrize("kw, kind", [({}, FusedMLP), ({"mlp_layer": SwiGLU}, FusedGatedMLP)],
                         ids=["mlp", "swiglu"])
def test_timm_vit_fused(kw, kind):
    model = tiny_vit(**kw)
    x = torch.randn(2, 3, 32, 32)
    report = check_fused(model, lambda m: m(x), 2, kind=kind)
    assert [e.name for e in report.fused] == ["blocks.0.mlp", "blocks.1.mlp"] and report.skipped == []
    mlp = model.blocks[0].mlp
    if kind is FusedMLP:
        assert mlp.fused_runs == [["fc1", "act", "drop1", "norm", "fc2", "drop2"]]
    else:
        assert isinstance(mlp.norm, nn.Identity)  # timm attribute access still works


@pytest.mark.parametrize("kw, needle", [
    ({"act_layer": QuickGELU}, "'act' (QuickGELU) is an unsupported activation"),
    ({"proj_drop_rate": 0.1}, "'drop1' (Dropout(p=0.1)) has p > 0"),
    ({"scale_mlp_norm": True}, "'norm' (LayerNorm) is not an activation"),
    ({"mlp_layer": GluMlp, "act_layer": nn.SiLU}, "fc1 holds the gate and value halves"),
], ids=["quick_gelu", "dropout", "norm", "glu_mlp"])
def test_timm_vit_skips_reported(kw, needle):
    model = tiny_vit(**kw).eval()
    x = torch.randn(2, 3, 32, 32)
    ref = model(x)
    before = snapshot(model)
    mlp_types = [type(b.mlp) for b in model.blocks]
    _, report = fuse_with_report(model)
    assert report.fused == []
    assert [e.name for e in report.skipped] == ["blocks.0.mlp", "blocks.1.mlp"]
    assert all(needle in e.reason for e in report.skipped), str(report)
    assert [type(b.mlp) for b in model.blocks] == mlp_types and issubclass(mlp_types[0], (Mlp, GluMlp))
    assert_same_state(before, model)
    torch.testing.assert_close(model(x), ref, rtol=0, atol=0)


def test_timm_vit_mixed_blocks_and_report_text():
    """One model with a fusable block and a skipped one (dropout p > 0 inside its Mlp)."""
    model = tiny_vit()
    model.blocks[1].mlp = Mlp(32, 128, act_layer=nn.GELU, drop=0.1)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    report = check_fused(model, lambda m: m(x), 1)
    assert type(model.blocks[0].mlp) is FusedMLP and type(model.blocks[1].mlp) is Mlp
    text = str(model.fused_mlp_report)
    assert "1 fused, 1 skipped" in text and "blocks.1.mlp" in text and "p > 0" in text
