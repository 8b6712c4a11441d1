"""The calibration file for ``sparseflow convert --method wanda|sparsegpt --calibration FILE``.

A safetensors file (format described in docs/ACCURACY.md, "Calibration file") holding either
token ids or activations:

* ``kind = "tokens"``: ``input_ids`` (int32/int64 ``[sequences, length]``) and
  ``attention_mask`` (same shape and dtype class, 0/1), padded on the right.
* ``kind = "activations"``: one float tensor ``[tokens, in_features]`` per layer, named by
  the layer's module path (``model.layers.0.mlp.down_proj``).

``__metadata__``: ``format = "sparseflow-calibration"``, ``version = "1"``, ``kind``, and for
tokens ``tokenizer`` (name or path it came from, informative).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Sequence, Union

import torch
from torch import Tensor

__all__ = ["write_calibration_tokens", "write_calibration_activations", "read_calibration"]

FORMAT = "sparseflow-calibration"
VERSION = "1"


def write_calibration_tokens(path: str, texts: Sequence[str], tokenizer: Any, *, max_length: int = 512) -> None:
    """Tokenizes ``texts`` with the model's (Hugging Face) ``tokenizer`` and writes them."""
    from safetensors.torch import save_file

    if not texts or not all(isinstance(t, str) and t for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    tensors = {
        "input_ids": enc["input_ids"].to(torch.int64).contiguous(),
        "attention_mask": enc["attention_mask"].to(torch.int64).contiguous(),
    }
    save_file(tensors, path, metadata={"format": FORMAT, "version": VERSION, "kind": "tokens", "tokenizer": name})


def write_calibration_activations(path: str, activations: Mapping[str, Tensor]) -> None:
    """Writes per-layer activations ``{module path: [tokens, in_features]}`` (float)."""
    from safetensors.torch import save_file

    if not activations:
        raise ValueError("activations is empty")
    out = {}
    for name, x in activations.items():
        _check_activation(name, x)
        out[name] = x.detach().reshape(-1, x.shape[-1]).to("cpu").contiguous()
    save_file(out, path, metadata={"format": FORMAT, "version": VERSION, "kind": "activations"})


def _check_activation(name: str, x: Any) -> None:
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"{name}: activations must be a tensor [tokens, in_features], got {getattr(x, 'shape', x)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: activations must be floating point, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"{name}: activations are empty")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: activations contain NaN or Inf")


def read_calibration(path: str) -> Dict[str, Union[str, Tensor]]:
    """Reads and checks a calibration file: ``{"kind": ..., tensors...}``. Errors name the
    problem: not a calibration file, unknown version or kind, missing tensor, mismatched
    dtype or shape, empty, NaN/Inf."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a SparseFlow calibration file (metadata format = {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: calibration file version {meta.get('version')!r}; this SparseFlow reads {VERSION!r}")
    kind = meta.get("kind")
    if kind == "tokens":
        for key in ("input_ids", "attention_mask"):
            if key not in tensors:
                raise ValueError(f"{path}: token calibration file has no {key!r} tensor")
            t = tensors[key]
            if t.dtype not in (torch.int32, torch.int64):
                raise TypeError(f"{path}: {key} must be int32 or int64, got {t.dtype}")
            if t.dim() != 2 or t.numel() == 0:
                raise ValueError(f"{path}: {key} must be a non-empty [sequences, length] tensor, got {tuple(t.shape)}")
        if tensors["input_ids"].shape != tensors["attention_mask"].shape:
            raise ValueError(f"{path}: input_ids and attention_mask shapes differ")
    elif kind == "activations":
        if not tensors:
            raise ValueError(f"{path}: activation calibration file holds no tensors")
        for name, x in tensors.items():
            _check_activation(f"{path}: {name}", x)
    else:
        raise ValueError(f"{path}: unknown calibration kind {kind!r} (tokens or activations)")
    return {"kind": kind, **tensors}
