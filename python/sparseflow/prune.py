"""Activation-aware 2:4 pruning: calibration statistics, the Rust methods, channel permutations.

```python
cal = sf.Calibration.from_activations(x)          # x [..., in_features]: this layer's inputs
sparse = sf.SparseLinear.from_dense(linear, method="sparsegpt", calibration=cal)
```

Methods (``METHODS``): ``magnitude`` (no calibration), ``wanda`` (``|W|·‖X_j‖``),
``sparsegpt`` (OBS with weight updates) and ``sparsegpt-refine`` (SparseGPT, then kept/pruned
swaps and re-fitted kept weights while the calibration output error drops). See
docs/ACCURACY.md for what each keeps.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from . import _C
from .ops import dtype_name, meta_bytes

__all__ = [
    "METHODS",
    "Calibration",
    "find_permutation",
    "permute_attention_values",
    "permute_gated_mlp",
    "permute_in_features",
    "permute_out_features",
]

#: Pruning methods, in order of accuracy (and cost).
METHODS: Tuple[str, ...] = ("magnitude", "wanda", "sparsegpt", "sparsegpt-refine")

#: Methods that read calibration activations.
CALIBRATED_METHODS: Tuple[str, ...] = METHODS[1:]

Progress = Callable[[str, int, int], None]


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(METHODS)}")


class Calibration:
    """``H = XᵀX`` (float64, in Rust) of one layer input, accumulated over activation batches.

    Layers that read the same input (``q/k/v_proj``, ``gate/up_proj``) can share one.
    Memory: ``8·in_features²`` bytes.
    """

    def __init__(self, in_features: int) -> None:
        if not isinstance(in_features, int) or in_features <= 0:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        self._c = _C.Calibration(in_features)

    @classmethod
    def from_activations(cls, x: Tensor) -> "Calibration":
        """From activations ``x [..., in_features]`` (any float dtype, any device)."""
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise TypeError(f"calibration activations must be a tensor [..., in_features], got {type(x).__name__}")
        cal = cls(int(x.shape[-1]))
        cal.add(x)
        return cal

    def add(self, x: Tensor) -> None:
        """Adds the activations ``x [..., in_features]``. Errors: not a float tensor, wrong
        last dimension, no tokens, NaN/Inf (named by token and channel)."""
        if not isinstance(x, Tensor):
            raise TypeError(f"calibration activations must be a tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"calibration activations must be floating point, got {x.dtype}")
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"calibration activations have shape {tuple(x.shape)}; expected [..., {self.in_features}] "
                "(the inputs of this layer)"
            )
        host = x.detach().reshape(-1, self.in_features).to("cpu", torch.float32).contiguous()
        if host.shape[0] == 0:
            raise ValueError("calibration activations are empty (0 tokens)")
        self._c.accumulate(host.data_ptr(), host.shape[0], "float32")

    def permuted(self, perm: Union[Tensor, Sequence[int]]) -> "Calibration":
        """The calibration of the permuted input ``x[:, perm]``."""
        out = Calibration.__new__(Calibration)
        out._c = self._c.permuted([int(p) for p in perm])
        return out

    @property
    def in_features(self) -> int:
        return int(self._c.k)

    @property
    def tokens(self) -> int:
        return int(self._c.tokens)

    def __repr__(self) -> str:
        return f"Calibration(in_features={self.in_features}, tokens={self.tokens})"


def as_calibration(calibration: Union[Tensor, Calibration], in_features: int) -> Calibration:
    """A :class:`Calibration` from a tensor of activations, or the given one (checked)."""
    cal = calibration if isinstance(calibration, Calibration) else Calibration.from_activations(calibration)
    if cal.in_features != in_features:
        raise ValueError(
            f"calibration has in_features = {cal.in_features} but the weight has in_features = {in_features}"
        )
    return cal


def prune_host(
    w: Tensor,
    method: str,
    calibration: Optional[Calibration],
    *,
    damping: float = 0.01,
    block_size: int = 128,
    refine_sweeps: int = 4,
    progress: Optional[Progress] = None,
) -> Tuple[Tensor, Tensor, Dict[str, Any]]:
    """Prunes a contiguous CPU weight ``[n, k]`` (checked by the caller) with ``method``:
    ``(values, meta, report)`` on the CPU, in ``w``'s dtype."""
    check_method(method)
    if method in CALIBRATED_METHODS and calibration is None:
        raise ValueError(
            f"method {method!r} needs calibration activations: pass calibration=X (this layer's inputs "
            "[tokens, in_features]) or use method='magnitude'"
        )
    n, k = w.shape
    values = torch.empty((n, k // 2), dtype=w.dtype)
    meta = torch.empty((n, meta_bytes(k)), dtype=torch.uint8)
    report = _C.prune_calibrated(
        w.data_ptr(),
        n,
        k,
        dtype_name(w.dtype),
        method,
        calibration._c if calibration is not None else None,
        values.data_ptr(),
        meta.data_ptr(),
        float(damping),
        int(block_size),
        int(refine_sweeps),
        progress,
    )
    return values, meta, dict(report)


def find_permutation(
    weight: Union[nn.Linear, Tensor],
    calibration: Optional[Union[Tensor, Calibration]] = None,
    *,
    window: int = 64,
    passes: int = 4,
) -> Tensor:
    """A permutation ``perm`` (int64 ``[in_features]``) of a layer's input channels under which
    2:4 keeps more of ``|W|·‖X_j‖`` (``|W|`` without calibration): ``weight[:, perm]`` prunes
    better. Free at run time when the producing layer's output rows are permuted alike
    (:func:`permute_gated_mlp`, :func:`permute_out_features`)."""
    w = weight.weight if isinstance(weight, nn.Linear) else weight
    host = w.detach().to("cpu").contiguous()
    n, k = host.shape
    cal = as_calibration(calibration, k) if calibration is not None else None
    perm = _C.find_permutation(
        host.data_ptr(), n, k, dtype_name(host.dtype), cal._c if cal is not None else None, window, passes
    )
    return torch.tensor(perm, dtype=torch.int64)


@torch.no_grad()
def permute_in_features(linear: nn.Linear, perm: Tensor) -> None:
    """``linear.weight[:, perm]`` in place (the consumer side of a permutation)."""
    linear.weight.copy_(linear.weight[:, perm.to(linear.weight.device)])


@torch.no_grad()
def permute_out_features(linear: nn.Linear, perm: Tensor) -> None:
    """``linear.weight[perm]`` and ``linear.bias[perm]`` in place (the producer side)."""
    p = perm.to(linear.weight.device)
    linear.weight.copy_(linear.weight[p])
    if linear.bias is not None:
        linear.bias.copy_(linear.bias[p])


def permute_gated_mlp(mlp: nn.Module, perm: Tensor) -> None:
    """Applies an intermediate-channel permutation to a LLaMA-style MLP
    (``down_proj(act(gate_proj(x)) * up_proj(x))``): ``gate_proj`` and ``up_proj`` output rows
    and ``down_proj`` input columns. The MLP computes exactly the same function afterwards."""
    for name in ("gate_proj", "up_proj", "down_proj"):
        if not isinstance(getattr(mlp, name, None), nn.Linear):
            raise TypeError(f"{type(mlp).__name__} has no nn.Linear {name}: not a gated MLP")
    permute_out_features(mlp.gate_proj, perm)
    permute_out_features(mlp.up_proj, perm)
    permute_in_features(mlp.down_proj, perm)


@torch.no_grad()
def permute_attention_values(v_proj: nn.Linear, o_proj: nn.Linear, perms: Tensor, *, num_heads: int) -> None:
    """Applies per-head value-channel permutations to an attention block: ``perms`` is int64
    ``[num_kv_heads, head_dim]``, one permutation of ``0..head_dim`` per value head. Value head
    ``g``'s rows of ``v_proj`` (and bias) become ``g·d + perms[g]``, and the o_proj columns of
    every query head ``h`` that reads it (grouped-query attention: ``h // (num_heads /
    num_kv_heads) == g``) become ``h·d + perms[g]``. The attention computes exactly the same
    function afterwards (softmax weights mix whole value vectors; only their channel order
    changes, and o_proj reads them in the same new order)."""
    if not (isinstance(v_proj, nn.Linear) and isinstance(o_proj, nn.Linear)):
        raise TypeError("permute_attention_values takes the nn.Linear v_proj and o_proj")
    if perms.dim() != 2:
        raise ValueError(f"perms must be [num_kv_heads, head_dim], got shape {tuple(perms.shape)}")
    n_kv, dim = int(perms.shape[0]), int(perms.shape[1])
    if v_proj.out_features != n_kv * dim:
        raise ValueError(f"v_proj has {v_proj.out_features} output rows, not num_kv_heads·head_dim = {n_kv}·{dim}")
    if num_heads % n_kv or o_proj.in_features != num_heads * dim:
        raise ValueError(
            f"o_proj has {o_proj.in_features} input columns; expected num_heads·head_dim = {num_heads}·{dim} "
            f"with num_heads a multiple of num_kv_heads = {n_kv}"
        )
    ident = torch.arange(dim)
    if not bool((perms.sort(dim=1).values == ident[None, :]).all()):
        raise ValueError("every row of perms must be a permutation of 0..head_dim-1")
    perms = perms.to(torch.int64)
    rep = num_heads // n_kv
    rows = (torch.arange(n_kv)[:, None] * dim + perms).reshape(-1)
    cols = (torch.arange(num_heads)[:, None] * dim + perms.repeat_interleave(rep, dim=0)).reshape(-1)
    permute_out_features(v_proj, rows)
    permute_in_features(o_proj, cols)
