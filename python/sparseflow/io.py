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

Reading and writing go through the Rust crate ``sparseflow-model`` (``sparseflow._C``), the same
code as ``sparseflow convert`` and the C ABI: the manifest is validated (unknown or conflicting
entries are errors naming the key), file names are confined to the directory, only regular
files are read, and a model is written into a staging directory beside the target, fsynced and
renamed into place; ``force=True`` replaces only a SparseFlow model directory, atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from . import _C
from .linear import SparseLinear
from .ops import split_epilogue

__all__ = ["save", "load", "load_state_dict", "FORMAT_VERSION"]

#: The major format version this package writes and reads.
FORMAT_VERSION = 1

PathLike = Union[str, "os.PathLike[str]"]


def _manifest(model: nn.Module) -> Dict[str, Any]:
    from .fusion import FUSED_NAME, FusedGatedMLP

    layers: Dict[str, Any] = {}
    fused = set()
    for name, module in model.named_modules():  # parents before children
        prefix = f"{name}." if name else ""
        if isinstance(module, FusedGatedMLP):  # written unfused, as its state_dict is
            layers.update(module.manifest_entries(prefix))
            fused.add(prefix + FUSED_NAME)
        elif isinstance(module, SparseLinear) and name not in fused:
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


def _config_json(model: nn.Module) -> Optional[bytes]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        return None
    data = json.loads(config.to_json_string())
    if not data.get("architectures"):  # a model built from a bare config: name its class
        data["architectures"] = [type(model).__name__]
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def save(model: nn.Module, path: PathLike, *, force: bool = False, tp: Optional[int] = None) -> Path:
    """Writes ``model`` (sparsified or not) to the directory ``path``; returns the path.

    Refuses to overwrite an existing ``path`` unless ``force=True``, and even then replaces
    only a SparseFlow model directory (``FileExistsError`` otherwise). Sparsified layers keep
    their pruning report and fused epilogue in ``sparseflow.json``.

    ``tp=N`` writes a tensor-parallel directory for N ranks instead: each rank's slices of the
    Llama-style layers in a file of its own, the split in ``sparseflow.json`` (the model is
    written unsharded beside ``path`` first, then sharded by ``sparseflow.parallel.shard``, the
    code of ``sparseflow convert --tp``). A model already sharded in memory (``sparseflow.parallel``
    layers) cannot be saved: save the unsharded model.
    """
    from .parallel import _ParallelLinear

    sharded = [name for name, m in model.named_modules() if isinstance(m, _ParallelLinear)]
    if sharded:
        raise ValueError(
            f"{sharded[0]} is a tensor-parallel shard: sf.save writes whole models; save the unsharded "
            "model (sf.save(model, path, tp=N) writes it per rank) and load it with sparseflow.parallel.load"
        )
    if tp is not None:
        from .parallel import shard

        target = Path(path)
        unsharded = target.parent / f".{target.name}.unsharded-{os.getpid()}"
        try:
            save(model, unsharded)
            shard(unsharded, target, tp, force=force)
        finally:
            import shutil

            shutil.rmtree(unsharded, ignore_errors=True)
        return target
    tensors, aliases = _dedupe(model.state_dict())
    manifest = _manifest(model)
    manifest["aliases"] = aliases
    raw = [
        (name, str(t.dtype).replace("torch.", ""), list(t.shape), t.data_ptr(), t.numel() * t.element_size())
        for name, t in tensors.items()
    ]
    config = _config_json(model)
    files = [("config.json", config)] if config is not None else []
    _C.model_save(os.fspath(path), json.dumps(manifest), raw, files, force)
    return Path(path)


def load_state_dict(path: PathLike) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """Reads a SparseFlow model directory: ``(state_dict, manifest)``, tensors on the CPU.
    Tied tensors stored once come back under all their names."""
    state, manifest, _ = _read(path)
    return state, manifest


def _read(path: PathLike) -> Tuple[Dict[str, Tensor], Dict[str, Any], Optional[Dict[str, Any]]]:
    manifest_json, tensors, config = _C.model_load(os.fspath(path))
    state: Dict[str, Tensor] = {}
    for name, dtype, shape, data in tensors:
        dt = getattr(torch, dtype)
        state[name] = torch.frombuffer(data, dtype=dt).reshape(shape) if len(data) else torch.empty(shape, dtype=dt)
    manifest = json.loads(manifest_json)
    if manifest.get("tensor_parallel"):
        tp = manifest["tensor_parallel"]
        raise ValueError(
            f"{path} is tensor-parallel ({tp['size']} ranks, each layer's slices in the rank files): load it "
            "per rank with sparseflow.parallel.load(path, model, group)"
        )
    for alias, kept in manifest.get("aliases", {}).items():
        state[alias] = state[kept]  # validated: the alias names no stored tensor
    return state, manifest, (json.loads(config) if config is not None else None)


def _skeleton_from_config(root: Path, config_dict: Optional[Dict[str, Any]]) -> nn.Module:
    if config_dict is None:
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
    fields = dict(config_dict)
    model_type = fields.pop("model_type", None)
    if not isinstance(model_type, str):
        raise ValueError(f"{root}/config.json has no model_type; pass the model")
    config = transformers.AutoConfig.for_model(model_type, **fields)
    archs = getattr(config, "architectures", None) or []
    cls = getattr(transformers, archs[0], None) if archs else None
    if cls is None:
        raise ValueError(f"{root}/config.json names no known transformers architecture ({archs}); pass the model")
    return cls(config)


def _remove_fused_activation(model: nn.Module, layer: str, path: str, activation: str) -> None:
    """Replaces the activation fused into ``layer`` by ``nn.Identity``, only if ``path`` names
    a module that computes exactly that activation (or is already an ``Identity``)."""
    from .sparsify import activation_kind

    try:
        module = model.get_submodule(path)
    except AttributeError as e:
        raise ValueError(f"layer {layer}: fused_activation {path!r} is not a module of the model") from e
    if not isinstance(module, nn.Identity) and activation_kind(module) != activation:
        raise ValueError(
            f"layer {layer}: fused_activation {path!r} is a {type(module).__name__}, not the "
            f"{activation} activation the layer's epilogue applies; refusing to remove it"
        )
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, nn.Identity())


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
    state, manifest, config_dict = _read(root)
    rebuilt = model is None
    if model is None:
        model = _skeleton_from_config(root, config_dict)
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
            _remove_fused_activation(model, name, sparse.fused_activation, activation)
    if rebuilt and file_dtype is not None:
        model.to(file_dtype)
    model.load_state_dict(state, strict=strict)
    for module in model.modules():
        if isinstance(module, SparseLinear):
            module.validate()
    return model
