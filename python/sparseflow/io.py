"""Model files: ``save`` / ``load`` in SparseFlow's directory format (docs/FORMAT.md, "Model files").

A directory in the Hugging Face layout:

* ``model.safetensors``: every tensor of the model's ``state_dict``; a sparsified linear
  ``<name>`` is stored as ``<name>.values`` ``[N, K/2]``, ``<name>.meta`` ``[N, K/8]`` (uint8)
  and ``<name>.bias`` if it has one (no ``<name>.weight``).
* ``sparseflow.json``: ``{"format": "sparseflow", "format_version": 1, "layers": {name:
  {"shape": [N, K], "dtype", "method", "epilogue", "diff", "fused_activation"}}, "aliases":
  {name: kept name}}``. ``aliases`` lists tensors that shared storage with another (tied
  weights) and were stored once.
* ``config.json`` when the model has a transformers config.

Writers build the directory under a temporary name beside the target and rename it into
place, so a reader never sees half a model; an existing path is replaced only with
``force=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from .linear import SparseLinear
from .ops import split_epilogue

__all__ = ["save", "load", "load_state_dict", "FORMAT_VERSION"]

#: The major format version this package writes and reads.
FORMAT_VERSION = 1
_WEIGHTS = "model.safetensors"
_INDEX = "model.safetensors.index.json"
_MANIFEST = "sparseflow.json"

PathLike = Union[str, "os.PathLike[str]"]


def _manifest(model: nn.Module) -> Dict[str, Any]:
    layers: Dict[str, Any] = {}
    for name, module in model.named_modules():
        if isinstance(module, SparseLinear):
            layers[name] = {
                "shape": [module.out_features, module.in_features],
                "dtype": str(module.values.dtype).replace("torch.", ""),
                "method": module.method,
                "epilogue": module.epilogue,
                "diff": dict(module.diff or {}),
                "fused_activation": module.fused_activation,
            }
    from . import __version__

    return {
        "format": "sparseflow",
        "format_version": FORMAT_VERSION,
        "sparseflow_version": __version__,
        "layers": layers,
    }


def _dedupe(state: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """safetensors stores each storage once: identical views become aliases, other tensors
    that share memory are copied."""
    out: Dict[str, Tensor] = {}
    aliases: Dict[str, str] = {}
    seen: Dict[tuple, str] = {}
    storages = set()
    for name, t in state.items():
        t = t.detach()
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        sid = (t.device, t.untyped_storage().data_ptr())
        if t.numel() > 0 and sid in storages:
            t = t.clone()
        storages.add(sid)
        out[name] = t.to("cpu").contiguous()
    return out, aliases


def save(model: nn.Module, path: PathLike, *, force: bool = False) -> Path:
    """Writes ``model`` (sparsified or not) to the directory ``path``; returns the path.

    Refuses to overwrite an existing ``path`` unless ``force=True``. Sparsified layers keep
    their pruning report and fused epilogue in ``sparseflow.json``.
    """
    from safetensors.torch import save_file

    target = Path(path)
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass force=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tensors, aliases = _dedupe(model.state_dict())
        manifest = _manifest(model)
        manifest["aliases"] = aliases
        save_file(tensors, str(tmp / _WEIGHTS), metadata={"format": "pt", "sparseflow": "1"})
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_json_file"):
            config.to_json_file(str(tmp / "config.json"))
            data = json.loads((tmp / "config.json").read_text())
            if not data.get("architectures"):  # a model built from a bare config: name its class
                data["architectures"] = [type(model).__name__]
                (tmp / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _read_manifest(path: Path) -> Dict[str, Any]:
    file = path / _MANIFEST
    if not file.is_file():
        raise FileNotFoundError(f"{path} is not a SparseFlow model directory: {_MANIFEST} is missing")
    manifest = json.loads(file.read_text())
    if manifest.get("format") != "sparseflow":
        raise ValueError(f"{file}: format is {manifest.get('format')!r}, expected 'sparseflow'")
    version = manifest.get("format_version")
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = -1
    if major != FORMAT_VERSION:
        raise ValueError(
            f"{file}: format_version {version!r} is not supported; this sparseflow reads format "
            f"version {FORMAT_VERSION} (a newer file needs a newer sparseflow: pip install -U sparseflow)"
        )
    return manifest


def load_state_dict(path: PathLike) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Reads a SparseFlow model directory: ``(state_dict, manifest)``, tensors on the CPU.
    Tied tensors stored once come back under all their names."""
    from safetensors.torch import load_file

    root = Path(path)
    manifest = _read_manifest(root)
    if (root / _WEIGHTS).is_file():
        state = load_file(str(root / _WEIGHTS))
    elif (root / _INDEX).is_file():
        index = json.loads((root / _INDEX).read_text())
        state = {}
        for shard in sorted(set(index["weight_map"].values())):
            state.update(load_file(str(root / shard)))
    else:
        raise FileNotFoundError(f"{root}: neither {_WEIGHTS} nor {_INDEX} found")
    for alias, kept in manifest.get("aliases", {}).items():
        state[alias] = state[kept]
    return state, manifest


def _skeleton_from_config(root: Path) -> nn.Module:
    if not (root / "config.json").is_file():
        raise ValueError(
            f"{root} has no config.json, so the model cannot be rebuilt: pass a freshly built "
            "model, sf.load(path, model), or read the tensors with sf.load_state_dict(path)"
        )
    try:
        import transformers
    except ImportError as e:
        raise ImportError(
            "rebuilding a model from config.json needs transformers; or pass the model: sf.load(path, model)"
        ) from e
    config = transformers.AutoConfig.from_pretrained(str(root))
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        raise ValueError(f"{root}/config.json names no known transformers architecture ({archs}); pass the model")
    return cls(config)


def load(path: PathLike, model: Optional[nn.Module] = None, *, strict: bool = True) -> nn.Module:
    """Loads a SparseFlow model directory written by :func:`save` (or ``sparseflow convert``).

    ``model``: a freshly built model of the same architecture (dense ``nn.Linear`` layers, any
    initialization); the layers named in the manifest are replaced by :class:`SparseLinear`
    (and fused activations by ``nn.Identity``) before the tensors are loaded. Its dtype is
    kept (tensors are converted as ``load_state_dict`` does). Without ``model``, a
    transformers model is rebuilt from ``config.json`` and converted to the file's dtype.
    Returns the model. Metadata is validated; bad codes are a ``ValueError``.
    """
    root = Path(path)
    state, manifest = load_state_dict(root)
    rebuilt = model is None
    if model is None:
        model = _skeleton_from_config(root)
    file_dtype = None
    for name, layer in manifest["layers"].items():
        try:
            current = model.get_submodule(name)
        except AttributeError as e:
            raise ValueError(f"the file has sparse layer {name!r}, which the model does not have") from e
        n, k = layer["shape"]
        activation, has_bias = split_epilogue(layer["epilogue"])
        file_dtype = getattr(torch, layer["dtype"])
        if isinstance(current, SparseLinear):
            sparse = current
        elif isinstance(current, nn.Linear):
            if (current.out_features, current.in_features) != (n, k):
                raise ValueError(
                    f"layer {name}: the file has shape [{n}, {k}], the model [{current.out_features}, {current.in_features}]"
                )
            dtype = file_dtype if rebuilt else current.weight.dtype
            sparse = SparseLinear(k, n, has_bias, activation=activation, device=current.weight.device, dtype=dtype)
        else:
            raise ValueError(f"layer {name}: expected nn.Linear in the model, found {type(current).__name__}")
        sparse.method = layer.get("method", "magnitude")
        sparse.diff = dict(layer.get("diff") or {})
        sparse.fused_activation = layer.get("fused_activation")
        parent_path, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent_path) if parent_path else model, attr, sparse)
        if sparse.fused_activation:
            parent_path, _, attr = sparse.fused_activation.rpartition(".")
            setattr(model.get_submodule(parent_path) if parent_path else model, attr, nn.Identity())
    if rebuilt and file_dtype is not None:
        model.to(file_dtype)
    model.load_state_dict(state, strict=strict)
    for module in model.modules():
        if isinstance(module, SparseLinear):
            module.validate()
    return model
