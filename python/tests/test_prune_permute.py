"""sf.sparsify(permute=True): model-wide zero-cost channel permutations (Llama-style gated
MLPs and grouped-query attention), and the block-by-block calibration fast path."""

from __future__ import annotations

import pytest
import torch

import sparseflow as sf
from sparseflow import calibrate
from sparseflow.permutation import apply_permutations, find_sites

transformers = pytest.importorskip("transformers")


def tiny_llama(seed: int = 0) -> torch.nn.Module:
    """2 layers, 4 query heads sharing 2 value heads (GQA), head_dim 8, fp32, random weights."""
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # heavier-tailed weights than the init, so masks differ by method
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(torch.exp(0.5 * torch.randn_like(p)))
    return model


def token_batches(n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 64, (2, 16), generator=g)} for _ in range(n)]


def logits(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch, use_cache=False).logits


def test_sites_are_recognised_and_permutations_are_exact() -> None:
    model = tiny_llama()
    sites = find_sites(model)
    kinds = {(s.kind, s.consumer) for s in sites}
    assert ("mlp", "model.layers.0.mlp.down_proj") in kinds
    assert ("attention", "model.layers.1.self_attn.o_proj") in kinds
    attn = next(s for s in sites if s.kind == "attention")
    assert attn.heads == (4, 2, 8) and attn.producers == ["model.layers.0.self_attn.v_proj"]
    test = token_batches(1, 9)[0]
    before = logits(model, test)
    notes = apply_permutations(model, sites, lambda: [logits(model, b) for b in token_batches(2, 1)])
    assert "model.layers.0.self_attn.v_proj" in notes and "moved" in notes["model.layers.1.mlp.down_proj"]
    assert torch.allclose(logits(model, test), before, atol=1e-5, rtol=1e-4)


def test_permute_attention_values_checks_and_gqa() -> None:
    model = tiny_llama()
    attn = model.model.layers[0].self_attn
    perms = torch.stack([torch.randperm(8) for _ in range(2)])
    test = token_batches(1, 3)[0]
    before = logits(model, test)
    sf.permute_attention_values(attn.v_proj, attn.o_proj, perms, num_heads=4)
    assert torch.allclose(logits(model, test), before, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="permutation of 0..head_dim"):
        sf.permute_attention_values(attn.v_proj, attn.o_proj, torch.zeros(2, 8, dtype=torch.int64), num_heads=4)
    with pytest.raises(ValueError, match="num_heads"):
        sf.permute_attention_values(attn.v_proj, attn.o_proj, perms, num_heads=3)


def test_sparsify_permute_reports_and_does_not_lose_accuracy() -> None:
    cal, test = token_batches(4, 1), token_batches(1, 2)[0]
    ref = logits(tiny_llama(), test)
    errors = {}
    for permute in (False, True):
        model, report = sf.sparsify(tiny_llama(), method="wanda", calibration=cal, permute=permute, progress=False)
        errors[permute] = float((logits(model, test) - ref).norm() / ref.norm())
        rows = {r.name: r for r in report}
        if permute:
            assert "within each head" in rows["model.layers.0.self_attn.o_proj"].permutation
            assert "rows of gate_proj, up_proj" in rows["model.layers.1.mlp.down_proj"].permutation
            assert rows["model.layers.1.mlp.up_proj"].permutation.startswith("output rows permuted")
            assert "within each head" in str(report)
        else:
            assert all(r.permutation is None for r in report)
    assert errors[True] <= errors[False], errors


def test_permute_without_calibration_is_exact_before_pruning() -> None:
    model = tiny_llama()
    test = token_batches(1, 4)[0]
    before = logits(model, test)
    apply_permutations(model, find_sites(model), None)
    assert torch.allclose(logits(model, test), before, atol=1e-5, rtol=1e-4)
    _, report = sf.sparsify(tiny_llama(), permute=True)
    assert report["model.layers.0.mlp.down_proj"].permutation


def test_block_fast_path_matches_full_model_capture(monkeypatch) -> None:
    cal = token_batches(4, 5)
    _, fast = sf.sparsify(tiny_llama(), method="sparsegpt", calibration=cal, progress=False)
    monkeypatch.setattr(calibrate, "_find_blocks", lambda model, pending: [])
    _, slow = sf.sparsify(tiny_llama(), method="sparsegpt", calibration=cal, progress=False)
    for a, b in zip(fast, slow):
        assert a.name == b.name and a.status == b.status
        if "heldout_rel_error" in a.diff:
            assert a.diff["heldout_rel_error"] == pytest.approx(b.diff["heldout_rel_error"], rel=1e-3, abs=1e-5)


def test_bert_layers_are_recognised_and_exact() -> None:
    torch.manual_seed(0)
    cfg = transformers.BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64
    )
    model = transformers.BertModel(cfg).eval()
    sites = {(s.kind, s.consumer): s for s in find_sites(model)}
    assert sites[("attention", "encoder.layer.1.attention.output.dense")].heads == (4, 4, 8)
    assert sites[("mlp", "encoder.layer.0.output.dense")].producers == ["encoder.layer.0.intermediate.dense"]
    ids = {"input_ids": torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        before = model(**ids).last_hidden_state
        apply_permutations(model, list(sites.values()), lambda: model(**ids))
        assert torch.allclose(model(**ids).last_hidden_state, before, atol=1e-5, rtol=1e-4)


class NotGated(torch.nn.Module):
    """gate_proj/up_proj/down_proj, but the gate's output is also added: not a site."""

    def __init__(self) -> None:
        super().__init__()
        self.gate_proj, self.up_proj = torch.nn.Linear(8, 16), torch.nn.Linear(8, 16)
        self.down_proj, self.act_fn = torch.nn.Linear(16, 8), torch.nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.gate_proj(x)
        return self.down_proj(self.act_fn(g) * self.up_proj(x) + g)


def test_unrecognised_structures_are_left_alone() -> None:
    assert find_sites(NotGated()) == []
    _, report = sf.sparsify(torch.nn.Sequential(NotGated()), permute=True)
    assert all(r.permutation is None for r in report)
