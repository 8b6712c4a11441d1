"""The device (fragment) layout of a 2:4 weight, in torch ops: the one Python definition.

A CUDA :class:`~sparseflow.SparseLinear` holds its weight once, in the layout every SparseFlow
kernel family reads (docs/FORMAT.md, "The device layout"; the Rust definition is
``crates/codegen/src/layout.rs``, and ``python/tests/test_layout.py`` checks these functions
against it). Both transforms are pure axis permutations of the zero-padded canonical arrays, so
they run as ``view`` / ``permute`` / ``contiguous`` on whatever device the tensors are on (on the
GPU for a weight already there: no host round trip), and they are differentiable in ``values``.

* N is padded to 128 rows and K to 64 columns (values 0, metadata code ``0x4``).
* values: per 16-row block, per 32-wide K step (16 compressed columns), 32 lanes × 8 elements:
  a compressed 16×16 block indexed ``[rbit(2), g(8), cbit(2), t(4), hf(2)]`` (row
  ``8·rbit + g``, column ``8·cbit + 2·t + hf``) is stored as ``[g, t, cbit, rbit, hf]`` — lane
  ``4g + t`` holds its four ``mma.sp`` A registers.
* meta: per 16-row block, per 64-wide K pair (8 canonical bytes per row), 32 lanes × 4 bytes:
  the bytes ``[half(2), g(8)]`` rows × ``[s(2), h(2), i2(2)]`` columns are stored as
  ``[g, s, h, half, i2]`` — lane ``4g + 2s + h`` holds rows ``g`` and ``g + 8`` of K step ``s``
  (the metadata register with selector ``s``). The byte order within a lane is the
  little-endian u32 the kernels load; nibbles keep their canonical order within a byte.

Device layout tensors are 1-D (``values``: ``Np·Kp/2`` elements of the weight's dtype;
``meta``: ``Np·Kp/8`` uint8), so they cannot be indexed as if they were ``[N, K/2]``.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "fragment_dims",
    "fragment_numel",
    "is_fragment",
    "meta_from_fragment",
    "meta_to_fragment",
    "to_fragment",
    "from_fragment",
    "values_from_fragment",
    "values_to_fragment",
]

N_ALIGN = 128
K_ALIGN = 64
_PAD_BYTE = 0x44  # two all-zero groups: positions (0, 1) = code 0b0100
_PAD_NIBBLE = 0x40  # the padding code in a byte's high nibble
# [rb, rbit, g, ks, cbit, t, hf] -> [rb, ks, g, t, cbit, rbit, hf], and back.
_VALUES_PERM = (0, 3, 2, 5, 4, 1, 6)
_VALUES_INV = (0, 5, 2, 1, 4, 3, 6)
# [rb, half, g, p, s, h, i2] -> [rb, p, g, s, h, half, i2], and back.
_META_PERM = (0, 3, 2, 4, 5, 1, 6)
_META_INV = (0, 5, 2, 1, 3, 4, 6)


def fragment_dims(n: int, k: int) -> Tuple[int, int]:
    """Padded ``(Np, Kp)`` of a ``[n, k]`` weight: N to a multiple of 128, K of 64."""
    return -(-n // N_ALIGN) * N_ALIGN, -(-k // K_ALIGN) * K_ALIGN


def fragment_numel(n: int, k: int) -> Tuple[int, int]:
    """Elements of the device-layout ``values`` and ``meta`` (uint8) tensors of a ``[n, k]`` weight."""
    np_, kp = fragment_dims(n, k)
    return np_ * kp // 2, np_ * kp // 8


def is_fragment(values: Tensor) -> bool:
    """Whether ``values`` is in the device layout (1-D) rather than canonical ``[N, K/2]``."""
    return values.dim() == 1


def _meta_bytes(k: int) -> int:
    return (k // 4 + 1) // 2


def values_to_fragment(values: Tensor) -> Tensor:
    """Canonical ``values [n, k/2]`` → device layout (1-D), on ``values``' device."""
    n, half_k = values.shape
    np_, kp = fragment_dims(n, 2 * half_k)
    v = F.pad(values, (0, kp // 2 - half_k, 0, np_ - n))
    return v.reshape(np_ // 16, 2, 8, kp // 32, 2, 4, 2).permute(_VALUES_PERM).reshape(-1)


def values_from_fragment(values: Tensor, n: int, k: int) -> Tensor:
    """Device-layout ``values`` → canonical ``[n, k/2]``."""
    np_, kp = fragment_dims(n, k)
    _check_numel(values, fragment_numel(n, k)[0], "values", n, k)
    v = values.reshape(np_ // 16, kp // 32, 8, 4, 2, 2, 2).permute(_VALUES_INV).reshape(np_, kp // 2)
    return v[:n, : k // 2].contiguous()


def meta_to_fragment(meta: Tensor, k: int) -> Tensor:
    """Canonical ``meta [n, ceil(k/8)]`` (uint8) → device layout (1-D uint8)."""
    n, mb = meta.shape
    if mb != _meta_bytes(k):
        raise ValueError(f"meta has {mb} bytes per row, expected {_meta_bytes(k)} for in_features = {k}")
    np_, kp = fragment_dims(n, k)
    if (k // 4) % 2 == 1:
        # The high nibble of each row's last byte is padding (docs/FORMAT.md); the kernels read
        # it as a group, so it gets the padding code whatever the tensor held (as Rust does).
        meta = torch.cat((meta[:, :-1], (meta[:, -1:] & 0x0F) | _PAD_NIBBLE), dim=1)
    m = F.pad(meta, (0, kp // 8 - mb, 0, np_ - n), value=_PAD_BYTE)
    return m.reshape(np_ // 16, 2, 8, kp // 64, 2, 2, 2).permute(_META_PERM).reshape(-1).contiguous()


def meta_from_fragment(meta: Tensor, n: int, k: int) -> Tensor:
    """Device-layout ``meta`` → canonical ``[n, ceil(k/8)]`` uint8."""
    np_, kp = fragment_dims(n, k)
    _check_numel(meta, fragment_numel(n, k)[1], "meta", n, k)
    m = meta.reshape(np_ // 16, kp // 64, 8, 2, 2, 2, 2).permute(_META_INV).reshape(np_, kp // 8)
    return m[:n, : _meta_bytes(k)].contiguous()


def to_fragment(values: Tensor, meta: Tensor) -> Tuple[Tensor, Tensor]:
    """The canonical pair ``(values [N, K/2], meta [N, K/8])`` in the device layout."""
    if values.dim() != 2 or meta.dim() != 2 or values.shape[0] != meta.shape[0]:
        raise ValueError(f"expected canonical values [N, K/2] and meta [N, K/8], got {tuple(values.shape)}, {tuple(meta.shape)}")
    k = 2 * values.shape[1]
    return values_to_fragment(values).contiguous(), meta_to_fragment(meta, k)


def from_fragment(values: Tensor, meta: Tensor, n: int, k: int) -> Tuple[Tensor, Tensor]:
    """The canonical pair of a device-layout pair of a ``[n, k]`` weight."""
    return values_from_fragment(values, n, k), meta_from_fragment(meta, n, k)


def _check_numel(t: Tensor, want: int, what: str, n: int, k: int) -> None:
    if t.dim() != 1 or t.numel() != want:
        raise ValueError(
            f"device-layout {what} of a [{n}, {k}] weight must be 1-D with {want} elements, got shape {tuple(t.shape)}"
        )
