"""The ``sparseflow::sparse_linear`` custom op, the 2:4 format in torch, and kernel handles.

``torch.ops.sparseflow.sparse_linear(x, values, meta, bias, epilogue)`` computes
``epilogue(x @ W.T [+ bias])`` where ``W`` is the 2:4 weight stored as ``values [N, K/2]`` and
``meta [N, K/8]`` (uint8, the format of docs/FORMAT.md). It is a ``torch.library.custom_op`` with a fake
(meta) kernel, so ``torch.compile`` sees one opaque node (no graph break), and an autograd
formula, so inputs that require grad get correct gradients.

* CUDA tensors run SparseFlow's kernels on ``torch.cuda.current_stream()``. The op allocates its
  output with ``torch.empty`` (torch's caching allocator), never synchronizes and launches
  asynchronously, so it can be captured in a CUDA graph.
* CPU tensors run the CPU reference (Rust, rayon, fp32 accumulation): float16, bfloat16 and
  float32 weights.

On CUDA the weight is in the device (fragment) layout (:mod:`sparseflow.layout`): 1-D
``values`` and ``meta`` plus ``out_features`` / ``in_features``. A CUDA kernel handle *borrows*
those tensors and the bias — it reads them by address at every launch and holds no copy — so
every write to them, by any path, is seen by the next call. Handles are cached per
``(values, meta, bias)`` address, shape, dtype, device and epilogue (a handle for an address
is correct for whatever tensor of that shape lives there, so there is nothing to go stale);
:class:`~sparseflow.SparseLinear` creates its handle when its weight is laid out and keeps it.
Each M bucket's kernel is compiled (or loaded from the disk cache) on the first eager call of
that bucket or by :func:`sparseflow.prepare` (``max_tokens``): a CUDA-graph capture that meets a bucket
that is not ready raises instead of compiling. CPU tensors run the reference straight from the
tensors' current contents (no cache).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode as _current_dispatch_mode

from . import _C
from .activations import chain_grad
from .layout import fragment_numel, from_fragment, is_fragment, values_to_fragment

__all__ = [
    "ACTIVATIONS",
    "EPILOGUES",
    "SUPPORTED_DTYPES",
    "clear_cache",
    "compress",
    "decompress",
    "epilogue_name",
    "meta_bytes",
    "programmatic_launch",
    "set_programmatic_launch",
    "sparse_linear",
    "split_epilogue",
]

#: The library's epilogue table (crates/core/src/epilogue.rs), one dict per epilogue.
_TABLE: Tuple[Dict[str, Any], ...] = tuple(_C.epilogues())
_BY_NAME: Dict[str, Dict[str, Any]] = {e["name"]: e for e in _TABLE}
_BY_ACTIVATION: Dict[Tuple[str, bool], str] = {(e["activation"], e["has_bias"]): e["name"] for e in _TABLE}
#: Every epilogue the kernels know, in ABI order (``none``, ``relu``, ..., ``bias_relu2``).
EPILOGUES: Tuple[str, ...] = tuple(_BY_NAME)
#: Activations a :class:`~sparseflow.SparseLinear` can fuse (``none`` = plain linear), in table order.
ACTIVATIONS: Tuple[str, ...] = tuple(dict.fromkeys(e["activation"] for e in _TABLE))
#: Weight dtypes: fp16/bf16 everywhere, fp32 on the CPU reference path only.
SUPPORTED_DTYPES: Tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
_DTYPE_NAMES: Dict[torch.dtype, str] = {
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float32: "float32",
}
_VALID_META_CODES = (0b0100, 0b1000, 0b1100, 0b1001, 0b1101, 0b1110)
#: The padding nibble of a row whose group count is odd (the all-zero group's code).
_PADDING_CODE = 0b0100


def epilogue_name(activation: str, has_bias: bool) -> str:
    """The kernel epilogue for an activation with or without bias (``silu`` + bias → ``bias_silu``)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    return _BY_ACTIVATION[(activation, bool(has_bias))]


def split_epilogue(epilogue: str) -> Tuple[str, bool]:
    """Inverse of :func:`epilogue_name`: ``bias_silu`` → ``("silu", True)``."""
    if epilogue not in EPILOGUES:
        raise ValueError(f"unknown epilogue {epilogue!r}; valid: {', '.join(EPILOGUES)}")
    entry = _BY_NAME[epilogue]
    return entry["activation"], entry["has_bias"]


def meta_bytes(in_features: int) -> int:
    """Metadata bytes per row: one 4-bit code per group of 4, two groups per byte."""
    return (in_features // 4 + 1) // 2


def dtype_name(dtype: torch.dtype) -> str:
    """The dtype's name as the Rust side spells it; unsupported dtypes are a ``TypeError``."""
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise TypeError(
            f"unsupported dtype {dtype}: SparseFlow weights are torch.float16 or torch.bfloat16 "
            "(CPU and CUDA) or torch.float32 (CPU only)"
        ) from None


def check_weight(weight: Tensor, what: str = "weight") -> None:
    """Clear errors for weights SparseFlow cannot take (before any work is done)."""
    if not isinstance(weight, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor or nn.Linear, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(
            f"{what} must be 2-D [out_features, in_features] like nn.Linear.weight, got shape {tuple(weight.shape)}"
        )
    if weight.device.type == "meta":
        raise ValueError(
            f"{what} is on the meta device and has no data to prune; materialize it first "
            "(load the checkpoint, or model.to_empty(device=...) and initialize)"
        )
    dtype_name(weight.dtype)
    n, k = weight.shape
    if n == 0 or k == 0:
        raise ValueError(f"{what} has an empty dimension: shape {tuple(weight.shape)}")
    if k % 4 != 0:
        raise ValueError(
            f"in_features = {k} is not a multiple of 4: 2:4 sparsity groups 4 consecutive "
            "weights along in_features (pad the layer, or leave it dense)"
        )


def compress(weight: Tensor, prune: bool = True) -> Tuple[Tensor, Tensor]:
    """Compresses a dense ``[N, K]`` weight into ``(values [N, K/2], meta [N, K/8] uint8)``.

    With ``prune=True`` (default) the 2 largest-magnitude weights of each group of 4 along K
    are kept (ties to the lower index). With ``prune=False`` a weight that is not already 2:4 is
    an error. The result is on the weight's device and in its dtype. NaN/Inf weights are an
    error naming the row and column.
    """
    check_weight(weight)
    values, meta = compress_host(weight.detach().to("cpu").contiguous(), prune)
    return values.to(weight.device), meta.to(weight.device)


def compress_host(w: Tensor, prune: bool = True) -> Tuple[Tensor, Tensor]:
    """:func:`compress` for a contiguous CPU weight (checked by the caller); CPU results."""
    n, k = w.shape
    values = torch.empty((n, k // 2), dtype=w.dtype)
    meta = torch.empty((n, meta_bytes(k)), dtype=torch.uint8)
    _C.prune_compress(w.data_ptr(), n, k, dtype_name(w.dtype), prune, values.data_ptr(), meta.data_ptr())
    return values, meta


def _positions(meta: Tensor, n: int, k: int) -> Tensor:
    """The kept positions ``[N, K/4, 2]`` (int64) of every group, decoded from ``meta``."""
    m = meta.to(torch.int64)
    codes = torch.stack((m & 0xF, m >> 4), dim=-1).reshape(n, -1)[:, : k // 4]
    return torch.stack((codes & 3, codes >> 2), dim=-1)


def check_meta(meta: Tensor, in_features: int) -> None:
    """Raises ``ValueError`` if ``meta`` holds a code that is not two increasing positions."""
    n = meta.shape[0]
    m = meta.to(torch.int64)
    codes = torch.stack((m & 0xF, m >> 4), dim=-1).reshape(n, -1)[:, : in_features // 4]
    valid = torch.tensor(_VALID_META_CODES, device=meta.device)
    bad = ~torch.isin(codes, valid)
    if bool(bad.any()):
        row, group = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"meta row {row}, group {group}: code {int(codes[row, group]):#06b} is not two distinct "
            "increasing positions; the tensor is not SparseFlow 2:4 metadata"
        )
    if (in_features // 4) % 2 == 1 and meta.shape[1] > 0:
        # An odd number of groups leaves the high nibble of each row's last byte as padding,
        # which the format fixes to 0b0100 (docs/FORMAT.md); the kernels' loader checks it too.
        pad = m[:, -1] >> 4
        wrong = pad != _PADDING_CODE
        if bool(wrong.any()):
            row = int(wrong.nonzero()[0, 0])
            raise ValueError(
                f"meta row {row}: the padding nibble (high half of the last byte, in_features/4 = "
                f"{in_features // 4} groups is odd) is {int(pad[row]):#06b}, expected {_PADDING_CODE:#06b}"
            )


def decompress(values: Tensor, meta: Tensor) -> Tensor:
    """The dense ``[N, K]`` weight of a compressed pair, in torch ops (any device, differentiable
    in ``values``)."""
    n, half_k = values.shape
    k = 2 * half_k
    idx = _positions(meta, n, k)
    dense = values.new_zeros((n, k // 4, 4))
    dense = dense.scatter(2, idx, values.reshape(n, k // 4, 2))
    return dense.reshape(n, k)


# ----------------------------------------------------------------------------- handle cache

_handles: Dict[tuple, "_C.SparseGemmHandle"] = {}
_lock = threading.Lock()


def _key(values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str, n: int, k: int) -> tuple:
    # No version counter: the handle reads the tensors by address at every launch, so the
    # addresses (plus what the kernel is compiled for) identify everything it depends on.
    return (
        values.data_ptr(),
        meta.data_ptr(),
        0 if bias is None else bias.data_ptr(),
        values.dtype,
        values.device,
        n,
        k,
        epilogue,
    )


def _forget(key: tuple) -> None:
    with _lock:
        _handles.pop(key, None)


def set_programmatic_launch(on: bool, device: Optional[torch.device] = None) -> None:
    """Experimental: launch SparseFlow's kernels on a CUDA device with programmatic dependent
    launch (sm_90+), so each kernel's launch overlaps the end of the previous kernel on the
    stream; the kernel waits for it before touching memory, so results are unchanged.

    Off by default: it makes chains of decode kernels 3–5% faster in ``sparseflow benchmark
    --pdl``, but in end-to-end A/B runs of a ``transformers`` model under ``torch.compile`` CUDA
    graphs it gained nothing at batch 1 and cost 7–9% at batch 16 (docs/PERFORMANCE.md). ``device`` defaults to the current CUDA device.
    Raises ``RuntimeError`` on GPUs before sm_90 (when turning it on) or without CUDA.
    """
    _C.set_programmatic_launch(_cuda_index(device), bool(on))


def programmatic_launch(device: Optional[torch.device] = None) -> bool:
    """Whether :func:`set_programmatic_launch` is on for ``device`` (default: current)."""
    return _C.programmatic_launch(_cuda_index(device))


def _cuda_index(device: Optional[torch.device]) -> int:
    if not torch.cuda.is_available():
        raise RuntimeError("programmatic launch is a CUDA setting, and CUDA is not available here")
    if device is None:
        return torch.cuda.current_device()
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"programmatic launch is a CUDA setting; got device {device}")
    return device.index if device.index is not None else torch.cuda.current_device()


def clear_cache() -> None:
    """Drops the op's cache of kernel handles (a :class:`~sparseflow.SparseLinear` keeps its
    own handle; handles hold no weight copies, only compiled-kernel state)."""
    with _lock:
        _handles.clear()


_NOT_READY = (
    "sparseflow: this layer's kernels for {m} tokens are not ready, and CUDA-graph capture must "
    "not compile: call sparseflow.prepare(model, max_tokens=...) with the largest token count "
    "you will capture (or run the model once eagerly at this batch size) before capturing"
)


def device_handle(
    values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str, n: int, k: int
) -> "_C.SparseGemmHandle":
    """The kernel handle of a CUDA weight in the device layout, created on first use. It borrows
    ``values``, ``meta`` and ``bias`` (no copy); the caller keeps them alive while it is used."""
    key = _key(values, meta, bias, epilogue, n, k)
    handle = _handles.get(key)
    if handle is not None:
        return handle
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(_NOT_READY.format(m="any number of"))
    _check_device_layout(values, meta, bias, n, k)
    device = values.device.index if values.device.index is not None else torch.cuda.current_device()
    handle = _C.SparseGemmHandle.from_device_layout(
        values.data_ptr(),
        meta.data_ptr(),
        None if bias is None else bias.data_ptr(),
        n,
        k,
        dtype_name(values.dtype),
        epilogue,
        device,
    )
    with _lock:
        _handles[key] = handle
    weakref.finalize(values, _forget, key)
    return handle


def _check_device_layout(values: Tensor, meta: Tensor, bias: Optional[Tensor], n: int, k: int) -> None:
    want_v, want_m = fragment_numel(n, k)
    if values.dim() != 1 or values.numel() != want_v or not values.is_contiguous():
        raise ValueError(
            f"device-layout values of a [{n}, {k}] weight must be contiguous 1-D with {want_v} elements, "
            f"got shape {tuple(values.shape)}"
        )
    if meta.dim() != 1 or meta.numel() != want_m or not meta.is_contiguous():
        raise ValueError(
            f"device-layout meta of a [{n}, {k}] weight must be contiguous 1-D uint8 with {want_m} bytes, "
            f"got shape {tuple(meta.shape)}"
        )
    if bias is not None and not bias.is_contiguous():
        raise ValueError("bias must be contiguous (the kernel reads it by address)")


# ----------------------------------------------------------------------------- the op


def _dims(values: Tensor, meta: Tensor, out_features: int, in_features: int) -> Tuple[int, int]:
    """``(n, k)`` of the weight: from the shapes of a canonical pair, from the arguments for the
    device layout (1-D tensors), where they must be given."""
    if values.dim() == 2:
        n, k = values.shape[0], 2 * values.shape[1]
        if (out_features, in_features) not in ((-1, -1), (n, k)):
            raise ValueError(f"out_features/in_features {out_features}/{in_features} do not match values {tuple(values.shape)}")
        return n, k
    if values.dim() == 1 and meta.dim() == 1:
        if out_features <= 0 or in_features <= 0:
            raise ValueError("device-layout (1-D) values and meta need out_features and in_features")
        return out_features, in_features
    raise ValueError(
        f"values and meta must be 2-D [N, K/2], [N, K/8] or 1-D (device layout), got {tuple(values.shape)} and {tuple(meta.shape)}"
    )


def _check_operands(
    x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str, n: int, k: int
) -> None:
    _, has_bias = split_epilogue(epilogue)
    if meta.dtype != torch.uint8:
        raise TypeError(f"meta must be torch.uint8, got {meta.dtype}")
    if values.dim() == 2:
        if tuple(meta.shape) != (n, meta_bytes(k)):
            raise ValueError(
                f"meta has shape {tuple(meta.shape)}, expected {(n, meta_bytes(k))} for values {tuple(values.shape)}"
            )
        if x.is_cuda:
            raise ValueError(
                "on CUDA, sparse_linear takes the weight in the device layout (one copy, read in "
                "place): use a SparseLinear, or sparseflow.layout.to_fragment(values, meta) and "
                "pass out_features and in_features"
            )
    else:
        want_v, want_m = fragment_numel(n, k)
        if values.numel() != want_v or meta.numel() != want_m:
            raise ValueError(
                f"device-layout values/meta of a [{n}, {k}] weight need {want_v}/{want_m} elements, "
                f"got {values.numel()}/{meta.numel()}"
            )
        if k % 4 != 0:
            raise ValueError(f"in_features = {k} is not a multiple of 4")
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"input has shape {tuple(x.shape)}: its last dimension must be in_features = {k}")
    if x.dtype != values.dtype:
        raise TypeError(
            f"input dtype {x.dtype} does not match the layer's {values.dtype}: cast the input, "
            f"or the layer with .to({x.dtype})"
        )
    dtype_name(values.dtype)
    if has_bias != (bias is not None):
        raise ValueError(f"epilogue {epilogue!r} {'needs' if has_bias else 'takes no'} bias")
    if bias is not None and (bias.shape != (n,) or bias.dtype != values.dtype):
        raise ValueError(f"bias must be [{n}] of dtype {values.dtype}, got {tuple(bias.shape)} {bias.dtype}")
    devices = {x.device, values.device, meta.device} | ({bias.device} if bias is not None else set())
    if len(devices) != 1:
        raise ValueError(f"all operands must be on one device, got {sorted(str(d) for d in devices)}")
    if x.device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"sparseflow runs on cpu and cuda tensors, got {x.device}")
    if x.is_cuda and x.dtype == torch.float32:
        raise TypeError(
            "float32 runs on the CPU only: SparseFlow's CUDA kernels use fp16/bf16 sparse tensor "
            "cores; convert the layer and input with .half() or .to(torch.bfloat16)"
        )


def _sparse_linear_impl(
    x: Tensor,
    values: Tensor,
    meta: Tensor,
    bias: Optional[Tensor],
    epilogue: str,
    out_features: int = -1,
    in_features: int = -1,
) -> Tensor:
    """The op's kernel (CPU and CUDA): checks, handle lookup, output allocation, launch."""
    n, k = _dims(values, meta, out_features, in_features)
    _check_operands(x, values, meta, bias, epilogue, n, k)
    x2 = x.reshape(-1, k)
    # Kernels read rows with 16-byte vector loads: a misaligned view gets its own buffer.
    if not x2.is_contiguous() or x2.data_ptr() % 16 != 0:
        x2 = x2.clone(memory_format=torch.contiguous_format)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0 and x.is_cuda:
        handle = device_handle(values, meta, bias, epilogue, n, k)
        if not handle.is_prepared(m) and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(_NOT_READY.format(m=m))
        # The runtime fills a stream's new split-K scratch with its empty sentinel by a
        # stream-ordered memset, so launching (and capturing) on any stream is legal once the
        # kernel is compiled.
        stream = torch.cuda.current_stream(x.device).cuda_stream
        handle.forward(x2.data_ptr(), y.data_ptr(), m, stream)
    elif m > 0:
        if values.dim() == 1:
            values, meta = from_fragment(values, meta, n, k)
        v, mt = values.contiguous(), meta.contiguous()
        b = None if bias is None else bias.to(values.dtype).contiguous()
        _C.sparse_linear_host(
            x2.data_ptr(), m, v.data_ptr(), mt.data_ptr(), None if b is None else b.data_ptr(),
            n, k, dtype_name(values.dtype), epilogue, y.data_ptr(),
        )  # fmt: skip
    return y.reshape(*x.shape[:-1], n)


@torch.library.custom_op("sparseflow::sparse_linear", mutates_args=())
def sparse_linear(
    x: Tensor,
    values: Tensor,
    meta: Tensor,
    bias: Optional[Tensor],
    epilogue: str,
    out_features: int = -1,
    in_features: int = -1,
) -> Tensor:
    """``epilogue(x @ W.T [+ bias])`` for the 2:4 weight ``W`` = (values, meta); ``x [..., K]``.
    ``values``/``meta`` are canonical (``[N, K/2]``, ``[N, K/8]``; CPU) or in the device layout
    (1-D, with ``out_features`` = N and ``in_features`` = K; CPU and CUDA)."""
    return _sparse_linear_impl(x, values, meta, bias, epilogue, out_features, in_features)


def _plain(t: Optional[Tensor]) -> bool:
    return t is None or type(t) in (Tensor, torch.nn.Parameter)


def eager_fast_path(x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor]) -> bool:
    """Whether a call may skip the custom op's dispatch and run its kernel directly.

    The op's Python dispatch (autograd wrapper, dynamo guard, backend redispatch) costs tens of
    µs per call, more than a decode kernel: eager inference would be host-bound. The direct call
    runs the same kernel, so it is taken only where the op would add nothing: plain tensors (no
    subclass, fake, functorch or traced tensor), no torch-function or dispatch mode, nothing to
    differentiate, and not while torch.compile traces (which must see the op)."""
    if torch.compiler.is_compiling():
        return False
    if not (_plain(x) and _plain(values) and _plain(meta) and _plain(bias)):
        return False
    if torch.is_grad_enabled() and (
        x.requires_grad or values.requires_grad or (bias is not None and bias.requires_grad)
    ):
        return False
    if torch._C._is_torch_function_mode_enabled() or _current_dispatch_mode() is not None:
        return False
    return not torch._C._functorch.is_functorch_wrapped_tensor(x)


@sparse_linear.register_fake
def _sparse_linear_fake(
    x: Tensor,
    values: Tensor,
    meta: Tensor,
    bias: Optional[Tensor],
    epilogue: str,
    out_features: int = -1,
    in_features: int = -1,
) -> Tensor:
    n, k = _dims(values, meta, out_features, in_features)
    _check_operands(x, values, meta, bias, epilogue, n, k)
    return x.new_empty((*x.shape[:-1], n))


# ----------------------------------------------------------------------------- autograd

def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch's signature)
    x, values, meta, bias, epilogue, out_features, in_features = inputs
    ctx.epilogue = epilogue
    ctx.dims = _dims(values, meta, out_features, in_features)
    ctx.save_for_backward(x, values, meta, bias)


def _backward(ctx, grad: Tensor):  # noqa: ANN001, ANN202 (torch's signature)
    x, values, meta, bias = ctx.saved_tensors
    activation, _ = split_epilogue(ctx.epilogue)
    n, k = ctx.dims
    half_k = k // 2
    fragment = is_fragment(values)
    if fragment:
        values, meta = from_fragment(values, meta, n, k)
    w = decompress(values, meta).float()
    x2 = x.reshape(-1, k).float()
    g = grad.reshape(-1, n).float()
    if activation != "none":
        pre = x2 @ w.T
        if bias is not None:
            pre = pre + bias.float()
        g = g * chain_grad(_BY_NAME[ctx.epilogue]["activation_ops"], pre)
    grad_x = grad_values = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = (g @ w).to(x.dtype).reshape(x.shape)
    if ctx.needs_input_grad[1]:
        idx = _positions(meta, n, k)
        gw = (g.T @ x2).reshape(n, k // 4, 4)
        grad_values = gw.gather(2, idx).reshape(n, half_k).to(values.dtype)
        if fragment:
            grad_values = values_to_fragment(grad_values).contiguous()
    if bias is not None and ctx.needs_input_grad[3]:
        grad_bias = g.sum(0).to(bias.dtype)
    return grad_x, grad_values, None, grad_bias, None, None, None


torch.library.register_autograd("sparseflow::sparse_linear", _backward, setup_context=_setup_context)

