"""Projection fusion: a gated MLP's ``gate_proj`` and ``up_proj`` as ONE 2:4 GEMM.

``down_proj(act_fn(gate_proj(x)) * up_proj(x))`` (transformers' Llama, Mistral, Qwen2, ...
MLPs) reads the same ``x`` twice. :class:`FusedGatedMLP` stacks the two sparse weights along N
(``[gate; up]``, whole rows of the canonical pair: 2:4 groups run along K, so the stacked
weight is valid 2:4 with no re-pruning) and runs one launch with the summed N, then
``act_fn(g) * u`` and ``down_proj``. Under ``torch.compile`` Inductor fuses the split, the
activation and the product into one elementwise kernel.

The activation leaves the GEMM's epilogue: one kernel epilogue covers all N, and it must not
touch the ``up`` half. ``silu`` fused into ``gate_proj``'s epilogue saved no kernel anyway (the
product ``* up`` is an elementwise kernel in both forms, and the activation joins it), so the
fused form runs one launch fewer; the activation is computed on the rounded GEMM output, as the
dense model does, instead of on the fp32 accumulator.

Nothing is hidden: the fused module keeps what each member was (shape, bias, pruning method and
report, the activation its epilogue applied, the activation module it replaced), ``state_dict()``
and ``sf.save`` write the *unfused* names (``mlp.gate_proj.values``, ``mlp.up_proj.meta``, ...,
rows sliced back out) with the members' manifest entries, so every file stays the plain format
(the C ABI, ``sparseflow convert --tp`` and :func:`sparseflow.parallel.load` read it), and
``load_state_dict`` accepts those names (and stacks them).

q/k/v are not fused: transformers' attention ``forward`` calls the three projections
separately, so serving them from one GEMM means state carried between three module calls (one
output stashed by the first call, keyed on the input's identity), which an in-place write to
the input between the calls would not invalidate, and which under CUDA-graph trees can outlive
the replay whose memory it points into; the alternative, replacing the attention ``forward``,
copies transformers' code per version. See docs/PYTHON.md, "Projection fusion".
"""

from __future__ import annotations

import inspect
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor, nn

from .activations import TORCH as _ACTIVATION_FN
from .linear import SparseLinear
from .ops import epilogue_name

__all__ = ["FusedGatedMLP", "FusedGroup", "fuse_projections"]

#: The fused layer's attribute name in :class:`FusedGatedMLP`.
FUSED_NAME = "gate_up_proj"
#: The members of a gated MLP's fused group, in row order.
MEMBERS = ("gate_proj", "up_proj")


@dataclass
class FusedGroup:
    """One group of layers :func:`fuse_projections` fused (``status="fused"``) or left alone
    (``"refused"``, with the reason)."""

    module: str  # path of the fused layer, e.g. "model.layers.0.mlp.gate_up_proj"
    members: List[str]  # the layers it replaces, in row order
    status: str
    in_features: int = 0
    out_features: int = 0  # the fused N
    splits: List[int] = field(default_factory=list)
    reason: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


class _Member(NamedTuple):
    """What a fused layer was: ``path`` relative to the MLP (``gate_proj``, or
    ``gate_proj.local`` for a tensor-parallel shard), its rows, and its manifest fields."""

    path: str
    out_features: int
    activation: str
    has_bias: bool
    method: str
    diff: Optional[Dict[str, Any]]
    fused_activation: Optional[str]


_FORWARD = re.compile(
    r"defforward\(self,(\w+)(?::[\w.\[\]]+)?\)(?:->[\w.\[\]]+)?:"
    r"(?:return|(\w+)=)self\.down_proj\(self\.act_fn\(self\.gate_proj\(\1\)\)\*self\.up_proj\(\1\)\)(?:return\2)?"
)


def forward_source(module: nn.Module) -> Optional[str]:
    """The source of ``type(module).forward`` without docstrings, comments and white space, for
    recognising a module's computation; ``None`` when the source is not available."""
    try:
        source = inspect.getsource(type(module).forward)
    except (OSError, TypeError):
        return None
    source = re.sub(r'(?s)""".*?"""', "", source)
    source = re.sub(r"#[^\n]*", "", source)
    return re.sub(r"\s+", "", source)


def _forward_is_gated_mlp(module: nn.Module) -> bool:
    """Whether the class's whole ``forward`` is ``return down_proj(act_fn(gate_proj(x)) *
    up_proj(x))`` (optionally through one local variable): replacing the module is then exact."""
    if "forward" in module.__dict__:
        return False
    compact = forward_source(module)
    return compact is not None and _FORWARD.fullmatch(compact) is not None


def _sparse_member(mlp: nn.Module, name: str) -> Tuple[str, SparseLinear]:
    """``(path, SparseLinear)`` of one member: the layer itself, or the local shard of a
    column-parallel layer that keeps its output sharded."""
    from .parallel import ColumnParallelSparseLinear

    layer = getattr(mlp, name)
    if isinstance(layer, ColumnParallelSparseLinear):
        if layer.gather_output:
            raise ValueError(f"{name} gathers its output across ranks; only sharded outputs fuse")
        path, layer = f"{name}.local", layer.local
    else:
        path = name
    if not isinstance(layer, SparseLinear):
        raise ValueError(f"{name} is a {type(layer).__name__}, not a SparseLinear (left dense?)")
    return path, layer


def _check_group(mlp: nn.Module, members: List[Tuple[str, SparseLinear]]) -> None:
    """Clear errors for a group that cannot be one GEMM."""
    from .sparsify import _has_hooks

    wrappers = [getattr(mlp, name) for name in MEMBERS]
    layers = [layer for _, layer in members]
    for name, wrapper, layer in zip(MEMBERS, wrappers, layers):
        if _has_hooks(wrapper) or _has_hooks(layer):
            raise ValueError(f"{name} has hooks, which would stop firing")
    checks: Tuple[Tuple[str, Callable[[SparseLinear], Any]], ...] = (
        ("in_features", lambda l: l.in_features),
        ("dtype", lambda l: l.values.dtype),
        ("device", lambda l: l.values.device),
        ("bias", lambda l: l.bias is not None),
    )
    for what, get in checks:
        got = [get(layer) for layer in layers]
        if len(set(got)) != 1:
            detail = ", ".join(f"{n} {g}" for n, g in zip(MEMBERS, got))
            raise ValueError(f"gate_proj and up_proj differ in {what} ({detail})")
    if layers[1].activation != "none":
        raise ValueError(f"up_proj applies {layers[1].activation} in its epilogue")
    bounds = [(getattr(w, "start", None), getattr(w, "stop", None)) for w in wrappers]
    if bounds[0] != bounds[1]:
        raise ValueError(f"the tensor-parallel shards of gate_proj and up_proj differ ({bounds[0]} vs {bounds[1]})")


class FusedGatedMLP(nn.Module):
    """``down_proj(act_fn(activation(g)) * u)`` with ``[g, u] = gate_up_proj(x)``: a gated MLP
    whose ``gate_proj`` and ``up_proj`` run as one 2:4 GEMM (``gate_up_proj``, N = the members'
    sum, epilogue ``none`` or ``bias``). ``activation``: what ``gate_proj``'s epilogue applied
    (``act_fn`` is then the ``nn.Identity`` sparsify left), applied here with torch.

    Build one with :meth:`from_mlp` (or :func:`fuse_projections` for a whole model).
    ``state_dict()`` holds the members' names and canonical tensors (see the module docstring).
    """

    def __init__(
        self, gate_up_proj: SparseLinear, act_fn: nn.Module, down_proj: nn.Module, members: List[_Member]
    ) -> None:
        super().__init__()
        if sum(m.out_features for m in members) != gate_up_proj.out_features:
            raise ValueError("the members' rows do not add up to the fused layer's")
        self.gate_up_proj = gate_up_proj
        self.act_fn = act_fn
        self.down_proj = down_proj
        self.members = list(members)
        self.splits = [m.out_features for m in members]
        self.activation = members[0].activation
        self.register_state_dict_post_hook(_unfuse_state)
        self.register_load_state_dict_pre_hook(_fuse_state)

    @classmethod
    def from_mlp(cls, mlp: nn.Module) -> "FusedGatedMLP":
        """The fused form of a gated MLP whose ``gate_proj`` and ``up_proj`` are
        :class:`SparseLinear` (or column-parallel shards of them, which fuse per rank). Raises
        ``ValueError`` saying why when the structure or the layers do not allow it. The MLP's
        own hooks move to the fused module; ``mlp`` is left as it was."""
        if not all(isinstance(getattr(mlp, a, None), nn.Module) for a in (*MEMBERS, "down_proj", "act_fn")):
            raise ValueError(f"{type(mlp).__name__} has no gate_proj, up_proj, down_proj and act_fn modules")
        if not _forward_is_gated_mlp(mlp):
            raise ValueError(
                f"{type(mlp).__name__}.forward is not exactly down_proj(act_fn(gate_proj(x)) * up_proj(x))"
            )
        members = [_sparse_member(mlp, name) for name in MEMBERS]
        _check_group(mlp, members)
        gate, up = (layer for _, layer in members)
        canon = [layer.canonical() for layer in (gate, up)]
        values = torch.cat([v for v, _ in canon])
        meta = torch.cat([m for _, m in canon])
        bias = None if gate.bias is None else torch.cat([gate.bias.detach(), up.bias.detach()])
        fused = SparseLinear._from_host(values, meta, bias, gate.values.device, "none")
        del canon, values, meta
        fused.method = gate.method if gate.method == up.method else f"{gate.method}+{up.method}"
        fused.max_tokens = max(gate.max_tokens or 0, up.max_tokens or 0) or None
        fused.train(gate.training)
        if fused.max_tokens is not None:
            fused.prepare(fused.max_tokens)
        info = [
            _Member(p, l.out_features, l.activation, l.bias is not None, l.method, l.diff, l.fused_activation)
            for p, l in members
        ]
        new = cls(fused, mlp.act_fn, mlp.down_proj, info)
        new.train(mlp.training)
        from .sparsify import _move_hooks

        _move_hooks(mlp, new)
        return new

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).split(self.splits, dim=-1)
        if self.activation != "none":
            gate = _ACTIVATION_FN[self.activation](gate)
        return self.down_proj(self.act_fn(gate) * up)

    def manifest_entries(self, prefix: str) -> Dict[str, Dict[str, Any]]:
        """The members' ``sparseflow.json`` layer entries (``prefix``: this module's path plus
        a dot), as the unfused model writes them."""
        k = self.gate_up_proj.in_features
        return {
            prefix + m.path: {
                "shape": [m.out_features, k],
                "dtype": str(self.gate_up_proj.values.dtype).replace("torch.", ""),
                "method": m.method,
                "epilogue": epilogue_name(m.activation, m.has_bias),
                "diff": dict(m.diff or {}),
                "fused_activation": m.fused_activation,
            }
            for m in self.members
        }

    def extra_repr(self) -> str:
        names = " + ".join(f"{m.path} [{m.out_features}]" for m in self.members)
        return f"fused={names}, activation={self.activation}"


_TENSORS = ("values", "meta", "bias")


def _unfuse_state(module: FusedGatedMLP, state: Dict[str, Any], prefix: str, _meta: Any) -> None:
    """state_dict post-hook: the fused layer's canonical rows, back under the members' names."""
    for t in _TENSORS:
        fused = state.pop(f"{prefix}{FUSED_NAME}.{t}", None)
        if fused is None:
            continue
        for m, part in zip(module.members, fused.split(module.splits, dim=0)):
            state[f"{prefix}{m.path}.{t}"] = part


def _fuse_state(module: FusedGatedMLP, state: Dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: the members' tensors stacked into the fused layer's names (a
    partial set is left for load_state_dict to report)."""
    for t in _TENSORS:
        keys = [f"{prefix}{m.path}.{t}" for m in module.members]
        if all(k in state for k in keys):
            state[f"{prefix}{FUSED_NAME}.{t}"] = torch.cat([state.pop(k) for k in keys])


def fuse_projections(model: nn.Module) -> Tuple[nn.Module, List[FusedGroup]]:
    """Fuses every gated MLP of ``model`` whose ``gate_proj`` and ``up_proj`` are sparse (after
    :func:`sparseflow.sparsify`, or :func:`sparseflow.load`) into a :class:`FusedGatedMLP`, in
    place. Returns ``(model, groups)``: one :class:`FusedGroup` per gated MLP, fused or refused
    with the reason (an MLP with a different ``forward``, a member left dense, members that
    differ in shape, dtype, device or bias, hooks on a member)."""
    from .sparsify import _set_module

    groups: List[FusedGroup] = []
    for name, module in list(model.named_modules()):
        if isinstance(module, FusedGatedMLP) or not all(
            isinstance(getattr(module, a, None), nn.Module) for a in (*MEMBERS, "down_proj", "act_fn")
        ):
            continue
        prefix = f"{name}." if name else ""
        group = FusedGroup(prefix + FUSED_NAME, [prefix + m for m in MEMBERS], "refused")
        try:
            fused = FusedGatedMLP.from_mlp(module)
        except ValueError as e:
            group.reason = str(e)
        else:
            group.status = "fused"
            group.in_features, group.out_features = fused.gate_up_proj.in_features, fused.gate_up_proj.out_features
            group.splits = list(fused.splits)
            if name:
                _set_module(model, name, fused)
            else:
                model = fused
        groups.append(group)
    return model, groups
