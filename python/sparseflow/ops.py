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

Kernel handles (the uploaded/compiled form of one weight) are cached per
``(values, meta, bias)`` storage, version, dtype, device and epilogue, and dropped when the
``values`` tensor is freed or modified in place. Creating one copies the weight to the host and
compiles kernels, so it must happen outside CUDA-graph capture: run the layer once (eager,
any batch size in the same M bucket) before capturing; ``torch.compile(mode="reduce-overhead")``
does that warm-up by itself.
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

__all__ = [
    "ACTIVATIONS",
    "EPILOGUES",
    "SUPPORTED_DTYPES",
    "clear_cache",
    "compress",
    "decompress",
    "epilogue_name",
    "meta_bytes",
    "prepare",
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


def _version(t: Optional[Tensor]) -> int:
    if t is None:
        return 0
    try:
        return t._version
    except RuntimeError:  # inference-mode tensors have no version counter
        return -1


def _key(values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> tuple:
    return (
        values.data_ptr(),
        meta.data_ptr(),
        0 if bias is None else bias.data_ptr(),
        _version(values),
        _version(meta),
        _version(bias),
        values.dtype,
        values.device,
        tuple(values.shape),
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
    """Drops every cached kernel handle (their device copies of the weights are freed)."""
    with _lock:
        _handles.clear()


def _handle(values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> "_C.SparseGemmHandle":
    key = _key(values, meta, bias, epilogue)
    handle = _handles.get(key)
    if handle is not None:
        return handle
    if values.is_cuda and torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "sparseflow: this layer's kernels are not ready and cannot be prepared during CUDA "
            "graph capture (it copies the weight and compiles); run the model once eagerly "
            "before capturing, or call sparseflow.prepare(model, batch_tokens)"
        )
    n, half_k = values.shape
    host_values = values.detach().to("cpu").contiguous()
    host_meta = meta.detach().to("cpu").contiguous()
    host_bias = None if bias is None else bias.detach().to("cpu", values.dtype).contiguous()
    device = None
    if values.is_cuda:
        device = values.device.index if values.device.index is not None else torch.cuda.current_device()
    handle = _C.SparseGemmHandle(
        host_values.data_ptr(),
        host_meta.data_ptr(),
        None if host_bias is None else host_bias.data_ptr(),
        n,
        2 * half_k,
        dtype_name(values.dtype),
        epilogue,
        device,
    )
    with _lock:
        # An in-place update of the weight leaves entries under older versions: drop them.
        stale = [k for k in _handles if k[:3] == key[:3] and k[6:] == key[6:]]
        for k in stale:
            del _handles[k]
        _handles[key] = handle
    weakref.finalize(values, _forget, key)
    return handle


# ----------------------------------------------------------------------------- the op


def _check_operands(x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> None:
    _, has_bias = split_epilogue(epilogue)
    if values.dim() != 2 or meta.dim() != 2:
        raise ValueError(f"values and meta must be 2-D, got {tuple(values.shape)} and {tuple(meta.shape)}")
    n, half_k = values.shape
    k = 2 * half_k
    if meta.dtype != torch.uint8:
        raise TypeError(f"meta must be torch.uint8, got {meta.dtype}")
    if tuple(meta.shape) != (n, meta_bytes(k)):
        raise ValueError(
            f"meta has shape {tuple(meta.shape)}, expected {(n, meta_bytes(k))} for values {tuple(values.shape)}"
        )
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


def _sparse_linear_impl(x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> Tensor:
    """The op's kernel (CPU and CUDA): checks, handle lookup, output allocation, launch."""
    _check_operands(x, values, meta, bias, epilogue)
    n, half_k = values.shape
    k = 2 * half_k
    x2 = x.reshape(-1, k)
    # Kernels read rows with 16-byte vector loads: a misaligned view gets its own buffer.
    if not x2.is_contiguous() or x2.data_ptr() % 16 != 0:
        x2 = x2.clone(memory_format=torch.contiguous_format)
    m = x2.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m > 0:
        handle = _handle(values, meta, bias, epilogue)
        stream = 0
        if x.is_cuda:
            # The runtime fills a stream's new split-K scratch with its empty sentinel by a
            # stream-ordered memset, so launching (and capturing) on any stream is legal once
            # the kernel is compiled.
            stream = torch.cuda.current_stream(x.device).cuda_stream
        handle.forward(x2.data_ptr(), y.data_ptr(), m, stream)
    return y.reshape(*x.shape[:-1], n)


@torch.library.custom_op("sparseflow::sparse_linear", mutates_args=())
def sparse_linear(x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> Tensor:
    """``epilogue(x @ W.T [+ bias])`` for the 2:4 weight ``W`` = (values, meta); ``x [..., K]``."""
    return _sparse_linear_impl(x, values, meta, bias, epilogue)


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
def _sparse_linear_fake(x: Tensor, values: Tensor, meta: Tensor, bias: Optional[Tensor], epilogue: str) -> Tensor:
    _check_operands(x, values, meta, bias, epilogue)
    return x.new_empty((*x.shape[:-1], values.shape[0]))


# ----------------------------------------------------------------------------- autograd

def _setup_context(ctx, inputs, output) -> None:  # noqa: ANN001 (torch's signature)
    x, values, meta, bias, epilogue = inputs
    ctx.epilogue = epilogue
    ctx.save_for_backward(x, values, meta, bias)


def _backward(ctx, grad: Tensor):  # noqa: ANN001, ANN202 (torch's signature)
    x, values, meta, bias = ctx.saved_tensors
    activation, _ = split_epilogue(ctx.epilogue)
    n, half_k = values.shape
    k = 2 * half_k
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
    if bias is not None and ctx.needs_input_grad[3]:
        grad_bias = g.sum(0).to(bias.dtype)
    return grad_x, grad_values, None, grad_bias, None


torch.library.register_autograd("sparseflow::sparse_linear", _backward, setup_context=_setup_context)


def prepare(module: torch.nn.Module, batch_tokens: int = 1) -> int:
    """Creates the kernel handles of every :class:`~sparseflow.SparseLinear` in ``module`` and
    plans/compiles for ``batch_tokens`` rows, so a following CUDA-graph capture finds them ready.
    Returns the number of layers prepared."""
    from .linear import SparseLinear

    count = 0
    for layer in module.modules():
        if isinstance(layer, SparseLinear):
            h = _handle(layer.values, layer.meta, layer.bias, layer.epilogue)
            h.prepare(max(1, int(batch_tokens)))
            count += 1
    return count
