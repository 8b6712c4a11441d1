"""Projection fusion (``sf.sparsify(..., fuse_projections=True)``, ``sf.fuse_projections``): a
gated MLP's gate_proj and up_proj as one 2:4 GEMM, on small transformers models built from a
config (no download).

Tolerances, CPU reference: every output element is one row's dot product with fp32
accumulation whatever N is, so the fused GEMM gives the unfused layers' outputs bit for bit.
Against a model whose gate_proj fused silu into its epilogue the only difference is where silu
runs (on the fp32 accumulator there, on the rounded output here): float32 within 1e-5."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from torch import nn

import sparseflow as sf
from conftest import tiny_llama

transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")

IDS = torch.randint(0, 128, (2, 7), generator=torch.Generator().manual_seed(0))


def logits(model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS, use_cache=False).logits


def tiny_qwen2() -> nn.Module:
    """A 2-layer Qwen2 (q/k/v with biases) with random weights."""
    config = transformers.Qwen2Config(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.Qwen2ForCausalLM(config).eval()


@pytest.mark.parametrize(
    "build, dtype",
    [(tiny_llama, torch.float32), (tiny_llama, torch.bfloat16), (tiny_qwen2, torch.float32)],
    ids=["llama-fp32", "llama-bf16", "qwen2-qkv-bias"],
)
def test_fused_equals_unfused(build, dtype) -> None:
    unfused, _ = sf.sparsify(build().to(dtype), fuse=False, progress=False)
    fused, report = sf.sparsify(build().to(dtype), fuse=False, fuse_projections=True, progress=False)
    assert isinstance(fused.model.layers[0].mlp, sf.FusedGatedMLP)
    assert fused.model.layers[0].self_attn.q_proj.bias is not None or build is tiny_llama
    assert torch.equal(logits(fused), logits(unfused))  # same rows, same accumulation
    # With silu fused into gate_proj's epilogue (the default), fusing moves silu after the GEMM.
    epilogue_silu, _ = sf.sparsify(build().to(dtype), progress=False)
    fused_after, _ = sf.fuse_projections(copy.deepcopy(epilogue_silu))
    if dtype == torch.float32:
        torch.testing.assert_close(logits(fused_after), logits(epilogue_silu), rtol=1e-5, atol=1e-5)


def test_mlp_bias_is_stacked() -> None:
    model, report = sf.sparsify(tiny_llama(mlp_bias=True), fuse_projections=True, progress=False)
    reference, _ = sf.sparsify(tiny_llama(mlp_bias=True), progress=False)
    fused = model.model.layers[0].mlp.gate_up_proj
    assert fused.epilogue == "bias" and fused.bias.shape == (256,)
    torch.testing.assert_close(logits(model), logits(reference), rtol=1e-5, atol=1e-5)


def test_report_lists_every_group() -> None:
    model, report = sf.sparsify(tiny_llama(), fuse_projections=True, progress=False)
    assert [g.status for g in report.groups] == ["fused", "fused"]
    g = report.groups[0]
    assert g.module == "model.layers.0.mlp.gate_up_proj"
    assert g.members == ["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"]
    assert (g.in_features, g.out_features, g.splits) == (64, 256, [128, 128])
    gate = report["model.layers.0.mlp.gate_proj"]
    assert gate.note == "one GEMM with up_proj as model.layers.0.mlp.gate_up_proj, act_fn (silu) after it"
    assert gate.fused is None and gate.epilogue == "none"  # the activation left the epilogue
    assert report.summary()["fused_groups"] == 2
    text = str(report)
    assert "fused model.layers.1.mlp.gate_up_proj: gate_proj + up_proj as one GEMM, [256, 64] [128, 128]" in text
    assert json.loads(report.to_json())["groups"][1]["status"] == "fused"
    assert not sf.sparsify(tiny_llama(), progress=False)[1].groups  # off by default


def test_save_load_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Files and state_dicts hold the unfused names: loadable by anything, fusable again."""
    model, _ = sf.sparsify(tiny_llama(), fuse_projections=True, progress=False)
    unfused, _ = sf.sparsify(tiny_llama(), progress=False)
    want = logits(model)
    state = model.state_dict()
    assert state.keys() == unfused.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in unfused.state_dict().items())
    path = sf.save(model, tmp_path / "fused")
    manifest = json.loads((path / "sparseflow.json").read_text())
    plain = sf.save(unfused, tmp_path / "plain")
    assert manifest["layers"] == json.loads((plain / "sparseflow.json").read_text())["layers"]
    loaded = sf.load(path, tiny_llama())  # the unfused sparse model
    torch.testing.assert_close(logits(loaded), want, rtol=1e-5, atol=1e-5)
    refused, groups = sf.fuse_projections(loaded)
    assert [g.status for g in groups] == ["fused", "fused"]
    torch.testing.assert_close(logits(refused), want, rtol=0, atol=0)
    other, _ = sf.sparsify(tiny_llama(), fuse_projections=True, progress=False)
    for layer in other.model.layers:
        layer.mlp.gate_up_proj.values.zero_()
    other.load_state_dict(state)  # the unfused names, stacked into the fused layer
    assert torch.equal(logits(other), want)


class _OtherMLP(nn.Module):
    """Same children as a Llama MLP, another forward: must not be fused."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(16, 32), nn.Linear(16, 32), nn.Linear(32, 16)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) + self.up_proj(x))


def test_refusals() -> None:
    _, report = sf.sparsify(tiny_llama(), exclude=("lm_head", "up_proj"), fuse_projections=True, progress=False)
    assert [g.status for g in report.groups] == ["refused", "refused"]
    assert report.groups[0].reason == "up_proj is a Linear, not a SparseLinear (left dense?)"
    assert "not fused into model.layers.0.mlp.gate_up_proj" in report["model.layers.0.mlp.gate_proj"].note
    assert report["model.layers.0.mlp.gate_proj"].epilogue == "silu"  # left as sparsify made it

    model, report = sf.sparsify(_OtherMLP(), exclude=(), fuse_projections=True, progress=False)
    assert isinstance(model, _OtherMLP) and "is not exactly down_proj" in report.groups[0].reason

    model, _ = sf.sparsify(tiny_llama(), progress=False)
    mlp = model.model.layers[0].mlp
    mlp.up_proj = mlp.up_proj.to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"differ in dtype \(gate_proj torch.float32, up_proj torch.bfloat16\)"):
        sf.FusedGatedMLP.from_mlp(mlp)
    mlp = model.model.layers[1].mlp
    mlp.gate_proj.register_forward_hook(lambda *_: None)
    with pytest.raises(ValueError, match="gate_proj has hooks"):
        sf.FusedGatedMLP.from_mlp(mlp)


def test_mlp_hooks_move_to_the_fused_module() -> None:
    model = tiny_llama()
    seen = []
    model.model.layers[0].mlp.register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
    model, _ = sf.sparsify(model, fuse_projections=True, progress=False)
    logits(model)
    assert seen == ["FusedGatedMLP"]


@pytest.mark.parametrize("fuse_projections", [False, True], ids=["sparse", "fused"])
def test_torch_compile_no_graph_break(fuse_projections: bool) -> None:
    """No graph break from SparseFlow in a whole transformers model: dynamo's explain finds one
    graph, and fullgraph compilation (aot_eager: the op's fake kernel and functionalization,
    without the C++ compile) computes the eager logits."""
    if not hasattr(torch, "compile") or not hasattr(torch, "_dynamo"):
        pytest.skip("torch.compile is not available in this torch")
    model, _ = sf.sparsify(tiny_llama(), fuse_projections=fuse_projections, progress=False)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(model)(IDS, use_cache=False)
    assert explained.graph_break_count == 0, [str(r.reason) for r in explained.break_reasons]
    assert explained.graph_count == 1
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        got = compiled(IDS, use_cache=False).logits
    torch.testing.assert_close(got, logits(model), rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


def test_inductor_fuses_the_activation_and_product() -> None:
    """Inductor compiles the fused MLP into the op plus ONE elementwise kernel holding the
    split, silu and the product (CPU codegen: a C++ compiler; ~15 s cold, ~2 s from its cache)."""
    from torch._inductor.utils import run_and_get_code

    model, _ = sf.sparsify(tiny_llama(), fuse_projections=True, progress=False)
    mlp = model.model.layers[0].mlp
    x = torch.randn(2, 3, 64)
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            got, code = run_and_get_code(torch.compile(mlp, fullgraph=True), x)
    except Exception as e:  # no C++ toolchain for Inductor's CPU backend
        if "compiler" in str(e).lower() or "InvalidCxxCompiler" in type(e).__name__:
            pytest.skip(f"Inductor's CPU backend cannot compile here: {e}")
        raise
    finally:
        torch._dynamo.reset()
    torch.testing.assert_close(got, mlp(x), rtol=1e-5, atol=1e-5)
    source = "\n".join(code)
    kernels = set(re.findall(r"\b(cpp_fused_\w+)\s*\(", source))
    assert len(kernels) == 1, kernels
    (name,) = kernels
    assert all(op in name for op in ("mul", "silu", "split")), name
