"""Model files through the Rust reader/writer: the safety cases of ``sf.save`` / ``sf.load``, and
``sparseflow convert`` output loaded by ``sf.load`` (layer by layer equal to ``from_dense``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy
import pytest
import torch
from torch import nn

import sparseflow as sf
from conftest import tiny_llama

transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")

ROOT = Path(__file__).resolve().parents[2]




def small_model():
    return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4), nn.LayerNorm(4))


def saved(tmp_path, name="m"):
    model, _ = sf.sparsify(small_model(), exclude=())
    return sf.save(model, tmp_path / name), model


def edit_manifest(path: Path, edit) -> None:
    manifest = json.loads((path / "sparseflow.json").read_text())
    edit(manifest)
    (path / "sparseflow.json").write_text(json.dumps(manifest))


def test_force_replaces_only_sparseflow_models(tmp_path):
    path, model = saved(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("precious")
    with pytest.raises(FileExistsError, match="not a SparseFlow model directory"):
        sf.save(model, project, force=True)
    assert (project / "train.py").read_text() == "precious"
    sf.save(model, path, force=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sft-")]


def test_long_names_and_current_directory(tmp_path):
    model, _ = sf.sparsify(small_model(), exclude=())
    sf.save(model, tmp_path / ("x" * 250))
    sf.save(model, tmp_path / ("x" * 250), force=True)
    here = os.getcwd()
    try:
        os.chdir(tmp_path / ("x" * 250))
        sf.save(model, ".", force=True)  # replacing the working directory keeps us inside it
        assert Path(os.getcwd()).name == "x" * 250 and Path("sparseflow.json").is_file()
    finally:
        os.chdir(here)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(aliases={"2.bias": "0.bias"}), "an alias may not overwrite it"),
        (lambda m: m.update(aliases={"0.meta": "2.bias"}), "overwrites a tensor of sparse layer `0`"),
        (lambda m: m.update(extra=1), "key `extra`: unknown key"),
        (lambda m: m["layers"]["0"].update(shape="big"), "key `layers.0.shape`"),
        (lambda m: m.update(layers=[]), "key `layers`: expected an object"),
        (lambda m: m.update(format_version=2), "format_version 2 is not supported"),
    ],
)
def test_manifest_is_validated(tmp_path, edit, message):
    path, _ = saved(tmp_path)
    edit_manifest(path, edit)
    with pytest.raises(ValueError, match=message):
        sf.load(path, small_model())


def test_deeply_nested_manifest_is_a_value_error(tmp_path):
    path, _ = saved(tmp_path)
    (path / "sparseflow.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match="invalid JSON"):
        sf.load_state_dict(path)


def test_fused_activation_must_name_that_activation(tmp_path):
    path, _ = saved(tmp_path)
    edit_manifest(path, lambda m: m["layers"]["0"].update(fused_activation="3"))
    with pytest.raises(ValueError, match="is a LayerNorm, not the relu activation"):
        sf.load(path, small_model())


def test_readers_stay_inside_and_read_regular_files(tmp_path):
    path, _ = saved(tmp_path)
    names = list(sf.load_state_dict(path)[0])
    (path / "model.safetensors").rename(path / "shard.safetensors")
    shutil.copy(path / "shard.safetensors", tmp_path / "outside.safetensors")
    for shard, message in [
        (str(tmp_path / "outside.safetensors"), "an absolute path"),
        ("../outside.safetensors", "`..` in the name"),
        ("gone.safetensors", "shard `gone.safetensors`"),
    ]:
        (path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))
        with pytest.raises(ValueError, match=message):
            sf.load_state_dict(path)
    os.remove(path / "shard.safetensors")
    os.mkfifo(path / "shard.safetensors")
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {n: "shard.safetensors" for n in names}})
    )
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="a FIFO, not a regular file"):
        sf.load_state_dict(path)
    assert time.monotonic() - t0 < 5


def sparseflow_cli() -> str:
    """The CLI these tests drive: $SPARSEFLOW_BIN, else the workspace's debug build (built with
    cargo when missing). Where neither exists (the GPU machine carries no toolchain), skip."""
    if os.environ.get("SPARSEFLOW_BIN"):
        return os.environ["SPARSEFLOW_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    exe = target / "debug" / "sparseflow"
    if not exe.exists():
        if shutil.which("cargo") is None:
            pytest.skip("needs the sparseflow CLI: set SPARSEFLOW_BIN or install cargo")
        subprocess.run(["cargo", "build", "-q", "-p", "sparseflow-cli"], cwd=ROOT, check=True)
    return str(exe)


def convert(src: Path, out: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sparseflow_cli(), "convert", str(src), "-o", str(out), "--json", *extra],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_convert_then_load_matches_from_dense(tmp_path):
    dense = tiny_llama(torch.float16)
    dense.save_pretrained(tmp_path / "hf", max_shard_size="100KB")  # sharded, with index
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    report = convert(tmp_path / "hf", tmp_path / "sf")
    assert report["totals"]["sparse_layers"] == 14
    loaded = sf.load(tmp_path / "sf", tiny_llama(torch.float16))
    for name, module in dense.named_modules():
        if isinstance(module, nn.Linear) and ".layers." in name:
            want = sf.SparseLinear.from_dense(module)
            got = loaded.get_submodule(name)
            assert torch.equal(got.values, want.values) and torch.equal(got.meta, want.meta), name
    assert torch.equal(loaded.lm_head.weight, dense.lm_head.weight)
    rebuilt = sf.load(tmp_path / "sf")  # from the converted config.json
    ids = torch.randint(0, 128, (1, 5))
    with torch.no_grad():
        assert torch.equal(rebuilt(ids).logits, loaded(ids).logits)


def bitmask_checkpoint(weights: dict) -> dict:
    """compressed-tensors `Sparse24BitMaskTensor.dict` of each weight, written the way the
    package does (topk mask, boolean-index values, numpy.packbits little, shape [2, 1])."""
    out = {}
    for name, w in weights.items():
        rows, cols = w.shape
        groups = w.reshape(-1, 4)
        mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, groups.abs().topk(2, dim=1).indices, True)
        mask = mask.reshape(rows, cols)
        prefix = name[: -len(".weight")]
        out[f"{prefix}.compressed"] = w[mask].reshape(rows, cols // 2)
        out[f"{prefix}.bitmask"] = torch.from_numpy(numpy.packbits(mask.numpy(), axis=-1, bitorder="little"))
        out[f"{prefix}.shape"] = torch.tensor([rows, cols]).reshape(-1, 1)
    return out


def test_sparse_24_bitmask_imports_bit_exact(tmp_path):
    from safetensors.torch import save_file

    from conftest import exact_24_weight

    model = tiny_llama(torch.bfloat16)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    targets = {k: exact_24_weight(*v.shape, dtype=torch.bfloat16, seed=i) for i, (k, v) in enumerate(state.items()) if ".layers." in k and v.dim() == 2}
    for k in targets:
        del state[k]
    state.update(bitmask_checkpoint(targets))
    src = tmp_path / "ct"
    src.mkdir()
    save_file(state, str(src / "model.safetensors"))
    config = model.config.to_dict()
    config["quantization_config"] = {
        "quant_method": "compressed-tensors",
        "format": "dense",
        "sparsity_config": {"format": "sparse-24-bitmask", "sparsity_structure": "2:4", "targets": ["Linear"], "ignore": ["lm_head"]},
    }
    (src / "config.json").write_text(json.dumps(config))
    report = convert(src, tmp_path / "sf")
    assert {r["status"] for r in report["rows"] if r["name"] in targets} == {"imported"}
    assert all(r["rel_error"] == 0 for r in report["rows"] if r["name"] in targets)
    state, _ = sf.load_state_dict(tmp_path / "sf")
    for name, w in targets.items():
        p = name[: -len(".weight")]
        assert torch.equal(sf.decompress(state[f"{p}.values"], state[f"{p}.meta"]), w), name
    assert "quantization_config" not in json.loads((tmp_path / "sf" / "config.json").read_text())
