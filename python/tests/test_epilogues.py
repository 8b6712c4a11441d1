"""The epilogue table at the Python face: names, activations, derivatives and the modules
``sparsify`` fuses all follow the library's table (``sparseflow._C.epilogues()``), so a new
activation in crates/core/src/epilogue.rs fails here until Python knows what it means."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sparseflow as sf
from sparseflow import _C
from sparseflow import activations as acts
from sparseflow.sparsify import _TORCH_MODULES, _TRANSFORMERS_MODULES, activation_kind

TABLE = _C.epilogues()
TABLE_OPS = sorted({op for e in TABLE for op in e["activation_ops"]})


def test_names_come_from_the_table():
    assert sf.EPILOGUES == tuple(e["name"] for e in TABLE)
    assert [e["id"] for e in TABLE] == list(range(len(TABLE)))
    assert sf.ACTIVATIONS[0] == "none" and set(sf.ACTIVATIONS) == {e["activation"] for e in TABLE}
    assert "relu2" in sf.ACTIVATIONS and "bias_relu2" in sf.EPILOGUES
    for e in TABLE:
        assert sf.ops.epilogue_name(e["activation"], e["has_bias"]) == e["name"]
        assert sf.ops.split_epilogue(e["name"]) == (e["activation"], e["has_bias"])
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        sf.ops.epilogue_name("swish", False)


def test_every_table_activation_has_a_torch_meaning_and_a_derivative():
    # Exactly the table's activations: a missing one fails here, and so does a stale extra.
    assert sorted(acts.TORCH) == TABLE_OPS
    assert sorted(acts.GRAD) == TABLE_OPS


@pytest.mark.parametrize("op", TABLE_OPS)
def test_derivative_matches_torch_autograd(op):
    x = torch.linspace(-6, 6, 1201, dtype=torch.float64).requires_grad_(True)
    (want,) = torch.autograd.grad(acts.TORCH[op](x).sum(), x)
    torch.testing.assert_close(acts.GRAD[op](x.detach()), want, rtol=1e-9, atol=1e-9)


def test_chain_applies_ops_in_order():
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)
    torch.testing.assert_close(acts.chain(["relu2"], x), torch.relu(x) ** 2)
    torch.testing.assert_close(acts.chain([], x), x)
    torch.testing.assert_close(acts.chain_grad(["relu", "relu2"], x), 2 * torch.relu(x))


def test_relu2_runs_fused_on_the_cpu_reference():
    torch.manual_seed(3)
    w, b = torch.randn(8, 32), torch.randn(8)
    layer = sf.SparseLinear.from_dense(w, b, activation="relu2")
    assert layer.epilogue == "bias_relu2"
    x = torch.randn(4, 32)
    pre = torch.nn.functional.linear(x.double(), layer.to_dense().double(), b.double())
    torch.testing.assert_close(layer(x).double(), torch.relu(pre).square(), rtol=1e-5, atol=1e-5)


def test_module_maps_name_table_activations_only():
    for kind in [*_TORCH_MODULES.values(), *_TRANSFORMERS_MODULES.values()]:
        assert kind in sf.ACTIVATIONS, kind


@pytest.mark.parametrize("module_type", list(_TORCH_MODULES))
def test_torch_modules_compute_their_activation(module_type):
    module, x = module_type(), torch.linspace(-5, 5, 101)
    kind = activation_kind(module)
    torch.testing.assert_close(module(x), acts.TORCH[kind](x))


def test_transformers_modules_compute_their_activation():
    transformers_activations = pytest.importorskip("transformers.activations")
    x = torch.linspace(-5, 5, 101)
    for name, kind in _TRANSFORMERS_MODULES.items():
        cls = getattr(transformers_activations, name, None)
        if cls is None:  # renamed or removed in this transformers version
            continue
        module = cls()
        assert activation_kind(module) == kind
        torch.testing.assert_close(module(x), acts.TORCH[kind](x), rtol=1e-6, atol=1e-6)


def test_sparsify_fuses_squared_relu_only_as_the_standard_module():
    transformers_activations = pytest.importorskip("transformers.activations")

    class HandRolledReLU2(nn.Module):
        def forward(self, x):
            return torch.relu(x) ** 2

    for act, fused in [(transformers_activations.ReLUSquaredActivation(), True), (HandRolledReLU2(), False)]:
        model = nn.Sequential(nn.Linear(32, 16), act, nn.Linear(16, 8))
        x = torch.randn(3, 32)
        model, report = sf.sparsify(model)
        first = report["0"]
        assert (first.epilogue == "bias_relu2") == fused, first
        assert (first.fused == "1") == fused
        assert model(x).shape == (3, 8)
