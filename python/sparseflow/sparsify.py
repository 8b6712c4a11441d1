"""``sparsify``: replace a model's ``nn.Linear`` layers by :class:`SparseLinear`, with a report.

Nothing happens silently: every ``nn.Linear`` the model holds gets one report row, converted or
skipped with the reason. An activation is fused into a layer's epilogue only where the module
structure makes it exact, and the report names it:

* ``nn.Sequential(..., Linear, ReLU | SiLU | GELU | transformers' activations, ...)``: the
  activation module (one that computes an activation of the epilogue table exactly, see
  :func:`activation_kind`; squared ReLU only as transformers' ``ReLUSquaredActivation``, torch
  has no module for it) directly follows the layer in the sequence, and the container runs the
  stock ``nn.Sequential.forward`` (a subclass with its own ``forward`` may not apply them in
  order, so it is left alone).
* LLaMA-style gated MLPs (``down_proj(act_fn(gate_proj(x)) * up_proj(x))``, as in
  transformers' Llama/Mistral/Qwen2 MLPs): the activation is fused into ``gate_proj``. The
  MLP's ``forward`` source is checked for exactly that expression, so a model that uses the
  gate's output elsewhere is left alone.

Fused means computed on the fp32 accumulator before rounding: the math is the same, the
rounding is one step better than the unfused model's. An activation module with hooks is never
fused (its hooks would stop firing); a layer whose activation is applied inside its parent's
own ``forward`` (BERT's intermediate GELU) is converted unfused, and its row says why.

``fuse_projections=True`` (off by default) then runs each gated MLP's ``gate_proj`` and
``up_proj`` as one 2:4 GEMM (:mod:`sparseflow.fusion`); the report lists every group
(``report.groups``), fused or refused with the reason.

What is never replaced: an ``nn.Linear`` subclass with its own ``forward`` (replacing it would
change what it computes), and modules that are not ``nn.Linear`` (GPT-2's ``Conv1D`` stores its
weight transposed): both get a row with the reason. Hooks registered on a converted layer move
to its :class:`SparseLinear`. A model that *is* one ``nn.Linear`` is returned converted.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .fusion import FusedGroup, forward_source
from .linear import METHODS, SparseLinear
from .ops import ACTIVATIONS, SUPPORTED_DTYPES, split_epilogue
from .permutation import PermuteSite, apply_permutations, find_sites
from .prune import CALIBRATED_METHODS

__all__ = ["sparsify", "SparsifyReport", "LayerReport", "activation_kind"]


@dataclass
class LayerReport:
    """One ``nn.Linear`` of the model and what :func:`sparsify` did with it."""

    name: str
    status: str  # "sparsified" or "skipped"
    in_features: int
    out_features: int
    dtype: str
    reason: str = ""
    epilogue: Optional[str] = None
    fused: Optional[str] = None  # module path of the fused activation
    permutation: Optional[str] = None  # the channel permutation applied (permute=True)
    note: str = ""  # e.g. why a following activation was not fused
    diff: Dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class SparsifyReport:
    """The per-layer report of :func:`sparsify`: prints as a table, converts to dicts / JSON."""

    def __init__(
        self, rows: Sequence[LayerReport], groups: Sequence[FusedGroup] = (), device: Optional[str] = None
    ) -> None:
        self.rows: List[LayerReport] = list(rows)
        #: Projection groups of ``sparsify(..., fuse_projections=True)``, fused or refused.
        self.groups: List[FusedGroup] = list(groups)
        #: Where the model's tensors are when ``sparsify`` returns (``"cuda:0"``; several
        #: devices comma-separated), ``None`` when not recorded.
        self.device: Optional[str] = device

    def __iter__(self) -> Iterator[LayerReport]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, name: str) -> LayerReport:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    @property
    def sparsified(self) -> List[LayerReport]:
        return [r for r in self.rows if r.status == "sparsified"]

    @property
    def skipped(self) -> List[LayerReport]:
        return [r for r in self.rows if r.status == "skipped"]

    @property
    def over_error(self) -> List[LayerReport]:
        """Layers left dense because their held-out output error exceeded ``max_rel_error``."""
        return [r for r in self.rows if r.status == "skipped" and r.reason.startswith("max_rel_error")]

    @property
    def fused(self) -> List[LayerReport]:
        return [r for r in self.rows if r.fused]

    def summary(self) -> Dict[str, Any]:
        """Totals over sparsified layers: counts and bytes before/after."""
        dense = sum(int(r.diff.get("bytes_dense", 0)) for r in self.sparsified)
        sparse = sum(int(r.diff.get("bytes_sparse", 0)) for r in self.sparsified)
        return {
            "layers": len(self.rows),
            "sparsified": len(self.sparsified),
            "skipped": len(self.skipped),
            "fused": len(self.fused),
            "fused_groups": sum(g.status == "fused" for g in self.groups),
            "bytes_dense": dense,
            "bytes_sparse": sparse,
            "compression": (dense / sparse) if sparse else None,
            "device": self.device,
        }

    def to_list(self) -> List[Dict[str, Any]]:
        return [r.to_dict() for r in self.rows]

    def outlook(
        self,
        decode_batches: Sequence[int] = (1, 16, 64),
        prefill: Sequence[Tuple[int, int]] = ((1, 512), (1, 2048), (8, 2048)),
    ) -> Any:
        """At which decode batch sizes and ``(batch, prompt)`` prefills the sparsified linears
        are faster or slower than dense, from measured times shipped with the package
        (:mod:`sparseflow.outlook`); ``str(report)`` ends with it."""
        from .outlook import outlook

        return outlook([(r.dtype, r.out_features, r.in_features) for r in self.sparsified], decode_batches, prefill)

    def to_json(self, **kwargs: Any) -> str:
        groups = [g.to_dict() for g in self.groups]
        return json.dumps({"layers": self.to_list(), "groups": groups, "summary": self.summary()}, **kwargs)

    def __str__(self) -> str:
        header = ("layer", "status", "shape [N, K]", "dtype", "epilogue", "rel_fro_err", "kept_mag", "note")
        lines = []
        for r in self.rows:
            note = r.reason if r.status == "skipped" else (f"fused {r.fused}" if r.fused else "")
            for extra in (r.permutation, r.note):
                if extra:
                    note = f"{note}; {extra}" if note else extra
            if r.status == "sparsified" and "heldout_rel_error" in r.diff:
                note = f"held-out err {r.diff['heldout_rel_error']:.4f}" + (f"; {note}" if note else "")
            lines.append(
                (
                    r.name,
                    r.status,
                    f"[{r.out_features}, {r.in_features}]",
                    r.dtype.replace("torch.", ""),
                    r.epilogue or "-",
                    f"{r.diff['rel_fro_error']:.4f}" if "rel_fro_error" in r.diff else "-",
                    f"{r.diff['kept_magnitude']:.4f}" if "kept_magnitude" in r.diff else "-",
                    note,
                )
            )
        widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(header)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
        out += [fmt.format(*row).rstrip() for row in lines]
        s = self.summary()
        ratio = f"{s['compression']:.2f}x" if s["compression"] else "-"
        out.append(
            f"{s['sparsified']} of {s['layers']} linear layers sparsified ({s['fused']} with a fused activation), "
            f"{s['skipped']} skipped; weight bytes {s['bytes_dense']} -> {s['bytes_sparse']} ({ratio})"
        )
        if self.device is not None:
            out.append(f"model on {self.device}")
        for g in self.groups:
            members = " + ".join(m.rpartition(".")[2] for m in g.members)
            if g.status == "fused":
                shape = f"[{g.out_features}, {g.in_features}] {g.splits}"
                out.append(f"fused {g.module}: {members} as one GEMM, {shape}")
            else:
                out.append(f"not fused {g.module}: {g.reason}")
        out += self.outlook().lines()
        return "\n".join(out)

    def __repr__(self) -> str:
        s = self.summary()
        return f"SparsifyReport(layers={s['layers']}, sparsified={s['sparsified']}, skipped={s['skipped']}, fused={s['fused']})"


#: Standard modules that compute exactly one activation of the epilogue table, by class.
_TORCH_MODULES: Dict[type, str] = {nn.ReLU: "relu", nn.SiLU: "silu"}
#: transformers' activation classes (``ACT2FN``) that compute exactly these functions, by class
#: name so sparseflow does not import transformers. torch has no squared-ReLU module:
#: ``ReLUSquaredActivation`` (``ACT2FN["relu2"]``, relu then square) is the standard one, and a
#: hand-written module is never fused (nothing proves its forward is the same function).
_TRANSFORMERS_MODULES: Dict[str, str] = {
    "SiLUActivation": "silu",
    "GELUActivation": "gelu",
    "GELUTanh": "gelu_tanh",
    "PytorchGELUTanh": "gelu_tanh",
    "NewGELUActivation": "gelu_tanh",
    "ReLUSquaredActivation": "relu2",
}


def activation_kind(module: nn.Module) -> Optional[str]:
    """The SparseFlow activation (a name of :data:`sparseflow.ACTIVATIONS`, from the library's
    epilogue table) an activation module computes exactly, or ``None``."""
    t = type(module)
    if t is nn.GELU:
        kind = {"none": "gelu", "tanh": "gelu_tanh"}.get(module.approximate)
    elif t.__module__.startswith("transformers."):
        kind = _TRANSFORMERS_MODULES.get(t.__name__)
    else:
        kind = _TORCH_MODULES.get(t)
    return kind if kind in ACTIVATIONS else None


def _matches(name: str, patterns: Iterable[str]) -> Optional[str]:
    """The first pattern that names this module: exact path, a path suffix (``lm_head``,
    ``mlp.down_proj``) or an fnmatch glob (``*.mlp.*``)."""
    for p in patterns:
        if name == p or name.endswith("." + p) or fnmatch.fnmatchcase(name, p):
            return p
    return None


_GATED_MLP = re.compile(r"self\.act_fn\(self\.gate_proj\((\w+)\)\)\*self\.up_proj\(\1\)")


def _is_gated_mlp(module: nn.Module) -> bool:
    """A LLaMA-style MLP whose forward is ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``."""
    if not all(isinstance(getattr(module, a, None), nn.Module) for a in ("gate_proj", "up_proj", "act_fn")):
        return False
    compact = forward_source(module)
    if compact is None:
        return False
    # Exactly one use of gate_proj and of act_fn: the gate's output feeds only the activation.
    return (
        bool(_GATED_MLP.search(compact)) and compact.count("self.gate_proj") == 1 and compact.count("self.act_fn") == 1
    )


def _has_hooks(module: nn.Module) -> bool:
    return any(
        getattr(module, attr, None)
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    )


def _fusion_candidates(model: nn.Module) -> Tuple[Dict[str, Tuple[str, str]], Dict[str, str]]:
    """``{linear path: (activation path, activation kind)}`` for every exact fusion site, and
    ``{linear path: why not}`` for activations next to a layer that are not fused."""
    found: Dict[str, Tuple[str, str]] = {}
    not_fused: Dict[str, str] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = list(module.named_children())
        if isinstance(module, nn.Sequential):
            stock = type(module).forward is nn.Sequential.forward
            for (lin_name, lin), (act_name, act) in zip(children, children[1:]):
                kind = activation_kind(act)
                if not isinstance(lin, nn.Linear) or kind is None:
                    continue
                if not stock:
                    not_fused[prefix + lin_name] = (
                        f"{act_name} not fused: {type(module).__name__} overrides nn.Sequential.forward, "
                        "so the order it applies them in is not known"
                    )
                elif _has_hooks(act):
                    not_fused[prefix + lin_name] = f"{act_name} not fused: it has hooks, which would stop firing"
                else:
                    found[prefix + lin_name] = (prefix + act_name, kind)
        elif _is_gated_mlp(module):
            kind = activation_kind(module.act_fn)
            if kind is not None and isinstance(module.gate_proj, nn.Linear):
                if _has_hooks(module.act_fn):
                    not_fused[prefix + "gate_proj"] = "act_fn not fused: it has hooks, which would stop firing"
                else:
                    found[prefix + "gate_proj"] = (prefix + "act_fn", kind)
        else:
            # An activation module beside a layer, applied by the parent's own forward (e.g.
            # BERT's intermediate_act_fn): the order is not provable from the structure.
            kinds = [activation_kind(m) for _, m in children]
            for i, (lin_name, lin) in enumerate(children):
                if not isinstance(lin, nn.Linear):
                    continue
                after = [(children[j][0], kinds[j]) for j in range(i + 1, len(children)) if kinds[j]]
                if after:  # the first activation registered after this layer
                    act_name, kind = after[0]
                    not_fused[prefix + lin_name] = (
                        f"{act_name} ({kind}) not fused: {type(module).__name__}.forward applies it, and only "
                        "nn.Sequential and gated-MLP structures prove the order"
                    )
    return found, not_fused


def _permute_sites(
    model: nn.Module,
    jobs: Sequence[Tuple[LayerReport, nn.Linear, List[str], str, Optional[str]]],
    all_paths: Dict[int, List[str]],
) -> List[PermuteSite]:
    """The recognised permutation sites whose consumer is being sparsified and whose layers
    are not shared under several paths (a shared layer would be permuted for two sites)."""
    converting = {job[0].name for job in jobs}
    out = []
    for site in find_sites(model):
        layers = [site.consumer, *site.producers]
        if site.consumer in converting and all(len(all_paths[id(model.get_submodule(p))]) == 1 for p in layers):
            out.append(site)
    return out


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


def _move_hooks(old: nn.Module, new: nn.Module) -> None:
    """The hooks registered on a replaced layer keep firing, on its replacement."""
    for attr in _HOOK_DICTS:
        src = getattr(old, attr, None)
        if src:
            getattr(new, attr).update(src)


def _set_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, attr, new)


def _skip_reason(
    name: str,
    linear: nn.Linear,
    parents: Dict[str, nn.Module],
    include: Optional[Sequence[str]],
    exclude: Sequence[str],
    check_finite: bool = True,
) -> Optional[str]:
    if include is not None and _matches(name, include) is None:
        return "not matched by include"
    pattern = _matches(name, exclude)
    if pattern is not None:
        return f"excluded ({pattern!r} in exclude)"
    parent = parents.get(name.rpartition(".")[0])
    if isinstance(parent, nn.MultiheadAttention):
        return "inside nn.MultiheadAttention, which reads the weight directly"
    if type(linear) is not nn.Linear and type(linear).forward is not nn.Linear.forward:
        return (
            f"{type(linear).__name__} is an nn.Linear subclass with its own forward: replacing it "
            "would change what it computes"
        )
    w = linear.weight
    if w.device.type == "meta":
        return "weight on the meta device (no data)"
    if w.dtype not in SUPPORTED_DTYPES:
        return f"dtype {w.dtype} not supported (float16, bfloat16, float32 on CPU)"
    if linear.in_features % 4 != 0:
        return f"in_features = {linear.in_features} is not a multiple of 4"
    if check_finite and not bool(torch.isfinite(w).all()):
        return _NOT_FINITE
    return None


_NOT_FINITE = "weight contains NaN or Inf"


def _target_device(model: nn.Module, device: Union[str, torch.device, None]) -> Optional[torch.device]:
    """``sparsify(device=...)``, checked before the model is touched: the device to stream the
    converted layers to, or ``None`` (convert where the model lives: ``device=None``, or every
    tensor of the model is already on ``device``)."""
    if device is None:
        return None
    try:
        target = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device: pass 'cuda', 'cuda:N' or 'cpu'") from None
    if target.type not in ("cuda", "cpu"):
        raise ValueError(
            f"device={device!r}: sparsify places models on a CUDA device or the CPU ('cuda', 'cuda:N', 'cpu')"
        )
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device={device!r}: CUDA is not available here (torch.cuda.is_available() is False); "
                "the model was not modified"
            )
        index = torch.cuda.current_device() if target.index is None else target.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: there are {torch.cuda.device_count()} CUDA devices")
        target = torch.device("cuda", index)
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device == target for t in tensors):
        return None
    if any(t.device.type == "meta" for t in tensors):
        raise ValueError(
            f"device={device!r}: the model has tensors on the meta device, which hold no data to move; "
            "materialize them (load the checkpoint) first"
        )
    return target


def _check_streamable(
    target: torch.device, jobs: Sequence[Tuple[LayerReport, nn.Linear, List[str], str, Optional[str]]]
) -> None:
    """float32 layers would be converted into layers that cannot run on CUDA: refused while the
    model is still untouched rather than discovered at the first forward."""
    fp32 = [job[0].name for job in jobs if job[1].weight.dtype == torch.float32]
    if target.type == "cuda" and fp32:
        raise TypeError(
            f"sparsify(device={str(target)!r}): {len(fp32)} layers to convert are float32 ({fp32[0]}, ...), "
            "which SparseFlow runs on the CPU only; cast the model to float16 or bfloat16 first "
            "(model.half(), model.to(torch.bfloat16)) or leave them dense with exclude="
        )


def _devices(model: nn.Module) -> Optional[str]:
    """The devices holding the model's tensors, for the report (``None``: no tensors)."""
    found = sorted({str(t.device) for t in (*model.parameters(), *model.buffers())})
    return ", ".join(found) if found else None


@torch.no_grad()
def sparsify(
    model: nn.Module,
    *,
    include: Optional[Sequence[str]] = None,
    exclude: Sequence[str] = ("lm_head",),
    method: str = "magnitude",
    fuse: bool = True,
    calibration: Optional[Iterable[Any]] = None,
    max_rel_error: Optional[float] = None,
    heldout: float = 0.25,
    progress: bool = True,
    prune_options: Optional[Dict[str, Any]] = None,
    permute: bool = False,
    tp_group: Any = None,
    fuse_projections: bool = False,
    device: Union[str, torch.device, None] = None,
) -> Tuple[nn.Module, SparsifyReport]:
    """Replaces the ``nn.Linear`` layers of ``model`` (in place) by 2:4 :class:`SparseLinear`.

    ``include``: only layers whose path matches one of these (exact path, path suffix such as
    ``"mlp.down_proj"``, or an fnmatch glob such as ``"model.layers.*.mlp.*"``); ``None`` = all.
    ``exclude``: layers to leave dense (same matching; the output head by default).
    ``method``: pruning method (``"magnitude"``, ``"wanda"``, ``"sparsegpt"``,
    ``"sparsegpt-refine"``). ``fuse``: fuse a following activation into the epilogue where
    exact (see the module docstring).

    ``calibration``: model inputs (a list of batches: tensors, argument tuples or keyword
    dicts) for the activation-aware methods. The model then runs layer by layer: each group
    of layers is pruned from the inputs produced by the already-pruned layers before it (see
    ``sparseflow/calibrate.py``), with a progress bar (tqdm if installed, on either path; ``progress=False``
    silences it). A ``heldout`` fraction of the batches (of the tokens, with one batch) is
    kept out of the statistics; every row's diff gains ``heldout_rel_error`` on it.
    ``max_rel_error=ε`` leaves dense every layer whose held-out error exceeds ε; they are
    listed in ``report.over_error`` with what they cost. ``prune_options``: see
    :meth:`SparseLinear.from_dense`.

    ``permute=True``: before pruning, permutes channels where that is free at run time and the
    structure is recognised (Llama-style gated MLPs and attention, BERT layers: see
    ``sparseflow/permutation.py``), choosing each permutation from the consumer's weight and,
    with calibration, its input norms on the calibration batches (block by block, on the
    already-pruned model's inputs). The model computes the same function before pruning;
    every permuted layer's report row says what was permuted (``row.permutation``).

    ``tp_group``: a ``torch.distributed`` process group (or 1-D ``DeviceMesh``) to shard a
    Llama-style model over, tensor-parallel: see :func:`_sparsify_tp`.

    ``fuse_projections=True``: after converting, each gated MLP (``down_proj(act_fn(gate_proj(x))
    * up_proj(x))``) whose ``gate_proj`` and ``up_proj`` were both sparsified runs them as ONE
    2:4 GEMM with the summed N (:class:`sparseflow.fusion.FusedGatedMLP`; under ``tp_group``
    each rank fuses its own shards). ``report.groups`` lists every group, fused or refused with
    the reason, and the members' rows say so. The activation then runs after the GEMM (one
    epilogue covers all N), fused by ``torch.compile`` into the product. Off by default until
    the GPU measurement (``python/benchmarks/e2e.py``, case ``sparse_fused``) shows it faster;
    ``sf.save`` writes the unfused form either way (docs/PYTHON.md, "Projection fusion").

    ``device`` (``"cuda"``, ``"cuda:N"``, ``"cpu"``): where the model ends up, for a model too
    large to be dense there first. Each converted layer is pruned where the model lives and
    only its 2:4 form is placed on ``device``; the rest of the model (embeddings, norms, layers
    left dense, buffers) follows at the end, so device memory only grows, up to the final
    model (within issue 23's bound: final sparse footprint + largest dense layer + 256 MB).
    Magnitude pruning only (calibrated pruning runs the model, which then has to be on one
    device); not with ``tp_group``; float32 layers are refused for CUDA. ``None`` (default), or
    a model already on ``device``: convert where the model lives. Checked before anything is
    modified; ``report.device`` says where the model ended up.

    Returns ``(model, report)``; the report has one row per ``nn.Linear`` (a layer shared
    under several paths is reported and converted once, under its first path).
    """
    target = _target_device(model, device)
    if target is not None:
        _refuse_with_device(target, method, calibration, max_rel_error, tp_group)
    if tp_group is not None:
        model, report = _sparsify_tp(
            model, tp_group, include, exclude, method, fuse, progress, calibration, max_rel_error, permute
        )
        model, report = _fuse_groups(model, report) if fuse_projections else (model, report)
        report.device = _devices(model)
        return model, report
    if method not in METHODS:
        raise ValueError(f"unknown pruning method {method!r}; available: {', '.join(METHODS)}")
    if method in CALIBRATED_METHODS and calibration is None:
        raise ValueError(f"method {method!r} needs calibration=[batches of model inputs]")
    if max_rel_error is not None and calibration is None:
        raise ValueError("max_rel_error needs calibration=[batches of model inputs] to measure the held-out error")
    if isinstance(include, str) or isinstance(exclude, str):
        raise TypeError("include and exclude take a list or tuple of names, not a single string")
    exclude = tuple(exclude or ())
    all_paths: Dict[int, List[str]] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        all_paths.setdefault(id(module), []).append(name)
    parents = dict(model.named_modules())
    fusions, not_fused = _fusion_candidates(model) if fuse else ({}, {})

    rows: List[LayerReport] = []
    jobs: List[Tuple[LayerReport, nn.Linear, List[str], str, Optional[str]]] = []
    for name, module in list(model.named_modules()):
        if type(module).__name__ == "Conv1D" and getattr(getattr(module, "weight", None), "dim", lambda: 0)() == 2:
            w = module.weight  # transformers' Conv1D (GPT-2): y = x @ W + b, W is [in, out]
            rows.append(
                LayerReport(
                    name,
                    "skipped",
                    int(w.shape[0]),
                    int(w.shape[1]),
                    str(w.dtype).replace("torch.", ""),
                    reason="Conv1D (GPT-2 style, weight [in, out]) is not an nn.Linear: convert it to "
                    "nn.Linear (weight transposed) to sparsify it",
                )
            )
            continue
        if not isinstance(module, nn.Linear):
            continue
        paths = all_paths[id(module)]
        row = LayerReport(
            name, "skipped", module.in_features, module.out_features, str(module.weight.dtype).replace("torch.", "")
        )
        rows.append(row)
        # Without calibration the finiteness check runs on the host copy pruning makes anyway
        # (see prune below): on a GPU weight, torch.isfinite(w).all() allocated ~2.5x the
        # weight in temporaries (abs, three bool masks: 280 MB above the starting footprint for
        # a 14336x4096 fp16 layer on the H200) and loaded kernels nothing else needs.
        reason = _skip_reason(name, module, parents, include, exclude, check_finite=calibration is not None)
        if reason is not None:
            row.reason = reason
            continue
        activation, act_path = "none", None
        row.note = not_fused.get(name, "")
        if name in fusions and len(paths) == 1:
            act_path, activation = fusions[name]
            act_module = model.get_submodule(act_path)
            if len(all_paths.get(id(act_module), [])) != 1:
                activation, act_path = "none", None  # a shared activation module stays
        jobs.append((row, module, paths, activation, act_path))
    if target is not None:
        _check_streamable(target, jobs)
    # From here on only `jobs` refers to the layers being converted, so each dense weight is
    # freed as soon as its layer is replaced (streaming; see _install).
    del parents, module

    sites = _permute_sites(model, jobs, all_paths) if permute else []
    permuted: Dict[str, str] = {}
    if sites and calibration is None:
        permuted.update(apply_permutations(model, sites, None))

    def before_block(path: str, block: nn.Module, run: Callable[[], None]) -> None:
        inside = [s for s in sites if not path or s.consumer.startswith(path + ".")]
        if inside:
            permuted.update(apply_permutations(model, inside, run, scope=block, prefix=path))

    # Pruning, compression and the report run in Rust without the GIL: prune layers in
    # parallel on worker threads (each holds one host copy of its weight, no device memory).
    # With device=, a host model's layer is pruned where it is (no copy) and only its 2:4 form
    # crosses to the device: 9/16 of the dense bytes over PCIe, none back. Moving the dense
    # weight over to prune it there would cost a dense upload, and pruning runs on the host
    # anyway (an upload, then a download to prune, then the sparse upload).
    def prune(job: Tuple[LayerReport, nn.Linear, List[str], str, Optional[str]]) -> Any:
        """The layer pruned on the host, or ``None`` when its weight is not finite (checked on
        the host copy, where it costs no device memory)."""
        host = job[1].weight.detach().to("cpu")
        if not bool(torch.isfinite(host).all()):
            return None
        pruned = SparseLinear._prune_on_host(host, job[1].bias, method, None, None)
        return pruned._replace(device=target or job[1].weight.device)

    def install(i: int, sparse: SparseLinear) -> SparseLinear:
        """Puts converted layer ``i`` into the model and drops the converter's last reference to
        the dense layer, so its weight is freed now rather than when sparsify returns."""
        nonlocal model
        row, module, paths, _, act_path = jobs[i]
        sparse.fused_activation = act_path
        sparse.train(module.training)
        _move_hooks(module, sparse)
        for path in paths:
            if path == "":  # the model is this one layer
                model = sparse
            else:
                _set_module(model, path, sparse)
        if act_path is not None:
            _set_module(model, act_path, nn.Identity())
        row.status = "sparsified"
        row.fused = act_path
        if len(paths) > 1:
            row.reason = f"shared with {', '.join(paths[1:])}"
        jobs[i] = (row, None, paths, jobs[i][3], act_path)  # type: ignore[assignment]
        return sparse

    if calibration is not None:
        from .calibrate import run_sequential

        outcomes = run_sequential(
            model,
            [(job[0].name, job[1], job[3]) for job in jobs],
            method,
            calibration,
            max_rel_error=max_rel_error,
            heldout=heldout,
            prune_options=prune_options,
            progress=progress,
            before_block=before_block if sites else None,
        )
        for job in jobs:
            outcome = outcomes[job[0].name]
            if outcome.sparse is None:
                job[0].reason, job[0].diff = outcome.reason, dict(outcome.diff)
        jobs = [job for job in jobs if outcomes[job[0].name].sparse is not None]
        converted = [install(i, outcomes[job[0].name].sparse) for i, job in enumerate(jobs)]
    else:
        from .calibrate import _Bar

        workers = max(1, min(8, os.cpu_count() or 1, len(jobs)))
        bar = _Bar(len(jobs), progress and len(jobs) > 1)
        converted = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Streaming, in model order: the layer goes in as an empty skeleton, the dense layer
            # is dropped (and its memory returned to the device when it was on the GPU), and
            # only then is the sparse weight placed on the device. So converting never holds
            # more than one layer beyond the model itself (docs/PYTHON.md, "Memory").
            for i, pruned in enumerate(pool.map(prune, jobs)):
                row, dense = jobs[i][0], jobs[i][1]
                if pruned is None:
                    row.reason = _NOT_FINITE  # the dense layer stays
                    jobs[i] = None  # type: ignore[call-overload]
                    continue
                sparse = SparseLinear(
                    dense.in_features, dense.out_features, dense.bias is not None,
                    activation=jobs[i][3], device="meta", dtype=pruned.values.dtype,
                )  # fmt: skip
                on_cuda = dense.weight.is_cuda
                del dense
                install(i, sparse)
                if on_cuda:
                    # The freed dense weight would otherwise stay in torch's cache, and the
                    # sparse buffers would be split from it, pinning the whole block.
                    torch.cuda.empty_cache()
                sparse._place(pruned.values, pruned.meta, pruned.bias, pruned.device)
                sparse.method, sparse.diff = method, pruned.diff
                del pruned
                bar.update(row.name, f"2:4, rel err {sparse.diff['rel_fro_error']:.4f}")
                converted.append(sparse)
        bar.close()
        jobs = [job for job in jobs if job is not None]
    for row in rows:
        row.permutation = permuted.get(row.name)
    for (row, *_), sparse in zip(jobs, converted):
        row.epilogue = sparse.epilogue
        row.diff = dict(sparse.diff or {})
    report = SparsifyReport(rows)
    if fuse_projections:
        model, report = _fuse_groups(model, report)
    if target is not None:
        # The rest of the model last, after fusion (whose temporaries then sit beside the sparse
        # layers only): tensor by tensor, so the peak is the final footprint.
        model = model.to(target)
    report.device = _devices(model)
    return model, report


def _refuse_with_device(
    target: torch.device, method: str, calibration: Any, max_rel_error: Optional[float], tp_group: Any
) -> None:
    """``sparsify(device=...)`` with what it cannot stream: a clear error, nothing modified."""
    if calibration is not None or max_rel_error is not None or method in CALIBRATED_METHODS:
        raise NotImplementedError(
            f"sparsify(device={str(target)!r}) streams magnitude pruning only: calibrated pruning "
            f"({method!r}, calibration=, max_rel_error=) runs the whole model, which must be on one device. "
            f"Either move the dense model first (model.to({str(target)!r}), then sparsify without device=) "
            f"if it fits there, or calibrate where it is and move the sparse model after "
            f"(sparsify(model, calibration=...), then model.to({str(target)!r}))"
        )
    if tp_group is not None:
        raise NotImplementedError(
            f"sparsify(tp_group=..., device={str(target)!r}): sharding runs where the model lives; call "
            f"sparsify(model, tp_group=...) on the host model (each rank keeps only its shards), then "
            f"model.to({str(target)!r})"
        )


def _fuse_groups(model: nn.Module, report: SparsifyReport) -> Tuple[nn.Module, SparsifyReport]:
    """``sparsify(..., fuse_projections=True)``'s last step: :func:`sparseflow.fusion.fuse_projections`,
    with every group in the report and a note on its members' rows."""
    from .fusion import fuse_projections

    model, groups = fuse_projections(model)
    rows = {r.name: r for r in report.rows}
    for group in groups:
        for member in group.members:
            row = rows.get(member)
            if row is None:
                continue
            if group.status == "fused":
                others = ", ".join(m.rpartition(".")[2] for m in group.members if m != member)
                note = f"one GEMM with {others} as {group.module}"
                if row.fused:  # one epilogue covers all N: the activation runs after the GEMM
                    note += f", {row.fused.rpartition('.')[2]} ({split_epilogue(row.epilogue)[0]}) after it"
                    row.fused = None
                row.epilogue = model.get_submodule(group.module).epilogue
            else:
                note = f"not fused into {group.module}: {group.reason}"
            row.note = f"{row.note}; {note}" if row.note else note
    report.groups = groups
    return model, report


def _sparsify_tp(
    model: nn.Module,
    tp_group: Any,
    include: Optional[Sequence[str]],
    exclude: Sequence[str],
    method: str,
    fuse: bool,
    progress: bool,
    calibration: Optional[Iterable[Any]],
    max_rel_error: Optional[float],
    permute: bool,
) -> Tuple[nn.Module, SparsifyReport]:
    """``sparsify(model, tp_group=...)``: q/k/v and gate/up column-parallel, o and down
    row-parallel, each rank pruning only its slices (``sparseflow.parallel``, docs/PYTHON.md
    "Tensor parallel"). Calibrated pruning and permutations see whole layers: run them in one
    process, ``sf.save``, and load per rank with ``sparseflow.parallel.load``."""
    if calibration is not None or max_rel_error is not None or permute or method != "magnitude":
        raise NotImplementedError(
            "sparsify(tp_group=...) prunes by magnitude only (calibration, max_rel_error and permute need "
            "whole layers): sparsify in one process, sf.save, then sparseflow.parallel.load(path, model, group)"
        )
    if isinstance(include, str) or isinstance(exclude, str):
        raise TypeError("include and exclude take a list or tuple of names, not a single string")
    from .parallel import sparsify_tensor_parallel

    return sparsify_tensor_parallel(
        model, tp_group, include=include, exclude=tuple(exclude or ()), method=method, fuse=fuse, progress=progress
    )
