"""What each activation of SparseFlow's epilogue table means in torch, keyed by the table's names.

The table itself is the library's (``sparseflow._C.epilogues()``, defined in
crates/core/src/epilogue.rs): which activations exist, and which epilogue fuses each with or
without a bias. This module only adds what Python needs per activation, and nothing else:

* :data:`TORCH`: the activation as torch computes it. It is the reference the tests and
  ``scripts/device/kernel_dev.py`` compare kernels with, and the function of the modules that
  :func:`sparseflow.sparsify` fuses.
* :data:`GRAD`: its derivative, for the op's autograd formula.

A new activation in the table needs one entry in each (``python/tests/test_epilogues.py`` fails
until it has them, and checks each derivative against torch's autograd). This file imports only
torch, so device scripts can load it by path without the compiled package.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TORCH", "GRAD", "chain", "chain_grad"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

#: ``activation name -> torch function``, one per activation of the epilogue table.
TORCH: Dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "silu": F.silu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu2": lambda x: torch.relu(x).square(),
}


def _silu_grad(x: Tensor) -> Tensor:
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def _gelu_grad(x: Tensor) -> Tensor:
    cdf = 0.5 * (1 + torch.erf(x * (1 / math.sqrt(2.0))))
    pdf = torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return cdf + x * pdf


def _gelu_tanh_grad(x: Tensor) -> Tensor:
    t = torch.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)


#: ``activation name -> d activation(x) / dx``, for every key of :data:`TORCH`.
GRAD: Dict[str, Callable[[Tensor], Tensor]] = {
    "relu": lambda x: (x > 0).to(x.dtype),
    "silu": _silu_grad,
    "gelu": _gelu_grad,
    "gelu_tanh": _gelu_tanh_grad,
    "relu2": lambda x: 2 * torch.relu(x),
}


def chain(ops: Sequence[str], x: Tensor) -> Tensor:
    """Applies an epilogue's activation ops (``[]`` for none) in order."""
    for op in ops:
        x = TORCH[op](x)
    return x


def chain_grad(ops: Sequence[str], x: Tensor) -> Tensor:
    """``d chain(ops, x) / dx`` elementwise (chain rule through the ops)."""
    grad = torch.ones_like(x)
    for op in ops:
        grad = grad * GRAD[op](x)
        x = TORCH[op](x)
    return grad
