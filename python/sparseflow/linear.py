"""``SparseLinear``: a drop-in ``nn.Linear`` whose weight is stored 2:4-compressed."""

from __future__ import annotations

from typing import Any, Dict, Literal, NamedTuple, Optional, Tuple, Union, overload

import torch
from torch import Tensor, nn

from . import _C
from .layout import from_fragment, is_fragment, meta_to_fragment, to_fragment, values_to_fragment
from .ops import (
    _sparse_linear_impl,
    eager_fast_path,
    check_meta,
    check_weight,
    compress_host,
    decompress,
    device_handle,
    dtype_name,
    epilogue_name,
    meta_bytes,
)
from .prune import METHODS, Calibration, as_calibration, check_method, prune_host

__all__ = ["SparseLinear", "METHODS", "prepare"]

# An all-zero group stores positions 0 and 1 (code 0b0100); two groups per byte.
_ZERO_META_BYTE = 0x44


class SparseLinear(nn.Module):
    """``y = activation(x @ W.T + bias)`` with ``W`` stored in SparseFlow's 2:4 format.

    ``state_dict`` holds the canonical format of docs/FORMAT.md: ``values [out_features,
    in_features/2]`` (the two kept weights of every group of 4, float16/bfloat16, or float32 on
    CPU), ``meta [out_features, in_features/8]`` (uint8, two 4-bit position codes per byte) and,
    if present, ``bias [out_features]``. The buffers hold that format on the CPU; on CUDA they
    hold the same weight once, in the device layout every kernel reads (:mod:`sparseflow.layout`:
    1-D ``values`` and ``meta``), which the layer's kernel handle reads in place — no second
    copy. :meth:`canonical` returns the canonical pair on any device. ``.to(device)``,
    ``.half()``, ``.to(torch.bfloat16)`` convert (and re-lay out) ``values`` and ``bias``;
    ``meta`` stays uint8.

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
        #: The largest token count :func:`sparseflow.prepare` made this layer ready for.
        self.max_tokens: Optional[int] = None
        self._kernel: Optional["_C.SparseGemmHandle"] = None
        self._relayout()

    def __getstate__(self) -> Dict[str, Any]:
        # The kernel handle borrows this instance's tensors: a copy (deepcopy, pickle) binds
        # its own on first use instead.
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state["_kernel"] = None
        return state

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ("values", "meta") and isinstance(value, Tensor) and "_kernel" in self.__dict__:
            if value.is_cuda and value.dim() != 1:
                raise ValueError(
                    f"a CUDA SparseLinear holds {name} in the device layout (1-D): set the canonical "
                    "pair with layer.set_weight(values, meta), or lay it out with "
                    "sparseflow.layout.to_fragment"
                )
        super().__setattr__(name, value)
        if name in ("values", "meta", "bias") and "_kernel" in self.__dict__:
            self._prepare()

    @property
    def layout(self) -> str:
        """``"device"`` (CUDA: the fragment layout the kernels read) or ``"canonical"``."""
        return "device" if is_fragment(self.values) else "canonical"

    def canonical(self) -> Tuple[Tensor, Tensor]:
        """The canonical ``(values [N, K/2], meta [N, K/8])`` on this layer's device (the
        buffers themselves on the CPU, a converted copy on CUDA)."""
        if is_fragment(self.values):
            return from_fragment(self.values, self.meta, self.out_features, self.in_features)
        return self.values, self.meta

    def set_weight(self, values: Tensor, meta: Tensor) -> None:
        """Overwrites the weight in place with a canonical pair (any device; converted to this
        layer's layout and dtype). Invalid metadata is a ``ValueError``."""
        n, k = self.out_features, self.in_features
        if tuple(values.shape) != (n, k // 2) or tuple(meta.shape) != (n, meta_bytes(k)):
            raise ValueError(
                f"expected values {(n, k // 2)} and meta {(n, meta_bytes(k))}, got {tuple(values.shape)}, {tuple(meta.shape)}"
            )
        check_meta(meta, k)
        with torch.no_grad():
            values = values.to(self.values.dtype)
            if is_fragment(self.values):
                # Lay out where the data is (host data stays on the host: one copy to the GPU).
                values, meta = to_fragment(values, meta)
            self.values.copy_(values)
            self.meta.copy_(meta)

    def _relayout(self) -> None:
        """Puts the buffers in their device's layout and binds (or re-binds) the kernel handle."""
        v, m = self._buffers["values"], self._buffers["meta"]
        if v is not None and m is not None:
            n, k = self.out_features, self.in_features
            with torch.no_grad():
                if v.is_cuda and not is_fragment(v):
                    self._buffers["values"] = values_to_fragment(v).contiguous()
                    self._buffers["meta"] = meta_to_fragment(m, k)
                elif not v.is_cuda and is_fragment(v):
                    self._buffers["values"], self._buffers["meta"] = from_fragment(v, m, n, k)
        self._mark_weights_static()
        self._prepare()

    def _prepare(self) -> None:
        """Binds the kernel handle to the current tensors (no copy, no compile) and, after
        :func:`sparseflow.prepare`, compiles every M bucket up to ``max_tokens``."""
        self._kernel = None
        v = self.values
        if v is None or not v.is_cuda or v.dtype not in (torch.float16, torch.bfloat16):
            return
        bias = self.bias
        if bias is not None and (bias.dtype != v.dtype or bias.device != v.device or not bias.is_contiguous()):
            return  # the op reports the mismatch at the first call
        self._kernel = device_handle(v, self.meta, bias, self.epilogue, self.out_features, self.in_features)
        if self.max_tokens is not None:
            self._kernel.prepare_up_to(self.max_tokens)

    def prepare(self, max_tokens: Optional[int] = None, *, batch_tokens: Optional[int] = None) -> int:
        """Makes this CUDA layer ready for every M up to ``max_tokens`` (or the one bucket of
        ``batch_tokens``); see :func:`sparseflow.prepare`. Returns 1 if prepared, 0 on CPU."""
        if not self.values.is_cuda:
            return 0
        if max_tokens is not None:
            self.max_tokens = max(int(max_tokens), self.max_tokens or 1)
        self._prepare()
        if self._kernel is None:
            raise RuntimeError(f"cannot prepare this layer on CUDA: values {self.values.dtype}, bias {getattr(self.bias, 'dtype', None)}")
        if batch_tokens is not None:
            self._kernel.prepare(max(1, int(batch_tokens)))
        return 1

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if is_fragment(self.values):
            # The file / state_dict format is canonical (docs/FORMAT.md) whatever the device.
            values, meta = from_fragment(self.values.detach(), self.meta, self.out_features, self.in_features)
            destination[prefix + "values"], destination[prefix + "meta"] = values, meta

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # type: ignore[no-untyped-def]
        kv, km = prefix + "values", prefix + "meta"
        if is_fragment(self.values) and kv in state_dict and km in state_dict:
            n, k = self.out_features, self.in_features
            v, m = state_dict[kv], state_dict[km]
            if tuple(v.shape) == (n, k // 2) and tuple(m.shape) == (n, meta_bytes(k)):
                check_meta(m, k)
                with torch.no_grad():
                    v, m = to_fragment(v.to(self.values.dtype), m)
                state_dict = dict(state_dict)
                state_dict[kv], state_dict[km] = v, m
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        self._relayout()

    def _mark_weights_static(self) -> None:
        # CUDA-graph trees (torch.compile mode="reduce-overhead") copy every input whose address
        # is not known to be static into the graph's own buffers on each replay. nn.Parameters are
        # static by default, buffers are not: unmarked, every decode step would copy the whole
        # compressed weight (seen on the H100 as sparse decode slower than dense).
        for t in (self.values, self.meta, self.bias):
            if t is not None:
                torch._dynamo.mark_static_address(t)

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .to() / .half() / .cuda() replace the buffers with new tensors: lay them out for their
        # device, mark them static and bind the kernel handle to them.
        out = super()._apply(fn, recurse)
        self._relayout()
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
        pruned = cls._prune_on_host(linear_or_weight, bias, method, calibration, prune_options)
        module = cls._from_host(pruned.values, pruned.meta, pruned.bias, pruned.device, activation)
        module.method = method
        module.diff = pruned.diff
        return (module, dict(pruned.diff)) if return_diff else module

    @classmethod
    def _prune_on_host(
        cls,
        linear_or_weight: Union[nn.Linear, Tensor],
        bias: Optional[Tensor],
        method: str,
        calibration: Optional[Union[Tensor, Calibration]],
        prune_options: Optional[Dict[str, Any]],
    ) -> "_Pruned":
        """The host half of :meth:`from_dense`: checks, one host copy of the weight, pruning and
        the report. Touches no device memory, so :func:`sparseflow.sparsify` runs it on worker
        threads and builds each layer on the device only after freeing its dense weight."""
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
        del host
        return _Pruned(values, meta, None if bias is None else bias.detach(), weight.device, diff)

    @classmethod
    def _from_host(
        cls, values: Tensor, meta: Tensor, bias: Optional[Tensor], device: torch.device, activation: str
    ) -> "SparseLinear":
        """The layer of a canonical host pair on ``device``. For CUDA the pair is laid out on
        the host and copied once: the only device memory allocated is the layer's own buffers
        (no zero-filled placeholders, no temporaries left in the caching allocator's cache)."""
        n, k = values.shape[0], 2 * values.shape[1]
        module = cls(k, n, bias is not None, activation=activation, device="meta", dtype=values.dtype)
        module._place(values, meta, bias, device)
        return module

    def _place(self, values: Tensor, meta: Tensor, bias: Optional[Tensor], device: torch.device) -> None:
        """Replaces the buffers by a canonical host pair (plus bias) on ``device``, laid out on
        the host first when the device is CUDA."""
        device = torch.device(device)
        if device.type == "cuda":
            values, meta = to_fragment(values, meta)
        self._buffers["values"] = values.to(device)
        self._buffers["meta"] = meta.to(device)
        if bias is not None:
            self._buffers["bias"] = bias.detach().to(device, values.dtype, copy=True).contiguous()
        self._relayout()

    def forward(self, x: Tensor) -> Tensor:
        """Same contract as ``nn.Linear.forward``: ``x [..., in_features]`` → ``[..., out_features]``.

        Runs the ``sparseflow::sparse_linear`` op; in eager inference (nothing to differentiate,
        plain tensors, not under torch.compile) it calls the op's kernel directly, which computes
        the same result without the op's per-call dispatch cost (:func:`ops.eager_fast_path`)."""
        n, k = self.out_features, self.in_features
        if eager_fast_path(x, self.values, self.meta, self.bias):
            return _sparse_linear_impl(x, self.values, self.meta, self.bias, self.epilogue, n, k)
        return torch.ops.sparseflow.sparse_linear(x, self.values, self.meta, self.bias, self.epilogue, n, k)

    def to_dense(self) -> Tensor:
        """The pruned dense weight ``[out_features, in_features]`` (zeros where pruned), on this
        layer's device and dtype. The activation is not part of it."""
        return decompress(*self.canonical())

    def validate(self) -> None:
        """Checks that ``meta`` holds valid 2:4 codes and ``values`` is finite (e.g. after
        loading a file written elsewhere); raises ``ValueError`` otherwise."""
        check_meta(self.canonical()[1], self.in_features)
        if not bool(torch.isfinite(self.values).all()):
            raise ValueError("values contain NaN or Inf")

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, activation={self.activation}, dtype={self.values.dtype}, "
            "sparsity=2:4"
        )


def prepare(module: nn.Module, batch_tokens: Optional[int] = None, *, max_tokens: Optional[int] = None) -> int:
    """Makes every CUDA :class:`~sparseflow.SparseLinear` in ``module`` ready to run any M up to
    ``max_tokens`` rows (every M bucket 1, 2, 4, ..., up to the bucket of ``max_tokens``: kernels
    compiled or loaded from the disk cache, handles bound to the layers' own tensors), so CUDA-graph
    capture and ``torch.compile`` never compile or copy. The layers remember ``max_tokens`` and
    prepare again up to it when their weight is re-laid out (``.to()``, ``load_state_dict``).
    ``batch_tokens`` (the older spelling) prepares that one bucket. Returns the number of layers
    prepared; CPU layers need nothing and are not counted."""
    if max_tokens is None and batch_tokens is None:
        max_tokens = 1
    count = 0
    for layer in module.modules():
        if isinstance(layer, SparseLinear) and layer.values.is_cuda:
            count += layer.prepare(max_tokens=max_tokens, batch_tokens=batch_tokens)
    return count


class _Pruned(NamedTuple):
    """A weight pruned on the host, not yet on its device (see ``SparseLinear._prune_on_host``)."""

    values: Tensor
    meta: Tensor
    bias: Optional[Tensor]
    device: torch.device
    diff: Dict[str, Any]


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
