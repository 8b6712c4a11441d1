"""The custom op under torch.compile on CPU: one graph, no breaks, same numbers as eager."""

from __future__ import annotations

import torch
from torch import nn

import sparseflow as sf


def test_op_is_registered_with_fake_kernel():
    x = torch.randn(2, 3, 16, device="meta")
    values = torch.empty(8, 8, device="meta")
    meta = torch.empty(8, 2, dtype=torch.uint8, device="meta")
    y = torch.ops.sparseflow.sparse_linear(x, values, meta, None, "none")
    assert y.shape == (2, 3, 8) and y.device.type == "meta"
    torch.library.opcheck(
        torch.ops.sparseflow.sparse_linear.default,
        (torch.randn(3, 16), *sf.compress(torch.randn(8, 16)), torch.randn(8), "bias_relu"),
        test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"),
    )


def test_torch_compile_cpu_fullgraph():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.SiLU(), nn.Linear(64, 16))
    model, report = sf.sparsify(model, exclude=())
    assert [r.status for r in report] == ["sparsified", "sparsified"]
    x = torch.randn(2, 5, 32)
    eager = model(x)
    compiled = torch.compile(model, fullgraph=True, dynamic=False)  # fullgraph: a break is an error
    torch.testing.assert_close(compiled(x), eager, rtol=1e-5, atol=1e-5)
    x2 = torch.randn(2, 5, 32)
    torch.testing.assert_close(compiled(x2), model(x2), rtol=1e-5, atol=1e-5)
