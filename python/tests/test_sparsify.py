"""sparsify on a small transformers Llama built from a config (no download)."""

from __future__ import annotations

import json
import sys

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


class _Reordered(nn.Sequential):
    """Applies its children in its own order: the activation runs before the layer."""

    def forward(self, x):  # noqa: ANN001, ANN201
        return self[0](self[1](x))


class _ScaledLinear(nn.Linear):
    def forward(self, x):  # noqa: ANN001, ANN201
        return 2.0 * super().forward(x)


def test_sparsify_keeps_what_the_model_computes() -> None:
    """Issue 25: fusion only where the order is provable, Linear subclasses with their own
    forward left alone, hooks kept, a bare nn.Linear converted, Conv1D and parent-applied
    activations reported with a reason."""
    torch.manual_seed(0)
    x = torch.randn(3, 16)
    # A Sequential subclass with its own forward: not fused, same function as the pruned model.
    model = _Reordered(nn.Linear(16, 16), nn.ReLU())
    reference = model[0](model[1](x))
    model, report = sf.sparsify(model)
    assert report["0"].status == "sparsified" and report["0"].fused is None
    assert "overrides nn.Sequential.forward" in report["0"].note
    assert isinstance(model[1], nn.ReLU), "the activation module stays"
    assert torch.allclose(model(x), torch.relu(x) @ model[0].to_dense().T + model[0].bias, atol=1e-5)
    assert reference.shape == model(x).shape
    # An nn.Linear subclass that overrides forward: skipped, reason given, output unchanged.
    scaled = nn.Sequential(_ScaledLinear(16, 8))
    before = scaled(x)
    scaled, report = sf.sparsify(scaled)
    assert report["0"].status == "skipped" and "own forward" in report["0"].reason
    assert torch.equal(scaled(x), before)
    # Hooks on the layer move to its SparseLinear; an activation with a hook is not fused.
    seen = []
    seq = nn.Sequential(nn.Linear(16, 8), nn.SiLU())
    seq[0].register_forward_hook(lambda m, i, o: seen.append(("linear", type(m).__name__)))
    seq[1].register_forward_hook(lambda m, i, o: seen.append(("act", type(m).__name__)))
    seq, report = sf.sparsify(seq)
    seq(x)
    assert seen == [("linear", "SparseLinear"), ("act", "SiLU")], seen
    assert report["0"].fused is None and "hooks" in report["0"].note
    # A model that is one nn.Linear comes back converted.
    layer, report = sf.sparsify(nn.Linear(8, 4))
    assert isinstance(layer, sf.SparseLinear) and report[""].status == "sparsified"


def test_sparsify_reports_conv1d_and_parent_applied_activations() -> None:
    pytest.importorskip("transformers")
    from transformers import BertConfig, BertModel
    from transformers.pytorch_utils import Conv1D

    model = nn.Sequential(Conv1D(8, 16), nn.Linear(8, 8))
    model, report = sf.sparsify(model)
    assert report["0"].status == "skipped" and "Conv1D" in report["0"].reason
    bert = BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    _, report = sf.sparsify(bert.eval())
    row = report["encoder.layer.0.intermediate.dense"]
    assert row.status == "sparsified" and row.fused is None
    assert "BertIntermediate.forward applies it" in row.note, row.note


def test_non_finite_layer_is_skipped_and_the_rest_converted():
    """The finiteness check runs on the host copy pruning makes (no device temporaries): a
    layer with NaN stays dense with the reason, the others are converted and keep their rows."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    with torch.no_grad():
        model[1].weight[2, 3] = float("nan")
    model, report = sf.sparsify(model, progress=False)
    rows = {r.name: r for r in report.rows}
    assert isinstance(model[1], nn.Linear) and rows["1"].status == "skipped"
    assert rows["1"].reason == "weight contains NaN or Inf"
    for name in ("0", "2"):
        assert isinstance(model[int(name)], sf.SparseLinear) and rows[name].status == "sparsified"
        assert rows[name].epilogue == "bias" and rows[name].diff["sparsity"] == 0.5


# sparsify(device=...) (issue 23): the host model streamed layer by layer onto the device.

_SPARSIFY = sys.modules["sparseflow.sparsify"]  # the module; `sf.sparsify` is the function


def _snapshot(model: nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def test_sparsify_device_cpu_on_a_cpu_model_is_the_in_place_path():
    ids = torch.randint(0, 128, (2, 7))
    want_model, want = sf.sparsify(tiny_llama(torch.float16), progress=False)
    model, report = sf.sparsify(tiny_llama(torch.float16), device="cpu", progress=False)
    assert report.to_list() == want.to_list() and report.device == "cpu" == want.device
    assert "model on cpu" in str(report)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, want_model(ids).logits)


@pytest.mark.parametrize("device", ["gpu", "xla", "meta", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_sparsify_device_is_checked_before_the_model_is_modified(device):
    """A device that is not CUDA or the CPU, or a CUDA device that is not there (no CUDA on
    this machine: "cuda"; with CUDA: an index past the last GPU), is an error before anything
    is converted."""
    model = tiny_llama(torch.float16)
    before = _snapshot(model)
    with pytest.raises((ValueError, RuntimeError), match=f"device={device!r}"):
        sf.sparsify(model, device=device, progress=False)
    assert _unchanged(model, before)
    assert not any(isinstance(m, sf.SparseLinear) for m in model.modules())


def test_sparsify_device_refuses_what_it_cannot_stream(monkeypatch):
    """Calibrated pruning, tp_group and float32 layers bound for CUDA: clear errors naming the
    alternative, the model untouched. (The target is patched to CUDA: no GPU here.)"""
    monkeypatch.setattr(_SPARSIFY, "_target_device", lambda model, device: torch.device("cuda", 0))
    model = tiny_llama(torch.float16)
    before = _snapshot(model)
    ids = torch.randint(0, 128, (1, 8))
    with pytest.raises(NotImplementedError, match=r"magnitude pruning only.*model\.to\('cuda:0'\)"):
        sf.sparsify(model, method="wanda", calibration=[ids], device="cuda", progress=False)
    with pytest.raises(NotImplementedError, match="max_rel_error"):
        sf.sparsify(model, calibration=[ids], max_rel_error=0.5, device="cuda", progress=False)
    with pytest.raises(NotImplementedError, match=r"tp_group=.*then model\.to\('cuda:0'\)"):
        sf.sparsify(model, tp_group=object(), device="cuda", progress=False)
    assert _unchanged(model, before)
    fp32 = tiny_llama(torch.float32)
    before = _snapshot(fp32)
    with pytest.raises(TypeError, match=r"14 layers to convert are float32 .*model\.half\(\)"):
        sf.sparsify(fp32, device="cuda", progress=False)
    assert _unchanged(fp32, before)
    assert not any(isinstance(m, sf.SparseLinear) for m in fp32.modules())


@pytest.mark.parametrize("fuse_projections", [False, True])
def test_sparsify_device_streams_each_layer_then_the_rest(monkeypatch, fuse_projections):
    """The moving path, with the meta device standing in for the GPU (no data, same moves):
    each converted layer lands on the target on its own, while everything not yet converted
    is still on the host, and the rest follows at the end. At every placement the target
    holds only sparse layers, so its peak is the final model (the GPU test measures it)."""
    want_model, want = sf.sparsify(tiny_llama(torch.float16), progress=False, fuse_projections=fuse_projections)
    monkeypatch.setattr(_SPARSIFY, "_target_device", lambda model, device: torch.device("meta"))
    place = sf.SparseLinear._place
    seen = []

    def spy(layer, values, meta, bias, device):
        on_target = [t for t in (*model.parameters(), *model.buffers()) if t.device.type == "meta"]
        seen.append((str(device), len(on_target), sum(isinstance(m, sf.SparseLinear) for m in model.modules())))
        place(layer, values, meta, bias, device)

    monkeypatch.setattr(sf.SparseLinear, "_place", spy)
    model = tiny_llama(torch.float16)
    model, report = sf.sparsify(model, device="cuda", progress=False, fuse_projections=fuse_projections)
    n = len(report.sparsified)
    assert n == 14 and [r.to_dict() for r in report] == [r.to_dict() for r in want]
    assert [g.to_dict() for g in report.groups] == [g.to_dict() for g in want.groups]
    assert report.device == "meta" and report.summary()["device"] == "meta"
    # Layer i is placed when the only tensors on the target are the buffers of the i sparse
    # layers before it and its own installed skeleton (values and meta: a Llama has no bias).
    moved = [s for s in seen if s[0] == "meta"][:n]
    assert [count for _, _, count in moved] == list(range(1, n + 1))
    assert [on_target for _, on_target, _ in moved] == [2 * (i + 1) for i in range(n)]
    assert all(t.device.type == "meta" for t in (*model.parameters(), *model.buffers()))
    assert type(model.model.embed_tokens) is type(want_model.model.embed_tokens)
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in want_model.modules()]
