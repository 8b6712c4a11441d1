"""Stubs for the compiled module ``sparseflow._C`` (crates/python).

Low level: every function takes raw addresses of contiguous tensors (``tensor.data_ptr()``),
shapes and a dtype name (``"float16"``, ``"bfloat16"``, ``"float32"``). The caller guarantees
the tensors have those sizes, live during the call, and that outputs alias no input; the
public API in ``sparseflow`` does this. Shape and format problems raise ``ValueError``,
device/driver problems ``RuntimeError``.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

__version__: str

def prune_compress(w_ptr: int, n: int, k: int, dtype: str, prune: bool, values_ptr: int, meta_ptr: int) -> None:
    """Host weight ``[n, k]`` → ``values [n, k/2]`` + ``meta [n, ceil(k/8)]``; with ``prune``
    magnitude-prunes to 2:4 first, otherwise a non-2:4 weight is an error."""

def decompress(values_ptr: int, meta_ptr: int, n: int, k: int, dtype: str, out_ptr: int) -> None:
    """Host compressed pair → dense ``[n, k]`` at ``out_ptr`` (validates the metadata)."""

def diff(
    w_ptr: int,
    values_ptr: int,
    meta_ptr: int,
    n: int,
    k: int,
    dtype: str,
    x_ptr: Optional[int] = None,
    m: int = 0,
) -> Dict[str, float]:
    """The diff report of a dense host weight against its compressed form; with an activation
    sample ``x [m, k]`` also ``output_max_error`` / ``output_rel_error``."""

def epilogues() -> List[Dict[str, Any]]:
    """The epilogue table in ABI order: ``{"name": "bias_relu2", "id": 11, "activation": "relu2",
    "activation_ops": ["relu2"], "has_bias": True}`` per epilogue."""

def epilogue_uses_bias(name: str) -> bool: ...

def set_programmatic_launch(device: int, on: bool) -> None:
    """Programmatic dependent launch on/off for CUDA device ``device`` (sm_90+; else
    ``RuntimeError`` when turning it on)."""

def programmatic_launch(device: int) -> bool: ...
def runtime_memory(device: int) -> Dict[str, int]:
    """SparseFlow's own device memory on CUDA device ``device`` besides the layers' weights:
    ``workspace_bytes``, ``loaded_kernels``, ``kernel_code_bytes``, ``max_kernel_local_bytes``,
    ``stack_limit_bytes`` (the context's per-thread stack limit, shared with PyTorch)."""

class SparseGemmHandle:
    """One 2:4 weight ready to run ``y = epilogue(x @ W.T [+ b])`` on the CPU or a CUDA device."""

    def __init__(
        self,
        values_ptr: int,
        meta_ptr: int,
        bias_ptr: Optional[int],
        n: int,
        k: int,
        dtype: str,
        epilogue: str,
        device: Optional[int] = None,
    ) -> None:
        """From host tensors; ``device=None`` → CPU reference, ``device=i`` → CUDA device i
        (uploads the weight; fp16/bf16 only)."""

    def forward(self, x_ptr: int, y_ptr: int, m: int, stream: int) -> None:
        """``y [m, n]`` from ``x [m, k]``: host pointers for a CPU handle (synchronous), device
        pointers and a ``CUstream`` address for a CUDA handle (asynchronous, capturable)."""

    def prepare(self, m: int) -> None:
        """Plan/compile/upload for ``m`` rows without launching (before CUDA-graph capture)."""

    @staticmethod
    def from_device_layout(
        values_ptr: int, meta_ptr: int, bias_ptr: Optional[int], n: int, k: int, dtype: str, epilogue: str, device: int
    ) -> "SparseGemmHandle":
        """Adopts CUDA tensors in the device (fragment) layout without copying: every launch reads
        them (and the bias) in place; the caller keeps them alive."""

    def prepare_up_to(self, max_tokens: int) -> None:
        """Prepares every M bucket up to ``max_tokens``."""

    def is_prepared(self, m: int) -> bool:
        """Whether ``m`` rows launch without compiling."""

    @property
    def owned_device_bytes(self) -> int:
        """Device bytes the runtime holds for the weight (0 for an adopted one)."""

    @property
    def n(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def epilogue(self) -> str: ...
    @property
    def device(self) -> Optional[int]: ...

def model_save(
    path: str, manifest_json: str, tensors: List[Tuple[str, str, List[int], int, int]], files: List[Tuple[str, bytes]], force: bool
) -> str:
    """Writes a model directory through ``sparseflow-model`` (staged, fsynced, atomic); each tensor
    is ``(name, torch dtype name, shape, data_ptr, nbytes)`` of a contiguous CPU tensor. Returns
    the absolute path. ``FileExistsError`` for an existing target without ``force`` or a
    non-SparseFlow target; ``ValueError`` for an invalid manifest."""

def model_shard_tp(src: str, dest: str, size: int, force: bool) -> str:
    """Writes the tensor-parallel directory ``dest`` of the unsharded model ``src`` over ``size``
    ranks (per-rank files, the split in ``sparseflow.json``); returns the absolute path."""

def model_load(path: str) -> Tuple[str, List[Tuple[str, str, List[int], bytearray]], Optional[bytes]]:
    """Reads and validates a model directory: ``(manifest JSON, [(name, dtype, shape, data)],
    config.json or None)``."""

class Calibration:
    """``H = XᵀX`` (float64) of one layer input, accumulated over host activation batches."""

    def __init__(self, k: int) -> None: ...
    def accumulate(self, x_ptr: int, m: int, dtype: str) -> None:
        """Adds host activations ``[m, k]`` (``ValueError`` on NaN/Inf, m == 0)."""
    def permuted(self, perm: List[int]) -> "Calibration": ...
    @property
    def k(self) -> int: ...
    @property
    def tokens(self) -> int: ...

def prune_calibrated(
    w_ptr: int,
    n: int,
    k: int,
    dtype: str,
    method: str,
    calibration: Optional[Calibration],
    values_ptr: int,
    meta_ptr: int,
    damping: float = 0.01,
    block_size: int = 128,
    refine_sweeps: int = 4,
    progress: Optional[Callable[[str, int, int], None]] = None,
) -> Dict[str, Any]:
    """Host weight ``[n, k]`` pruned with ``method`` (magnitude, wanda, sparsegpt,
    sparsegpt-refine) into ``values`` / ``meta``; returns the report."""

def find_permutation(
    w_ptr: int,
    n: int,
    k: int,
    dtype: str,
    calibration: Optional[Calibration] = None,
    window: int = 64,
    passes: int = 4,
) -> List[int]:
    """Input-channel permutation under which 2:4 keeps more importance."""

def fragment_layout_bytes(n: int, k: int) -> Tuple[int, int]:
    """``(values, meta)`` bytes of a ``[n, k]`` fp16/bf16 weight in the device layout."""

def to_fragment_layout(
    values_ptr: int, meta_ptr: int, n: int, k: int, dtype: str, out_values_ptr: int, out_meta_ptr: int
) -> None:
    """The Rust device layout (crates/codegen/src/layout.rs) of a canonical host pair."""

def from_fragment_layout(
    fvalues_ptr: int, fmeta_ptr: int, n: int, k: int, dtype: str, values_ptr: int, meta_ptr: int
) -> None:
    """The canonical host pair of device-layout host bytes."""

def sparse_linear_host(
    x_ptr: int, m: int, values_ptr: int, meta_ptr: int, bias_ptr: Optional[int], n: int, k: int,
    dtype: str, epilogue: str, y_ptr: int,
) -> None:
    """The CPU reference from the tensors' current contents (nothing cached)."""
