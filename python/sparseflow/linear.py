"""``SparseLinear``: a drop-in ``nn.Linear`` whose weight is stored 2:4-compressed."""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Tuple, Union, overload

import torch
from torch import Tensor, nn

from . import _C
from .ops import (
    _sparse_linear_impl,
    eager_fast_path,
    check_meta,
    check_weight,
    compress_host,
    decompress,
    dtype_name,
    epilogue_name,
    meta_bytes,
)
from .prune import METHODS, Calibration, as_calibration, check_method, prune_host

__all__ = ["SparseLinear", "METHODS"]

# An all-zero group stores positions 0 and 1 (code 0b0100); two groups per byte.
_ZERO_META_BYTE = 0x44


class SparseLinear(nn.Module):
    """``y = activation(x @ W.T + bias)`` with ``W`` stored in SparseFlow's 2:4 format.

    Buffers (all in ``state_dict``): ``values [out_features, in_features/2]`` (the two kept
    weights of every group of 4, float16/bfloat16, or float32 on CPU), ``meta
    [out_features, in_features/8]`` (uint8, two 4-bit position codes per byte) and, if present,
    ``bias [out_features]``. ``.to(device)``, ``.half()``, ``.to(torch.bfloat16)`` convert
    ``values`` and ``bias``; ``meta`` stays uint8.

    ``activation`` (``none``, ``relu``, ``silu``, ``gelu``, ``gelu_tanh``) is fused into the
    kernel's epilogue; :func:`sparseflow.sparsify` sets it only where the model applied exactly
    that activation to this layer's output (and removed it there).

    Build one with :meth:`from_dense`; the constructor makes an all-zero layer of the given
    shape (a skeleton to ``load_state_dict`` into).
    """

    values: Tensor
    meta: Tensor
    bias: Optional[Tensor]

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        activation: str = "none",
        device: Optional[Union[str, torch.device]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"in_features and out_features must be positive, got {in_features}, {out_features}")
        if in_features % 4 != 0:
            raise ValueError(
                f"in_features = {in_features} is not a multiple of 4: 2:4 sparsity groups 4 "
                "consecutive weights along in_features"
            )
        epilogue_name(activation, bool(bias))  # validates the name
        dtype = dtype or torch.get_default_dtype()
        dtype_name(dtype)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        #: How the weight was pruned (one of ``METHODS``), for the report and the model file.
        self.method = "magnitude"
        #: The diff report of the pruning that built this layer (``None`` if unknown).
        self.diff: Optional[Dict[str, float]] = None
        #: Module path of the activation that was fused into this layer, if any.
        self.fused_activation: Optional[str] = None
        self.register_buffer("values", torch.zeros((out_features, in_features // 2), device=device, dtype=dtype))
        self.register_buffer(
            "meta",
            torch.full((out_features, meta_bytes(in_features)), _ZERO_META_BYTE, device=device, dtype=torch.uint8),
        )
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, device=device, dtype=dtype))
        else:
            self.bias = None
        self._mark_weights_static()

    def _mark_weights_static(self) -> None:
        # CUDA-graph trees (torch.compile mode="reduce-overhead") copy every input whose address
        # is not known to be static into the graph's own buffers on each replay. nn.Parameters are
        # static by default, buffers are not: unmarked, every decode step would copy the whole
        # compressed weight (seen on the H100 as sparse decode slower than dense).
        for t in (self.values, self.meta, self.bias):
            if t is not None:
                torch._dynamo.mark_static_address(t)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .to() / .half() / .cuda() replace the buffers with new tensors: mark those too.
        out = super()._apply(fn, recurse)
        self._mark_weights_static()
        return out

    @property
    def epilogue(self) -> str:
        """The kernel epilogue: activation plus bias (``bias_silu``, ``relu``, ``none``, ...)."""
        return epilogue_name(self.activation, self.bias is not None)

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @overload
    @classmethod
    def from_dense(
        cls,
        linear_or_weight: Union[nn.Linear, Tensor],
        bias: Optional[Tensor] = None,
        *,
        method: str = "magnitude",
        return_diff: Literal[False] = False,
        calibration: Optional[Union[Tensor, Calibration]] = None,
        activation: str = "none",
        prune_options: Optional[Dict[str, Any]] = None,
    ) -> "SparseLinear": ...

    @overload
    @classmethod
    def from_dense(
        cls,
        linear_or_weight: Union[nn.Linear, Tensor],
        bias: Optional[Tensor] = None,
        *,
        method: str = "magnitude",
        return_diff: Literal[True],
        calibration: Optional[Union[Tensor, Calibration]] = None,
        activation: str = "none",
        prune_options: Optional[Dict[str, Any]] = None,
    ) -> Tuple["SparseLinear", Dict[str, float]]: ...

    @classmethod
    def from_dense(
        cls,
        linear_or_weight: Union[nn.Linear, Tensor],
        bias: Optional[Tensor] = None,
        *,
        method: str = "magnitude",
        return_diff: bool = False,
        calibration: Optional[Union[Tensor, Calibration]] = None,
        activation: str = "none",
        prune_options: Optional[Dict[str, Any]] = None,
    ) -> Union["SparseLinear", Tuple["SparseLinear", Dict[str, float]]]:
        """Prunes a dense ``nn.Linear`` (or a weight ``[out, in]`` plus optional ``bias``) to 2:4.

        ``method="magnitude"`` keeps the 2 largest ``|w|`` of every group of 4 along
        ``in_features``. The result has the weight's dtype and device. With
        ``return_diff=True`` returns ``(module, diff)`` where ``diff`` has ``max_error``,
        ``mean_abs_error``, ``rel_fro_error``, ``kept_magnitude``, ``sparsity``,
        ``bytes_dense`` and ``bytes_sparse`` (see docs/PYTHON.md), and, when a
        ``calibration`` activation sample ``[..., in_features]`` is given, also
        ``output_max_error`` and ``output_rel_error`` (float64, ``x @ W.T`` vs ``x @ Ws.T``).

        ``method="wanda"``, ``"sparsegpt"`` or ``"sparsegpt-refine"`` choose the mask from
        ``calibration`` (this layer's input activations ``[..., in_features]``, or a
        :class:`sparseflow.Calibration` shared by layers that read the same input); SparseGPT
        also updates the kept weights to compensate. ``prune_options``: ``damping`` (0.01),
        ``block_size`` (128), ``refine_sweeps`` (4), ``progress`` (``callable(stage, done,
        total)``). Their reports add ``damping``, ``calibration_tokens`` and ``refine_*``.

        Errors (before anything is built): a weight that is not 2-D, on the meta device, of
        an unsupported dtype, with ``in_features % 4 != 0``, or holding NaN/Inf; an unknown
        method; a calibrated method without calibration, or calibration that is empty, of
        the wrong width, not floating point or holding NaN/Inf.
        """
        if isinstance(linear_or_weight, nn.Linear):
            if bias is not None:
                raise ValueError("pass either an nn.Linear or a weight plus bias, not an nn.Linear plus bias")
            weight, bias = linear_or_weight.weight, linear_or_weight.bias
        else:
            weight = linear_or_weight
        check_method(method)
        check_weight(weight)
        n, k = weight.shape
        if bias is not None:
            if not isinstance(bias, Tensor) or tuple(bias.shape) != (n,):
                raise ValueError(f"bias must be a tensor of shape [{n}], got {getattr(bias, 'shape', bias)}")
            if bias.device.type == "meta":
                raise ValueError("bias is on the meta device and has no data; materialize it first")
        host = weight.detach().to("cpu").contiguous()  # one host copy for pruning and the report
        if method == "magnitude":
            values, meta = compress_host(host, prune=True)
            report: Dict[str, Any] = {}
        else:
            cal = as_calibration(calibration, k) if calibration is not None else None
            values, meta, report = prune_host(host, method, cal, **(prune_options or {}))
        diff = _diff(host, values, meta, calibration if isinstance(calibration, Tensor) else None)
        diff.update({key: v for key, v in report.items() if key not in diff and key != "method"})
        module = cls(k, n, bias is not None, activation=activation, device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            module.values.copy_(values)
            module.meta.copy_(meta)
            if bias is not None and module.bias is not None:
                module.bias.copy_(bias.detach())
        module.method = method
        module.diff = diff
        return (module, dict(diff)) if return_diff else module

    def forward(self, x: Tensor) -> Tensor:
        """Same contract as ``nn.Linear.forward``: ``x [..., in_features]`` → ``[..., out_features]``.

        Runs the ``sparseflow::sparse_linear`` op; in eager inference (nothing to differentiate,
        plain tensors, not under torch.compile) it calls the op's kernel directly, which computes
        the same result without the op's per-call dispatch cost (:func:`ops.eager_fast_path`)."""
        if eager_fast_path(x, self.values, self.meta, self.bias):
            return _sparse_linear_impl(x, self.values, self.meta, self.bias, self.epilogue)
        return torch.ops.sparseflow.sparse_linear(x, self.values, self.meta, self.bias, self.epilogue)

    def to_dense(self) -> Tensor:
        """The pruned dense weight ``[out_features, in_features]`` (zeros where pruned), on this
        layer's device and dtype. The activation is not part of it."""
        return decompress(self.values, self.meta)

    def validate(self) -> None:
        """Checks that ``meta`` holds valid 2:4 codes and ``values`` is finite (e.g. after
        loading a file written elsewhere); raises ``ValueError`` otherwise."""
        check_meta(self.meta, self.in_features)
        if not bool(torch.isfinite(self.values).all()):
            raise ValueError("values contain NaN or Inf")

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, activation={self.activation}, dtype={self.values.dtype}, "
            "sparsity=2:4"
        )


def _diff(w: Tensor, v: Tensor, m: Tensor, calibration: Optional[Tensor]) -> Dict[str, float]:
    """The Rust diff report of host weight ``w`` against host ``(v, m)``, in ``w``'s dtype."""
    n, k = w.shape
    x_ptr, rows = None, 0
    if calibration is not None:
        if not isinstance(calibration, Tensor) or calibration.dim() == 0 or calibration.shape[-1] != k:
            raise ValueError(
                f"calibration must be a tensor [..., {k}] of activations, got {getattr(calibration, 'shape', calibration)}"
            )
        x = calibration.detach().reshape(-1, k).to("cpu", w.dtype).contiguous()
        if not bool(torch.isfinite(x).all()):
            raise ValueError("calibration sample contains NaN or Inf")
        x_ptr, rows = x.data_ptr(), x.shape[0]
        if rows == 0:
            raise ValueError("calibration sample has no rows")
    report = _C.diff(w.data_ptr(), v.data_ptr(), m.data_ptr(), n, k, dtype_name(w.dtype), x_ptr, rows)
    return dict(report)
