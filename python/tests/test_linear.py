"""SparseLinear: exactness on 2:4 weights, the diff report, state_dict round trips, dtypes."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import sparseflow as sf
from conftest import exact_24_weight, magnitude_prune
from sparseflow.activations import TORCH

TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bias", [True, False])
def test_from_dense_exact_24_matches_linear(dtype, bias):
    n, k = 24, 64
    lin = nn.Linear(k, n, bias=bias).to(dtype)
    with torch.no_grad():
        lin.weight.copy_(exact_24_weight(n, k, dtype))
    sparse = sf.SparseLinear.from_dense(lin)
    assert (sparse.in_features, sparse.out_features) == (k, n)
    assert sparse.values.shape == (n, k // 2) and sparse.values.dtype == dtype
    assert sparse.meta.shape == (n, k // 8) and sparse.meta.dtype == torch.uint8
    assert torch.equal(sparse.to_dense(), lin.weight.detach())
    for shape in [(5, k), (2, 3, k), (k,)]:  # 2-D, 3-D [batch, seq, K] and 1-D like nn.Linear
        x = torch.randn(*shape).to(dtype)
        want = lin(x).detach().float()
        got = sparse(x)
        assert got.shape == want.shape and got.dtype == dtype
        rtol, atol = TOL[dtype]
        torch.testing.assert_close(got.float(), want, rtol=rtol, atol=atol * k**0.5)


def test_from_dense_weight_and_bias_and_repr():
    w = exact_24_weight(8, 16)
    b = torch.randn(8)
    sparse = sf.SparseLinear.from_dense(w, b)
    assert torch.equal(sparse.bias, b)
    assert "in_features=16, out_features=8, bias=True" in repr(sparse)
    x = torch.randn(4, 16)
    torch.testing.assert_close(sparse(x), x @ w.T + b)


def test_magnitude_pruning_matches_reference():
    w = torch.randn(16, 32)
    sparse = sf.SparseLinear.from_dense(w)
    assert torch.equal(sparse.to_dense(), magnitude_prune(w))


def test_odd_group_count_k_multiple_of_4_not_8():
    w = torch.randn(4, 12)
    sparse = sf.SparseLinear.from_dense(w)
    assert sparse.meta.shape == (4, 2)
    x = torch.randn(3, 12)
    torch.testing.assert_close(sparse(x), x @ magnitude_prune(w).T)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_diff_fields_match_manual_computation(dtype):
    n, k, m = 16, 32, 9
    w = torch.randn(n, k).to(dtype)
    x = torch.randn(m, k).to(dtype)
    _, diff = sf.SparseLinear.from_dense(w, return_diff=True, calibration=x)
    wd, ws = w.double(), magnitude_prune(w).double()
    err = (wd - ws).abs()
    assert diff["max_error"] == pytest.approx(err.max().item(), rel=1e-12)
    assert diff["mean_abs_error"] == pytest.approx(err.mean().item(), rel=1e-9)
    assert diff["rel_fro_error"] == pytest.approx((err.norm() / wd.norm()).item(), rel=1e-9)
    assert diff["kept_magnitude"] == pytest.approx((ws.abs().sum() / wd.abs().sum()).item(), rel=1e-9)
    assert diff["sparsity"] == pytest.approx((ws == 0).double().mean().item(), rel=1e-12)
    assert diff["bytes_dense"] == n * k * w.element_size()
    assert diff["bytes_sparse"] == n * (k // 2) * w.element_size() + n * (k // 8)
    y, ys = x.double() @ wd.T, x.double() @ ws.T
    assert diff["output_max_error"] == pytest.approx((y - ys).abs().max().item(), rel=1e-9)
    assert diff["output_rel_error"] == pytest.approx(((y - ys).norm() / y.norm()).item(), rel=1e-9)
    _, plain = sf.SparseLinear.from_dense(w, return_diff=True)
    assert "output_max_error" not in plain and "output_rel_error" not in plain


def test_state_dict_round_trip():
    torch.manual_seed(0)
    sparse = sf.SparseLinear.from_dense(nn.Linear(32, 8).half())
    state = sparse.state_dict()
    assert set(state) == {"values", "meta", "bias"}
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    fresh = sf.SparseLinear(32, 8, bias=True, dtype=torch.float16)
    fresh.load_state_dict(torch.load(buf))
    for name in state:
        assert torch.equal(getattr(fresh, name), state[name])
    x = torch.randn(3, 32).half()
    assert torch.equal(fresh(x), sparse(x))
    with pytest.raises(RuntimeError, match="size mismatch"):
        sf.SparseLinear(64, 8, dtype=torch.float16).load_state_dict(state)


def test_dtype_conversions_keep_meta_uint8():
    sparse = sf.SparseLinear.from_dense(nn.Linear(16, 8))
    meta = sparse.meta.clone()
    for convert, dtype in [
        (lambda m: m.half(), torch.float16),
        (lambda m: m.to(torch.bfloat16), torch.bfloat16),
        (lambda m: m.float(), torch.float32),
        (lambda m: m.to("cpu"), torch.float32),
    ]:
        sparse = convert(sparse)
        assert sparse.values.dtype == dtype and sparse.bias.dtype == dtype
        assert sparse.meta.dtype == torch.uint8 and torch.equal(sparse.meta, meta)
        x = torch.randn(2, 16).to(dtype)
        torch.testing.assert_close(
            sparse(x).float(), (x.float() @ sparse.to_dense().float().T + sparse.bias.float()), rtol=2e-2, atol=2e-2
        )


def test_in_place_weight_update_is_seen():
    sparse = sf.SparseLinear.from_dense(torch.randn(8, 16))
    x = torch.randn(2, 16)
    before = sparse(x)
    with torch.no_grad():
        sparse.values.mul_(2)
    torch.testing.assert_close(sparse(x), 2 * before)


@pytest.mark.parametrize("activation", [a for a in sf.ACTIVATIONS if a != "none"])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_activation_matches_torch(activation, bias):
    w = torch.randn(8, 16)
    b = torch.randn(8) if bias else None
    sparse = sf.SparseLinear.from_dense(w, b, activation=activation)
    assert sparse.epilogue == sf.ops.epilogue_name(activation, bias)
    x = torch.randn(5, 16)
    pre = x @ magnitude_prune(w).T + (b if bias else 0)
    torch.testing.assert_close(sparse(x), TORCH[activation](pre), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", sf.ACTIVATIONS)
def test_gradients_match_dense_autograd(activation):
    torch.manual_seed(1)
    w, b = torch.randn(8, 16), torch.randn(8)
    sparse = sf.SparseLinear.from_dense(w, b, activation=activation)
    sparse.values.requires_grad_(True)
    sparse.bias.requires_grad_(True)
    x = torch.randn(2, 3, 16, requires_grad=True)
    sparse(x).pow(2).sum().backward()
    wd = magnitude_prune(w).requires_grad_(True)
    bd = b.clone().requires_grad_(True)
    xd = x.detach().clone().requires_grad_(True)
    act = (lambda t: t) if activation == "none" else TORCH[activation]
    act(torch.nn.functional.linear(xd, wd, bd)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, xd.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sparse.bias.grad, bd.grad, rtol=1e-4, atol=1e-4)
    # d/d values = the dense weight's gradient at the stored positions.
    positions = sf.ops._positions(sparse.meta, 8, 16)
    want = wd.grad.reshape(8, 4, 4).gather(2, positions).reshape(8, 8)
    torch.testing.assert_close(sparse.values.grad, want, rtol=1e-4, atol=1e-4)


def test_eager_fast_path_computes_what_the_op_computes() -> None:
    """Eager inference skips the op's dispatch (ops.eager_fast_path) but not its semantics:
    same output as the op; autograd, tracing and torch.compile still go through the op."""
    torch.manual_seed(0)
    layer = sf.SparseLinear.from_dense(nn.Linear(64, 24, bias=True))
    x = torch.randn(5, 64)
    op = torch.ops.sparseflow.sparse_linear(x, layer.values, layer.meta, layer.bias, layer.epilogue)
    with torch.no_grad():
        assert sf.ops.eager_fast_path(x, layer.values, layer.meta, layer.bias)
        assert torch.equal(layer(x), op)
    with torch.inference_mode():
        assert torch.equal(layer(x), op)
    # An input that requires grad, with grad enabled: the op (and its autograd formula) runs,
    # and the gradient arrives.
    xg = x.clone().requires_grad_()
    assert not sf.ops.eager_fast_path(xg, layer.values, layer.meta, layer.bias)
    layer(xg).sum().backward()
    assert xg.grad is not None and torch.allclose(xg.grad, layer.to_dense().sum(0).expand(5, 64))
    with torch.no_grad():
        assert sf.ops.eager_fast_path(xg, layer.values, layer.meta, layer.bias)  # nothing to track
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        fx = mode.from_tensor(x)
        assert not sf.ops.eager_fast_path(fx, layer.values, layer.meta, layer.bias)


def test_validate_checks_the_padding_nibble() -> None:
    """in_features = 12 has 3 groups: the last meta byte's high nibble is padding (0b0100).
    validate() refuses anything else, instead of the first forward failing later."""
    layer = sf.SparseLinear.from_dense(nn.Linear(12, 3))
    layer.validate()
    with torch.no_grad():
        layer.meta[1, -1] = (layer.meta[1, -1] & 0x0F) | (0b1000 << 4)
    with pytest.raises(ValueError, match="meta row 1: the padding nibble"):
        layer.validate()
