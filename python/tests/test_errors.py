"""Bad input gives a clear error before anything is built."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparseflow as sf


def test_wrong_dtype():
    with pytest.raises(TypeError, match="unsupported dtype torch.float64"):
        sf.SparseLinear.from_dense(torch.randn(8, 16, dtype=torch.float64))
    with pytest.raises(TypeError, match="unsupported dtype torch.int32"):
        sf.SparseLinear.from_dense(torch.ones(8, 16, dtype=torch.int32))
    sparse = sf.SparseLinear.from_dense(torch.randn(8, 16).half())
    with pytest.raises(TypeError, match="input dtype torch.float32 does not match the layer's torch.float16"):
        sparse(torch.randn(2, 16))


def test_3d_weight():
    with pytest.raises(ValueError, match=r"must be 2-D \[out_features, in_features\].*\(2, 8, 16\)"):
        sf.SparseLinear.from_dense(torch.randn(2, 8, 16))


def test_k_not_multiple_of_4():
    with pytest.raises(ValueError, match="in_features = 18 is not a multiple of 4"):
        sf.SparseLinear.from_dense(nn.Linear(18, 8))
    with pytest.raises(ValueError, match="in_features = 18 is not a multiple of 4"):
        sf.SparseLinear(18, 8)


def test_meta_device():
    with pytest.raises(ValueError, match="meta device"):
        sf.SparseLinear.from_dense(nn.Linear(16, 8, device="meta"))


def test_nan_weights_name_row_and_column():
    w = torch.randn(8, 16)
    w[3, 5] = float("nan")
    with pytest.raises(ValueError, match="non-finite weight NaN at row 3, column 5"):
        sf.SparseLinear.from_dense(w)


def test_input_shape_and_bias_errors():
    sparse = sf.SparseLinear.from_dense(torch.randn(8, 16))
    with pytest.raises(ValueError, match="last dimension must be in_features = 16"):
        sparse(torch.randn(2, 12))
    with pytest.raises(ValueError, match=r"bias must be a tensor of shape \[8\]"):
        sf.SparseLinear.from_dense(torch.randn(8, 16), torch.randn(7))
    with pytest.raises(ValueError, match="unknown pruning method 'obs'"):
        sf.SparseLinear.from_dense(torch.randn(8, 16), method="obs")
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        sf.SparseLinear.from_dense(torch.randn(8, 16), activation="tanh")


def test_corrupt_meta_is_rejected():
    sparse = sf.SparseLinear.from_dense(torch.randn(8, 16))
    with torch.no_grad():
        sparse.meta[2, 1] = 0x55  # code 0b0101: positions 1 and 1, not two distinct ones
    with pytest.raises(ValueError, match="row 2, group 2"):
        sparse.validate()
    with pytest.raises(ValueError, match="not two distinct increasing positions"):
        sparse(torch.randn(1, 16))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without CUDA")
def test_programmatic_launch_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        sf.ops.set_programmatic_launch(True)


def test_a_weight_too_large_for_host_memory_is_a_memory_error() -> None:
    """Sizes come from the caller: a refused allocation raises MemoryError instead of aborting
    the interpreter (the private _C entry takes host pointers; 2^40 columns cannot be copied)."""
    from sparseflow import _C

    values = torch.zeros(8, dtype=torch.float16)
    meta = torch.zeros(8, dtype=torch.uint8)
    with pytest.raises(MemoryError, match="out of memory: values needs"):
        _C.SparseGemmHandle(values.data_ptr(), meta.data_ptr(), None, 1, 2**40, "float16", "none", None)
