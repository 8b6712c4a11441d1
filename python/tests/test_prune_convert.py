"""`sparseflow convert --method sparsegpt --calibration FILE` end to end: a tiny HF checkpoint
and an activations file written by the Python helper; the output loads with sf.load and
keeps more than magnitude on held-out activations; a tokens file is a clear error."""

from __future__ import annotations

import math
import subprocess

import pytest
import torch
from torch import nn

import sparseflow as sf
from sparseflow.calibration_file import capture_activations, write_calibration_from_model, write_calibration_tokens

transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from conftest import tiny_llama  # noqa: E402
from test_io import sparseflow_cli  # noqa: E402


def batches(n: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(0, 128, (2, 24), generator=g)} for _ in range(n)]


def llama_with_outlier_channels() -> nn.Module:
    """The tiny Llama with heavy-tailed norm weights, so layer inputs have the non-isotropic
    channel scales of real LLMs (random init alone gives near-isotropic activations, where
    every method keeps about the same)."""
    model = tiny_llama(torch.float32)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.copy_(torch.exp(0.8 * torch.randn(p.shape, generator=g)))
    return model


def held_out_errors(dense: nn.Module, loaded: nn.Module, acts: dict) -> dict:
    out = {}
    for name, x in acts.items():
        if ".layers." not in name:
            continue
        w = dense.get_submodule(name).weight.detach().float()
        wp = loaded.get_submodule(name).to_dense().float()
        out[name] = float((x @ (w - wp).T).norm() / (x @ w.T).norm())
    return out


def test_convert_sparsegpt_from_activations_beats_magnitude(tmp_path) -> None:
    dense = llama_with_outlier_channels()
    dense.save_pretrained(tmp_path / "hf")
    cal = str(tmp_path / "cal.safetensors")
    write_calibration_from_model(cal, dense, batches(8, 1), include=[".layers."])
    held = capture_activations(dense, batches(2, 2), include=[".layers."])
    errors = {}
    for method in ("magnitude", "sparsegpt"):
        extra = ["--calibration", cal] if method != "magnitude" else []
        done = subprocess.run(
            [sparseflow_cli(), "convert", str(tmp_path / "hf"), "-o", str(tmp_path / method), "--dtype", "fp16",
             "--quiet", "--method", method, *extra],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        loaded = sf.load(tmp_path / method, tiny_llama(torch.float16))
        assert loaded.model.layers[0].mlp.down_proj.method == method
        errs = held_out_errors(dense, loaded, held)
        assert len(errs) == 14
        errors[method] = sum(errs.values()) / len(errs)
    assert errors["sparsegpt"] < 0.8 * errors["magnitude"], errors
    assert all(math.isfinite(e) for e in errors.values())


def test_convert_calibration_errors_are_clear(tmp_path) -> None:
    dense = tiny_llama(torch.float32)
    dense.save_pretrained(tmp_path / "hf")

    def run(*extra: str) -> str:
        done = subprocess.run(
            [sparseflow_cli(), "convert", str(tmp_path / "hf"), "-o", str(tmp_path / "out"), "--dtype", "fp16",
             "--quiet", *extra],
            capture_output=True, text=True,
        )
        assert done.returncode != 0
        return done.stderr

    assert "pass --calibration FILE" in run("--method", "wanda")
    tokens = str(tmp_path / "tokens.safetensors")

    class Tok:
        name_or_path = "toy"

        def __call__(self, texts, **_kw):
            return {"input_ids": torch.ones(len(texts), 3, dtype=torch.int64),
                    "attention_mask": torch.ones(len(texts), 3, dtype=torch.int64)}

    write_calibration_tokens(tokens, ["a b c", "d e f"], Tok())
    assert "write_calibration_from_model" in run("--method", "sparsegpt", "--calibration", tokens)
    partial = str(tmp_path / "partial.safetensors")
    write_calibration_from_model(partial, dense, batches(1, 3), include=["layers.0.self_attn"])
    err = run("--method", "sparsegpt", "--calibration", partial)
    assert "no activations for layer `model.layers.0.mlp" in err or "no activations for layer" in err, err
    assert "only read by" in run("--method", "magnitude", "--calibration", partial)
    # The helper turns that tokens file into activations convert reads.
    acts = write_calibration_from_model(str(tmp_path / "acts.safetensors"), dense, tokens, include=[".layers."])
    assert acts["model.layers.1.mlp.down_proj"].shape == (6, 128)
