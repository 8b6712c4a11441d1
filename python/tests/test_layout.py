"""The device (fragment) layout in torch (sparseflow.layout) against its Rust definition
(crates/codegen/src/layout.rs through _C), and a SparseLinear in that layout on the CPU."""

from __future__ import annotations

import pytest
import torch

import sparseflow as sf
from sparseflow import _C, layout
from sparseflow.ops import dtype_name

from conftest import exact_24_weight

SHAPES = [(8, 16), (128, 64), (136, 72), (256, 4096 // 32), (20, 12), (130, 196)]


def rust_fragment(values: torch.Tensor, meta: torch.Tensor, n: int, k: int):
    vb, mb = _C.fragment_layout_bytes(n, k)
    fv = torch.empty(vb // values.element_size(), dtype=values.dtype)
    fm = torch.empty(mb, dtype=torch.uint8)
    _C.to_fragment_layout(values.data_ptr(), meta.data_ptr(), n, k, dtype_name(values.dtype), fv.data_ptr(), fm.data_ptr())
    return fv, fm


@pytest.mark.parametrize("n,k", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_torch_layout_is_the_rust_layout(n, k, dtype):
    values, meta = sf.compress(exact_24_weight(n, k, dtype, seed=n + k))
    assert layout.fragment_numel(n, k) == (_C.fragment_layout_bytes(n, k)[0] // 2, _C.fragment_layout_bytes(n, k)[1])
    fv, fm = layout.to_fragment(values, meta)
    want_v, want_m = rust_fragment(values, meta, n, k)
    assert torch.equal(fv.view(torch.int16), want_v.view(torch.int16))
    assert torch.equal(fm, want_m)
    # And back, in torch and in Rust.
    bv, bm = layout.from_fragment(fv, fm, n, k)
    assert torch.equal(bv, values) and torch.equal(bm, meta)
    rv = torch.empty_like(values)
    rm = torch.empty_like(meta)
    _C.from_fragment_layout(fv.data_ptr(), fm.data_ptr(), n, k, dtype_name(dtype), rv.data_ptr(), rm.data_ptr())
    assert torch.equal(rv, values) and torch.equal(rm, meta)


def test_odd_group_count_padding_nibble_is_forced():
    n, k = 16, 12  # three groups: the high nibble of each row's second byte is padding
    values, meta = sf.compress(exact_24_weight(n, k, torch.float16))
    bad = meta.clone()
    bad[:, -1] = (bad[:, -1] & 0x0F) | 0x80
    assert torch.equal(layout.to_fragment(values, bad)[1], layout.to_fragment(values, meta)[1])


def test_layout_errors():
    with pytest.raises(ValueError, match="1-D with"):
        layout.values_from_fragment(torch.zeros(10, dtype=torch.float16), 8, 16)
    with pytest.raises(ValueError, match="bytes per row"):
        layout.meta_to_fragment(torch.zeros(8, 3, dtype=torch.uint8), 16)


def test_cpu_layer_runs_a_device_layout_pair():
    """The op on CPU accepts the device layout too (1-D + out/in features): same result."""
    w = exact_24_weight(24, 32, torch.float16)
    layer = sf.SparseLinear.from_dense(w)
    x = torch.randn(5, 32).half()
    fv, fm = layout.to_fragment(layer.values, layer.meta)
    got = torch.ops.sparseflow.sparse_linear(x, fv, fm, None, "none", 24, 32)
    assert torch.equal(got, layer(x))
    with pytest.raises(ValueError, match="need out_features and in_features"):
        torch.ops.sparseflow.sparse_linear(x, fv, fm, None, "none")
