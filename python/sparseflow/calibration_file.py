"""The calibration file for ``sparseflow convert --method wanda|sparsegpt --calibration FILE``.

A safetensors file (format described in docs/ACCURACY.md, "Calibration file") holding either
token ids or activations:

* ``kind = "tokens"``: ``input_ids`` (int32/int64 ``[sequences, length]``) and
  ``attention_mask`` (same shape and dtype class, 0/1), padded on the right.
* ``kind = "activations"``: one float tensor ``[tokens, in_features]`` per layer, named by
  the layer's module path (``model.layers.0.mlp.down_proj``).

``__metadata__``: ``format = "sparseflow-calibration"``, ``version = "1"``, ``kind``, and for
tokens ``tokenizer`` (name or path it came from, informative).

``sparseflow convert`` reads only the activations form (it does not run the model):
:func:`write_calibration_from_model` runs a PyTorch model on texts' token ids (or a tokens
file, or any model inputs) and writes the activations of its ``nn.Linear`` layers.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

__all__ = [
    "write_calibration_tokens",
    "write_calibration_activations",
    "write_calibration_from_model",
    "capture_activations",
    "read_calibration",
]

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


def capture_activations(
    model: Any, batches: Iterable[Any], *, include: Optional[Sequence[str]] = None
) -> Dict[str, Tensor]:
    """Runs ``model`` on ``batches`` (tensors, argument tuples or keyword dicts) and returns the
    inputs of its ``nn.Linear`` layers, ``{module path: [tokens, in_features]}`` (float32, CPU;
    padding tokens included). ``include``: only paths containing one of these substrings.
    The model is the dense one: every layer sees dense inputs (``sf.sparsify`` with
    calibration instead prunes sequentially on the already-pruned model's inputs)."""
    from torch import nn

    from .calibrate import _call

    seen: Dict[str, List[Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and (include is None or any(p in name for p in include)):

            def hook(_m: Any, args: Any, name: str = name) -> None:
                x = args[0].detach()
                seen.setdefault(name, []).append(x.reshape(-1, x.shape[-1]).to("cpu", torch.float32))

            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for batch in batches:
                _call(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {name: torch.cat(xs) for name, xs in seen.items()}


def write_calibration_from_model(
    path: str,
    model: Any,
    inputs: Union[str, Sequence[str], Iterable[Any]],
    *,
    tokenizer: Any = None,
    include: Optional[Sequence[str]] = None,
    batch_size: int = 8,
    max_length: int = 512,
) -> Dict[str, Tensor]:
    """Writes the activations calibration file ``sparseflow convert --calibration`` reads.

    ``inputs``: a token calibration file's path (:func:`write_calibration_tokens`), a list of
    texts (with ``tokenizer``), or model inputs (as for ``sf.sparsify``). Runs ``model`` (the
    Hugging Face model whose checkpoint ``convert`` reads: its module paths are the
    checkpoint's tensor names without ``.weight``) and writes every ``nn.Linear``'s inputs.
    Returns the activations."""
    if isinstance(inputs, str):
        tokens = read_calibration(inputs)
        if tokens["kind"] != "tokens":
            raise ValueError(f"{inputs}: a {tokens['kind']} calibration file; pass a tokens file, texts or model inputs")
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        batches: List[Any] = [
            {"input_ids": ids[i : i + batch_size], "attention_mask": mask[i : i + batch_size]}
            for i in range(0, ids.shape[0], batch_size)
        ]
    else:
        items = list(inputs)
        if items and all(isinstance(t, str) for t in items):
            if tokenizer is None:
                raise ValueError("texts need tokenizer= (the model's tokenizer)")
            batches = [
                dict(tokenizer(items[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                               return_tensors="pt"))
                for i in range(0, len(items), batch_size)
            ]
        else:
            batches = items
    if not batches:
        raise ValueError("no calibration inputs")
    acts = capture_activations(model, batches, include=include)
    if not acts:
        raise ValueError("the model ran no nn.Linear layer on these inputs (check include=)")
    write_calibration_activations(path, acts)
    return acts
