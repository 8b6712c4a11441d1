"""sparsify on a small transformers Llama built from a config (no download)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import sparseflow as sf
from conftest import magnitude_prune, tiny_llama

transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")




def pruned_dense(model: nn.Module, report: sf.SparsifyReport) -> nn.Module:
    """The reference: the same model with the sparsified layers' weights pruned, left dense."""
    for row in report.sparsified:
        lin = model.get_submodule(row.name)
        with torch.no_grad():
            lin.weight.copy_(magnitude_prune(lin.weight))
    return model


def test_sparsify_llama_report_and_outputs():
    model = tiny_llama()
    reference = pruned_dense(tiny_llama(), sf.sparsify(tiny_llama())[1])
    model, report = sf.sparsify(model)
    linears = [n for n, m in tiny_llama().named_modules() if isinstance(m, nn.Linear)]
    assert [r.name for r in report] == linears  # one row per nn.Linear, in model order
    assert report["lm_head"].status == "skipped" and "exclude" in report["lm_head"].reason
    assert len(report.sparsified) == 2 * 7
    for row in report.sparsified:
        assert isinstance(model.get_submodule(row.name), sf.SparseLinear)
        assert row.diff["sparsity"] >= 0.5 and 0 < row.diff["kept_magnitude"] <= 1
    fused = {r.name: r.fused for r in report.fused}
    assert fused == {f"model.layers.{i}.mlp.gate_proj": f"model.layers.{i}.mlp.act_fn" for i in range(2)}
    assert report["model.layers.0.mlp.gate_proj"].epilogue == "silu"
    assert isinstance(model.model.layers[0].mlp.act_fn, nn.Identity)
    ids = torch.randint(0, 128, (2, 7))
    with torch.no_grad():
        got, want = model(ids).logits, reference(ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    text = str(report)
    assert "model.layers.1.mlp.down_proj" in text and "14 of 15 linear layers sparsified" in text
    data = json.loads(report.to_json())
    assert len(data["layers"]) == 15 and data["summary"]["fused"] == 2


def test_sparsify_include_exclude_and_no_fuse():
    model, report = sf.sparsify(tiny_llama(), include=["*.mlp.*"], exclude=["down_proj"], fuse=False)
    status = {r.name: (r.status, r.reason) for r in report}
    assert status["model.layers.0.self_attn.q_proj"] == ("skipped", "not matched by include")
    assert (
        status["model.layers.0.mlp.down_proj"][0] == "skipped"
        and "down_proj" in status["model.layers.0.mlp.down_proj"][1]
    )
    assert status["model.layers.0.mlp.gate_proj"][0] == "sparsified"
    assert not report.fused and not isinstance(model.model.layers[0].mlp.act_fn, nn.Identity)


def test_sparsify_sequential_fusion_and_unaligned_skip():
    model = nn.Sequential(
        nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10), nn.GELU(approximate="tanh"), nn.Linear(10, 4)
    )
    x = torch.randn(3, 16)
    ref = nn.Sequential(*[m for m in model])  # same modules, pruned below for the reference
    model, report = sf.sparsify(model, exclude=())
    assert [r.fused for r in report] == ["1", "3", None]
    assert [r.epilogue for r in report] == ["bias_relu", "bias_gelu_tanh", None]
    assert report["4"].status == "skipped" and "in_features = 10 is not a multiple of 4" in report["4"].reason
    with torch.no_grad():
        h = torch.relu(x @ model[0].to_dense().T + model[0].bias)
        h = torch.nn.functional.gelu(h @ model[2].to_dense().T + model[2].bias, approximate="tanh")
        want = model[4](h)
    torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-5)
    del ref


def test_save_load_round_trip(tmp_path):
    model, _ = sf.sparsify(tiny_llama(torch.float16))
    ids = torch.randint(0, 128, (1, 5))
    with torch.no_grad():
        want = model(ids).logits
    path = sf.save(model, tmp_path / "sparse")
    manifest = json.loads((path / "sparseflow.json").read_text())
    assert manifest["format"] == "sparseflow" and manifest["format_version"] == 1
    layer = manifest["layers"]["model.layers.0.mlp.gate_proj"]
    assert layer["shape"] == [128, 64] and layer["dtype"] == "float16" and layer["epilogue"] == "silu"
    assert set(layer["diff"]) >= {"max_error", "rel_fro_error", "bytes_sparse"}
    state, _ = sf.load_state_dict(path)
    assert "model.layers.0.mlp.gate_proj.values" in state and "model.layers.0.mlp.gate_proj.weight" not in state
    assert state["model.layers.0.mlp.gate_proj.meta"].dtype == torch.uint8
    loaded = sf.load(path, tiny_llama(torch.float16))  # a fresh dense skeleton
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, want)
    rebuilt = sf.load(path)  # rebuilt from config.json
    with torch.no_grad():
        assert torch.equal(rebuilt(ids).logits, want)
    with pytest.raises(FileExistsError, match="force=True"):
        sf.save(model, path)
    sf.save(model, path, force=True)
    manifest["format_version"] = 2
    (path / "sparseflow.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format_version 2 is not supported"):
        sf.load(path, tiny_llama(torch.float16))
