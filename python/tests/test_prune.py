"""Activation-aware pruning from Python: from_dense(method=..., calibration=X), sf.Calibration,
sequential sf.sparsify(calibration=batches) with held-out errors and max_rel_error,
permutations, and clear errors for bad calibration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import sparseflow as sf

METHODS = ("magnitude", "wanda", "sparsegpt", "sparsegpt-refine")


def correlated(m: int, k: int, seed: int) -> torch.Tensor:
    """Correlated activations with heavy-tailed channel scales (as in crates/core's tests)."""
    g = torch.Generator().manual_seed(seed)
    r = k // 8
    mix = torch.randn(r, k, generator=g) / math.sqrt(r)
    scale = torch.exp(0.6 * torch.randn(k, generator=g))
    scale[torch.rand(k, generator=g) < 0.02] *= 10
    return ((torch.randn(m, r, generator=g) @ mix + 0.5 * torch.randn(m, k, generator=g)) * scale).float()


def held_out_error(w: torch.Tensor, wp: torch.Tensor, x: torch.Tensor) -> float:
    return float((x @ (w - wp).T).norm() / (x @ w.T).norm())


def is_24(w: torch.Tensor) -> bool:
    return bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all())


def test_methods_keep_more_on_correlated_activations() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(128, 64, bias=True)
    x = correlated(768, 128, seed=1)
    cal, held = x[:512], x[512:]
    errors = {}
    for method in METHODS:
        sparse, diff = sf.SparseLinear.from_dense(lin, method=method, calibration=cal, return_diff=True)
        wp = sparse.to_dense()
        assert is_24(wp), method
        assert sparse.method == method
        errors[method] = held_out_error(lin.weight.detach(), wp, held)
        assert "output_rel_error" in diff  # measured on the calibration sample
    assert errors["wanda"] < 0.85 * errors["magnitude"], errors
    assert errors["sparsegpt"] < 0.7 * errors["wanda"], errors
    assert errors["sparsegpt-refine"] < errors["sparsegpt"], errors


def test_shared_calibration_and_report_fields() -> None:
    x = correlated(256, 64, seed=2)
    cal = sf.Calibration.from_activations(x)
    assert (cal.in_features, cal.tokens) == (64, 256)
    calls = []
    opts = {"block_size": 32, "progress": lambda stage, done, total: calls.append((stage, done, total))}
    for out in (16, 32):
        lin = nn.Linear(64, out, bias=False).to(torch.bfloat16)
        sparse, diff = sf.SparseLinear.from_dense(
            lin, method="sparsegpt-refine", calibration=cal, prune_options=opts, return_diff=True
        )
        assert sparse.dtype == torch.bfloat16 and is_24(sparse.to_dense().float())
        assert diff["calibration_tokens"] == 256 and diff["damping"] == 0.01
        assert diff["refine_objective_ratio"] <= 1.0
    assert ("sparsegpt", 64, 64) in calls and any(c[0] == "refine" for c in calls)


def test_bad_calibration_is_a_clear_error() -> None:
    lin = nn.Linear(32, 8)
    with pytest.raises(ValueError, match="needs calibration"):
        sf.SparseLinear.from_dense(lin, method="wanda")
    with pytest.raises(ValueError, match="unknown pruning method"):
        sf.SparseLinear.from_dense(lin, method="obs", calibration=torch.randn(4, 32))
    with pytest.raises(ValueError, match="in_features = 16 but the weight has in_features = 32"):
        sf.SparseLinear.from_dense(lin, method="sparsegpt", calibration=torch.randn(4, 16))
    x = torch.randn(4, 32)
    x[2, 5] = float("nan")
    with pytest.raises(ValueError, match="token 2, channel 5"):
        sf.SparseLinear.from_dense(lin, method="sparsegpt", calibration=x)
    with pytest.raises(ValueError, match="empty"):
        sf.SparseLinear.from_dense(lin, method="wanda", calibration=torch.empty(0, 32))
    with pytest.raises(TypeError, match="floating point"):
        sf.SparseLinear.from_dense(lin, method="wanda", calibration=torch.ones(4, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match="all zero"):
        sf.SparseLinear.from_dense(lin, method="sparsegpt", calibration=torch.zeros(4, 32))
    with pytest.raises(ValueError, match="in_features = 16"):
        sf.SparseLinear.from_dense(lin, method="wanda", calibration=sf.Calibration(16))


class Block(nn.Module):
    """A LLaMA-style block without attention mixing: q/k/v read the same input, gated MLP."""

    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d)
        self.mlp = Mlp(d, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.q_proj(x)) * self.k_proj(x) + self.v_proj(x)
        x = x + self.o_proj(a)
        return x + self.mlp(x)


class Mlp(nn.Module):
    def __init__(self, d: int, h: int) -> None:
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = nn.Linear(d, h), nn.Linear(d, h), nn.Linear(h, d)
        self.act_fn = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(Block(32, 64), Block(32, 64))


def batches(n: int, seed: int) -> list:
    """``n`` batches [4, 16, 32] and one more as test input, all from one distribution."""
    x = correlated(64 * (n + 1), 32, seed)
    return [b.reshape(4, 16, 32) for b in x.split(64)]


def test_sparsify_sequential_with_heldout_errors() -> None:
    dense = tiny_model()
    *cal, x_test = batches(4, 10)
    y_dense = dense(x_test).detach()
    errs = {}
    for method in ("magnitude", "sparsegpt"):
        model = tiny_model()
        model, report = sf.sparsify(model, method=method, calibration=cal, progress=False)
        assert len(report.sparsified) == 14, str(report)
        for row in report.sparsified:
            assert row.diff["heldout_rel_error"] > 0 and row.diff["heldout_tokens"] == 64
        assert "held-out err" in str(report)
        errs[method] = float((model(x_test) - y_dense).norm() / y_dense.norm())
    assert errs["sparsegpt"] < errs["magnitude"], errs


def test_max_rel_error_leaves_lossy_layers_dense() -> None:
    model = tiny_model(1)
    model, report = sf.sparsify(model, method="wanda", calibration=batches(3, 20)[:3], max_rel_error=1e-6, progress=False)
    assert len(report.over_error) == 14 and not report.sparsified
    assert all(isinstance(m, nn.Linear) for m in model.modules() if not isinstance(m, (nn.Sequential, Block, Mlp, nn.SiLU)))
    assert "bytes" in report.over_error[0].reason
    # A generous bound converts everything.
    model, report = sf.sparsify(tiny_model(1), method="wanda", calibration=batches(3, 20)[:3], max_rel_error=10.0, progress=False)
    assert len(report.sparsified) == 14 and not report.over_error


def test_sparsify_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="needs calibration"):
        sf.sparsify(tiny_model(), method="sparsegpt")
    with pytest.raises(ValueError, match="max_rel_error needs calibration"):
        sf.sparsify(tiny_model(), max_rel_error=0.1)
    with pytest.raises(ValueError, match="calibration is empty"):
        sf.sparsify(tiny_model(), method="wanda", calibration=[], progress=False)


def test_gated_mlp_permutation_is_exact_and_keeps_more() -> None:
    torch.manual_seed(3)
    mlp = Mlp(32, 64)
    x = correlated(128, 32, seed=4)
    with torch.no_grad():
        h = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        y = mlp(x)
    perm = sf.find_permutation(mlp.down_proj, h)
    assert sorted(perm.tolist()) == list(range(64))
    sf.permute_gated_mlp(mlp, perm)
    with torch.no_grad():
        assert torch.allclose(mlp(x), y, atol=1e-5)
    with pytest.raises(TypeError, match="not a gated MLP"):
        sf.permute_gated_mlp(nn.Linear(4, 4), perm)


def test_calibration_file_round_trip(tmp_path) -> None:
    pytest.importorskip("safetensors")
    from sparseflow.calibration_file import read_calibration, write_calibration_activations

    x = correlated(16, 32, seed=5)
    path = str(tmp_path / "cal.safetensors")
    write_calibration_activations(path, {"mlp.down_proj": x})
    back = read_calibration(path)
    assert back["kind"] == "activations" and torch.equal(back["mlp.down_proj"], x)
    with pytest.raises(TypeError, match="floating point"):
        write_calibration_activations(path, {"a": torch.ones(4, 4, dtype=torch.int64)})
    with pytest.raises(ValueError, match="NaN"):
        write_calibration_activations(path, {"a": torch.full((4, 4), float("nan"))})
    from safetensors.torch import save_file

    save_file({"input_ids": torch.ones(2, 3)}, path, metadata={"format": "sparseflow-calibration", "version": "1", "kind": "tokens"})
    with pytest.raises(TypeError, match="int32 or int64"):
        read_calibration(path)
    save_file({"x": torch.ones(2, 3)}, path)
    with pytest.raises(ValueError, match="not a SparseFlow calibration file"):
        read_calibration(path)
