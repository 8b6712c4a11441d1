#!/usr/bin/env python3
"""Writes format_vectors.safetensors: worked examples of SparseFlow's 2:4 format and epilogues.

    python3 crates/core/tests/data/gen_format_vectors.py            # rewrite the file
    python3 crates/core/tests/data/gen_format_vectors.py --check    # compare with the checked-in file

Needs only NumPy (in requirements-dev.txt). The inputs below are literals, chosen so every
value is exact in fp16 (weights are multiples of 1/2, activations and bias multiples of 1/4);
everything else is derived from them by the rules of docs/FORMAT.md, written independently of
the Rust code it tests:

* magnitude 2:4 pruning: keep the two largest |w| of each group of 4 along K, ties to the
  lower position;
* compression: the two kept positions of a group, increasing; a group with fewer than two
  non-zeros is filled up with the lowest unused positions; values [N, K/2]; metadata code
  idx0 | idx1 << 2, two groups per byte, low nibble first;
* y_<epilogue> = epilogue(x · w_prunedᵀ [+ bias]) in float64, stored as float32.

The file is written in the safetensors layout itself (8-byte little-endian header length, JSON
header, raw data), tensors ordered as the `safetensors` library orders them (by dtype alignment,
then name), so the output is byte-for-byte reproducible without that library.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).with_name("format_vectors.safetensors")
N, K, M = 8, 32, 3

# Weights in units of 1/2. Edge cases: row 0 group 0 is all zero; row 1 group 1 has one
# non-zero (position 2); row 2 group 2 is an all-tie group (|w| equal); row 3 group 3 has
# exactly two non-zeros. The rest is arbitrary.
W_HALVES = """
 0  0  0  0 -3 -3  7  5  7  8 -7 -6  6 -7 -6 -5  7 -2 -4 -6 -1  2  5  2  8 -7  0  1  3 -8 -5 -1
-7  8  2  5  0  0  6  0 -6 -5  5 -1  6 -4  4  6  6 -5 -2 -4  5  5 -1 -4 -7 -4 -6 -7  5 -1  8 -4
-2  7  2 -4 -2  5 -2  0  2 -2  2 -2 -4  7 -5 -7 -3 -4  2 -5 -5  7  5  1  7 -2 -7  6 -7 -3 -1  3
-6 -5 -7 -8 -5  3  1 -3  3 -3  8 -4  0  5  0 -5  7 -3 -7 -1  2 -5  8  0  0  1  1 -1  1 -2  8  8
 1 -8 -3 -3  3  0 -6  2 -8 -8 -8 -4  7 -8  2 -8 -8 -3 -6 -2 -8  6 -1 -8 -8  4 -2 -1  3  2  3 -6
 5  5  1 -2 -4 -2  5  1 -5 -4 -5 -1 -4 -6  2  3 -3 -7 -2 -4 -2 -5 -8 -6  6  1  1 -5  3  4  7 -4
-8  8  7  1  8 -7  1  2 -5 -5  1 -2  0 -5 -1 -4  1  2  0  0 -4 -8  3  7  2 -4 -1  0 -1 -6  6 -2
-8  5 -8 -4 -2  6  4  2 -1  2  6  7  4  0 -5 -6 -2  2 -5  2  6  5 -3 -6  7 -5  3  7  8  1 -2 -5
"""
# Activations in units of 1/4.
X_QUARTERS = """
 2 -1 -2 -1 -3 -3 -1  1 -1 -4 -2 -4 -4 -2  1 -1 -4  1  4  4  4 -2  3 -3 -2 -3  3 -4  0 -3  4 -3
 0  4  0  3  4 -3  1  3  3 -4  4  1 -2 -2 -2 -1  4 -2 -3  1  2  4  3  3 -2  3  2  0  2  4  3  3
 3  1 -2  4  2 -4 -4 -3  0  4  2 -3  1 -4 -4 -1  0  2 -4  1  1  0 -4  2 -4  3  2 -4  0  4 -4  1
"""
# Bias in units of 1/4.
BIAS_QUARTERS = "-7 6 -5 0 2 -3 -3 -6"


def ints(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.array(text.split(), dtype=np.int64).reshape(shape)


def prune(w: np.ndarray) -> np.ndarray:
    out = np.zeros_like(w)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], 4):
            group = w[r, g : g + 4]
            # Stable sort on -|w|: equal magnitudes keep their order, so ties go to the lower index.
            keep = np.argsort(-np.abs(group), kind="stable")[:2]
            out[r, g + keep] = group[keep]
    return out


def compress(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n, k = w.shape
    values = np.zeros((n, k // 2), dtype=w.dtype)
    codes = np.zeros((n, k // 4), dtype=np.uint8)
    for r in range(n):
        for gi in range(k // 4):
            group = w[r, 4 * gi : 4 * gi + 4]
            pos = [p for p in range(4) if group[p] != 0]
            assert len(pos) <= 2, f"row {r} group {gi} is not 2:4"
            pos += [p for p in range(4) if p not in pos][: 2 - len(pos)]
            i0, i1 = sorted(pos)
            values[r, 2 * gi : 2 * gi + 2] = group[[i0, i1]]
            codes[r, gi] = i0 | (i1 << 2)
    meta = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return values, meta


def silu(v: np.ndarray) -> np.ndarray:
    return v / (1.0 + np.exp(-v))


def gelu(v: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * v * (1.0 + erf(v / math.sqrt(2.0)))


def gelu_tanh(v: np.ndarray) -> np.ndarray:
    return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


EPILOGUES = {
    "none": (False, lambda v: v),
    "relu": (False, lambda v: np.maximum(v, 0.0)),
    "silu": (False, silu),
    "gelu": (False, gelu),
    "gelu_tanh": (False, gelu_tanh),
    "bias": (True, lambda v: v),
    "bias_relu": (True, lambda v: np.maximum(v, 0.0)),
    "bias_silu": (True, silu),
    "bias_gelu": (True, gelu),
    "relu2": (False, lambda v: np.maximum(v, 0.0) ** 2),
    "bias_relu2": (True, lambda v: np.maximum(v, 0.0) ** 2),
}


def tensors() -> dict[str, np.ndarray]:
    w = ints(W_HALVES, (N, K)).astype(np.float64) / 2
    x = ints(X_QUARTERS, (M, K)).astype(np.float64) / 4
    bias = ints(BIAS_QUARTERS, (N,)).astype(np.float64) / 4
    pruned = prune(w)
    values, meta = compress(pruned)
    out = {
        "w_dense": w.astype(np.float16),
        "w_pruned": pruned.astype(np.float16),
        "values": values.astype(np.float16),
        "meta": meta,
        "x": x.astype(np.float16),
        "bias": bias.astype(np.float16),
    }
    acc = x @ pruned.T
    for name, (uses_bias, f) in EPILOGUES.items():
        out[f"y_{name}"] = f(acc + bias if uses_bias else acc).astype(np.float32)
    return out


DTYPES = {np.dtype(np.float32): ("F32", 4), np.dtype(np.float16): ("F16", 2), np.dtype(np.uint8): ("U8", 1)}


def serialize(ts: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    order = sorted(ts, key=lambda name: (-DTYPES[ts[name].dtype][1], name))
    header: dict[str, object] = {"__metadata__": metadata}
    offset, blobs = 0, []
    for name in order:
        a = np.ascontiguousarray(ts[name])
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": DTYPES[a.dtype][0],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def main() -> int:
    data = serialize(tensors(), {"M": str(M), "N": str(N), "K": str(K)})
    if "--check" in sys.argv[1:]:
        if OUT.read_bytes() != data:
            print(f"{OUT} differs from what this script generates", file=sys.stderr)
            return 1
        print(f"{OUT}: identical ({len(data)} bytes)")
        return 0
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
