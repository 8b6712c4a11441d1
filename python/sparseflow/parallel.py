"""Tensor parallelism: Megatron-style column- and row-parallel 2:4 linears over ``torch.distributed``.

SparseFlow fits into the usual tensor-parallel engine instead of inventing one: the collectives
are ``torch.distributed``'s (NCCL on GPUs, gloo on CPU), the local GEMM is SparseFlow's. The
rules that keep a shard valid 2:4 (docs/PYTHON.md, "Tensor parallel"):

* **Column-parallel** (q/k/v, gate/up): the weight ``[N, K]`` is split along N, whole rows of
  the canonical ``values [N, K/2]`` / ``meta [N, K/8]`` (docs/FORMAT.md). Each rank computes its
  slice of the output; a fused activation stays fused (it is elementwise on the rank's outputs).
* **Row-parallel** (o, down): split along K on boundaries that are multiples of 8 — whole 2:4
  groups and whole metadata bytes — so each rank's shard is the canonical format of its own K
  (the last rank's shard may end in the padding nibble, as any odd-group weight does). Each rank
  computes a partial product, one ``all_reduce`` sums them, and the bias is added once, after
  it; an activation after a row-parallel layer is applied after the all-reduce too, never fused.
* Slicing works on the canonical pair (``SparseLinear.canonical()``; a CUDA layer stores the
  device layout), and each rank's :class:`~sparseflow.SparseLinear` is built from its slices.

Magnitude pruning decides each group of 4 within one row, so pruning a rank's slice of a dense
weight gives exactly that slice of the pruned full weight: :meth:`ColumnParallelSparseLinear.from_dense`
and :func:`load` prune only the rank's slice. Calibrated methods (Wanda, SparseGPT) see whole
rows: prune in one process, ``sf.save``, and load the result per rank with :func:`load`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .activations import TORCH as _ACTIVATION_FN
from .linear import SparseLinear
from .ops import check_meta, meta_bytes, split_epilogue

__all__ = [
    "ColumnParallelSparseLinear",
    "RowParallelSparseLinear",
    "shard_bounds",
    "shard_columns",
    "shard_rows",
    "llama_plan",
    "parallelize",
    "sparsify_tensor_parallel",
    "load",
    "shard",
]

#: Row-parallel split boundaries are multiples of this: two 2:4 groups = one metadata byte.
K_SPLIT_MULTIPLE = 8

Group = Any  # a torch.distributed ProcessGroup, a 1-D DeviceMesh, or None (the default group)


def _group(group: Group) -> Tuple[Any, int, int]:
    """``(process group, rank in it, its size)``; a 1-D ``DeviceMesh`` stands for its group."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "tensor parallelism needs torch.distributed initialized first: "
            "torch.distributed.init_process_group('nccl' or 'gloo', ...), e.g. under torchrun"
        )
    if hasattr(group, "get_group"):  # DeviceMesh
        group = group.get_group()
    return group, dist.get_rank(group), dist.get_world_size(group)


def shard_bounds(total: int, world: int, multiple: int = 1) -> List[Tuple[int, int]]:
    """``[(start, stop)]`` per rank: ``total`` split as evenly as whole blocks of ``multiple``
    allow, every boundary a multiple of ``multiple``, the last rank ending at ``total`` (so it
    may hold a partial block). ``ValueError`` when a rank would get nothing."""
    if total <= 0 or world <= 0 or multiple <= 0:
        raise ValueError(f"shard_bounds needs positive sizes, got total={total}, world={world}, multiple={multiple}")
    blocks = -(-total // multiple)
    if blocks < world:
        raise ValueError(
            f"cannot split {total} over {world} ranks in blocks of {multiple}: only {blocks} block(s), "
            "a rank would hold nothing"
        )
    base, extra = divmod(blocks, world)
    bounds, start = [], 0
    for r in range(world):
        stop = min(total, start + (base + (r < extra)) * multiple)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard_rows(values: Tensor, meta: Tensor, start: int, stop: int) -> Tuple[Tensor, Tensor]:
    """The column-parallel shard of a canonical pair (tensors, or safetensors slices that read only
    those rows): output rows ``start:stop`` (N)."""
    return values[start:stop].contiguous(), meta[start:stop].contiguous()


def shard_columns(values: Tensor, meta: Tensor, start: int, stop: int, in_features: int) -> Tuple[Tensor, Tensor]:
    """The row-parallel shard of a canonical pair: input columns ``start:stop`` (K), which must
    start on a multiple of 8 and end on one (or at ``in_features``) so the shard holds whole
    2:4 groups and whole metadata bytes."""
    if start % K_SPLIT_MULTIPLE or (stop % K_SPLIT_MULTIPLE and stop != in_features) or not 0 <= start < stop <= in_features:
        raise ValueError(
            f"a row-parallel shard [{start}, {stop}) of in_features = {in_features} must start on a multiple "
            f"of {K_SPLIT_MULTIPLE} and end on one or at in_features (whole 2:4 groups and metadata bytes)"
        )
    return (
        values[:, start // 2 : stop // 2].contiguous(),
        meta[:, start // K_SPLIT_MULTIPLE : start // K_SPLIT_MULTIPLE + meta_bytes(stop - start)].contiguous(),
    )


def _slice_source(source: Any, dim: int, start: int, stop: int) -> Tensor:
    """Rows (``dim=0``) or columns (``dim=1``) ``start:stop`` of a tensor or a safetensors slice
    (which reads only those bytes of the memory-mapped file)."""
    return source[start:stop] if dim == 0 else source[:, start:stop]


class _ParallelLinear(nn.Module):
    """What both styles share: the full shape, this rank's range and its local module."""

    def __init__(
        self, local: nn.Module, in_features: int, out_features: int, start: int, stop: int, group: Group
    ) -> None:
        super().__init__()
        self.local = local
        self.in_features, self.out_features = in_features, out_features
        self.start, self.stop = start, stop
        self.group, self.rank, self.world_size = _group(group)

    @property
    def sparse(self) -> bool:
        return isinstance(self.local, SparseLinear)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}/{self.world_size}, shard=[{self.start}, {self.stop})"
        )


def _local_sparse(
    values: Tensor, meta: Tensor, bias: Optional[Tensor], device: torch.device, activation: str
) -> SparseLinear:
    check_meta(meta, 2 * values.shape[1])
    return SparseLinear._from_host(values.to("cpu"), meta.to("cpu"), bias, device, activation)


def _local_dense(weight: Tensor, bias: Optional[Tensor], device: torch.device) -> nn.Linear:
    n, k = weight.shape
    layer = nn.Linear(k, n, bias=bias is not None, device="meta", dtype=weight.dtype)
    layer.weight = nn.Parameter(weight.detach().to(device).contiguous(), requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().to(device).contiguous(), requires_grad=False)
    return layer


def _prune_local(weight: Tensor, bias: Optional[Tensor], device: torch.device, method: str, activation: str) -> SparseLinear:
    """A rank's slice of a dense weight as a SparseLinear: ``magnitude`` prunes it, ``already-2:4``
    requires it to be 2:4 already (a dense-stored 2:4 checkpoint)."""
    if method not in ("magnitude", "already-2:4"):
        raise NotImplementedError(
            f"method {method!r} per rank: only 'magnitude' (and 'already-2:4') decide each group within one "
            "row slice; prune with calibration in one process, sf.save, then sparseflow.parallel.load per rank"
        )
    layer, diff = SparseLinear.from_dense(weight.detach().to("cpu"), bias, return_diff=True, activation=activation)
    if method == "already-2:4" and diff["max_error"] != 0.0:
        raise ValueError(
            f"method 'already-2:4': the weight slice is not 2:4 (pruning it changed a weight by {diff['max_error']})"
        )
    layer.method = method
    return layer.to(device)


class ColumnParallelSparseLinear(_ParallelLinear):
    """Output features ``start:stop`` of a linear layer on this rank (split along N).

    ``forward(x [..., in_features]) -> [..., stop - start]`` (this rank's slice), or the full
    ``[..., out_features]`` gathered from all ranks with ``gather_output=True``. The local
    layer keeps its fused activation. ``local`` is a :class:`SparseLinear` (or an ``nn.Linear``
    for a layer that stays dense inside a sharded block).

    ``multiple`` (of ``from_sparse`` / ``from_dense``): the split granularity along N, 1 by
    default; when this output feeds a row-parallel layer, pass that layer's (8, or the head
    size) so both split on the same boundaries (:func:`parallelize` and :func:`llama_plan` do)."""

    def __init__(
        self,
        local: nn.Module,
        in_features: int,
        out_features: int,
        start: int,
        stop: int,
        group: Group = None,
        *,
        gather_output: bool = False,
    ) -> None:
        super().__init__(local, in_features, out_features, start, stop, group)
        if (local.out_features, local.in_features) != (stop - start, in_features):
            raise ValueError(
                f"local layer is [{local.out_features}, {local.in_features}], expected rows [{start}, {stop}) "
                f"of [{out_features}, {in_features}]"
            )
        self.gather_output = gather_output
        self._widths: Optional[List[int]] = None  # every rank's shard width, found at the first gather

    @classmethod
    def from_sparse(
        cls, layer: SparseLinear, group: Group = None, *, multiple: int = 1, gather_output: bool = False
    ) -> "ColumnParallelSparseLinear":
        """This rank's rows of a :class:`SparseLinear` (slices of its canonical pair, on its device)."""
        _, rank, world = _group(group)
        start, stop = shard_bounds(layer.out_features, world, multiple)[rank]
        values, meta = shard_rows(*layer.canonical(), start, stop)
        bias = None if layer.bias is None else layer.bias.detach()[start:stop]
        local = _local_sparse(values, meta, bias, layer.values.device, layer.activation)
        local.method, local.diff = layer.method, layer.diff
        return cls(local, layer.in_features, layer.out_features, start, stop, group, gather_output=gather_output)

    @classmethod
    def from_dense(
        cls,
        linear: Union[nn.Linear, Tensor, Any],
        group: Group = None,
        *,
        bias: Optional[Tensor] = None,
        method: str = "magnitude",
        activation: str = "none",
        sparse: bool = True,
        multiple: int = 1,
        gather_output: bool = False,
        device: Optional[torch.device] = None,
    ) -> "ColumnParallelSparseLinear":
        """This rank's rows of a dense ``nn.Linear`` (or a weight ``[N, K]`` / safetensors slice
        plus ``bias``), pruned to 2:4 on their own (equal to the rows of the pruned full weight).
        ``sparse=False`` keeps the shard dense."""
        weight, bias = (linear.weight, linear.bias) if isinstance(linear, nn.Linear) else (linear, bias)
        n, k = weight.get_shape() if hasattr(weight, "get_shape") else weight.shape
        _, rank, world = _group(group)
        start, stop = shard_bounds(n, world, multiple)[rank]
        device = torch.device(device) if device is not None else _source_device(weight)
        w = _slice_source(weight, 0, start, stop)
        b = None if bias is None else _slice_source(bias, 0, start, stop)
        if sparse:
            local: nn.Module = _prune_local(w, b, device, method, activation)
        else:
            if activation != "none":
                raise ValueError("a dense shard has no fused activation: keep the activation module")
            local = _local_dense(w, b, device)
        return cls(local, k, n, start, stop, group, gather_output=gather_output)

    def forward(self, x: Tensor) -> Tensor:
        y = self.local(x)
        if not self.gather_output or self.world_size == 1:
            return y
        # Shards may differ in size (odd N): gather padded to the largest, then trim.
        if self._widths is None:
            self._widths = [b - a for a, b in _all_bounds(self)]
        widest = max(self._widths)
        padded = torch.nn.functional.pad(y, (0, widest - y.shape[-1])).contiguous()
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        return torch.cat([p[..., :w] for p, w in zip(parts, self._widths)], dim=-1)


def _all_bounds(layer: _ParallelLinear) -> List[Tuple[int, int]]:
    """Every rank's ``(start, stop)`` of a column-parallel layer (one all_gather of two ints)."""
    mine = torch.tensor([layer.start, layer.stop], dtype=torch.int64, device=_collective_device(layer))
    parts = [torch.empty_like(mine) for _ in range(layer.world_size)]
    dist.all_gather(parts, mine, group=layer.group)
    return [(int(p[0]), int(p[1])) for p in parts]


def _collective_device(layer: nn.Module) -> torch.device:
    """Where this layer's collectives run: its tensors' device (NCCL needs CUDA tensors)."""
    t = next(iter(layer.parameters()), None)
    t = t if t is not None else next(iter(layer.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


class RowParallelSparseLinear(_ParallelLinear):
    """Input features ``start:stop`` of a linear layer on this rank (split along K, on multiples
    of 8), its partial products summed by one ``all_reduce``; the bias (``[out_features]``,
    replicated) is added once, after it, and so is ``activation`` (never fused: it needs the
    all-reduced sum).

    ``forward(x)``: ``x [..., stop - start]``, this rank's slice (the output of a
    column-parallel layer, ``input_is_parallel=True``), or the full ``[..., in_features]``
    (``input_is_parallel=False``; the layer slices it). Returns ``[..., out_features]`` on every
    rank."""

    bias: Optional[Tensor]

    def __init__(
        self,
        local: nn.Module,
        in_features: int,
        out_features: int,
        start: int,
        stop: int,
        group: Group = None,
        *,
        bias: Optional[Tensor] = None,
        activation: str = "none",
        input_is_parallel: bool = True,
    ) -> None:
        super().__init__(local, in_features, out_features, start, stop, group)
        if (local.out_features, local.in_features) != (out_features, stop - start):
            raise ValueError(
                f"local layer is [{local.out_features}, {local.in_features}], expected columns [{start}, {stop}) "
                f"of [{out_features}, {in_features}]"
            )
        if getattr(local, "bias", None) is not None:
            raise ValueError("a row-parallel local layer has no bias: pass it as bias=, it is added after the all-reduce")
        if isinstance(local, SparseLinear) and local.activation != "none":
            raise ValueError("a row-parallel local layer cannot fuse an activation: pass it as activation=")
        if activation != "none" and activation not in _ACTIVATION_FN:
            raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(_ACTIVATION_FN)}")
        self.activation = activation
        self.input_is_parallel = input_is_parallel
        if bias is not None:
            if tuple(bias.shape) != (out_features,):
                raise ValueError(f"bias must have shape [{out_features}], got {tuple(bias.shape)}")
            self.register_buffer("bias", bias.detach().contiguous())
        else:
            self.bias = None

    @classmethod
    def from_sparse(
        cls, layer: SparseLinear, group: Group = None, *, multiple: int = K_SPLIT_MULTIPLE, input_is_parallel: bool = True
    ) -> "RowParallelSparseLinear":
        """This rank's columns of a :class:`SparseLinear`; a fused activation is applied after
        the all-reduce instead."""
        _, rank, world = _group(group)
        start, stop = shard_bounds(layer.in_features, world, _k_multiple(multiple))[rank]
        values, meta = shard_columns(*layer.canonical(), start, stop, layer.in_features)
        local = _local_sparse(values, meta, None, layer.values.device, "none")
        local.method, local.diff = layer.method, layer.diff
        bias = None if layer.bias is None else layer.bias.detach()
        return cls(
            local, layer.in_features, layer.out_features, start, stop, group,
            bias=bias, activation=layer.activation, input_is_parallel=input_is_parallel,
        )  # fmt: skip

    @classmethod
    def from_dense(
        cls,
        linear: Union[nn.Linear, Tensor, Any],
        group: Group = None,
        *,
        bias: Optional[Tensor] = None,
        method: str = "magnitude",
        activation: str = "none",
        sparse: bool = True,
        multiple: int = K_SPLIT_MULTIPLE,
        input_is_parallel: bool = True,
        device: Optional[torch.device] = None,
    ) -> "RowParallelSparseLinear":
        """This rank's columns of a dense ``nn.Linear`` (or a weight ``[N, K]`` / safetensors
        slice plus ``bias``), pruned to 2:4 on their own (equal to those columns of the pruned
        full weight: the split keeps whole groups). ``sparse=False`` keeps the shard dense."""
        weight, bias = (linear.weight, linear.bias) if isinstance(linear, nn.Linear) else (linear, bias)
        n, k = weight.get_shape() if hasattr(weight, "get_shape") else weight.shape
        _, rank, world = _group(group)
        start, stop = shard_bounds(k, world, _k_multiple(multiple))[rank]
        device = torch.device(device) if device is not None else _source_device(weight)
        w = _slice_source(weight, 1, start, stop)
        local = _prune_local(w, None, device, method, "none") if sparse else _local_dense(w, None, device)
        b = None if bias is None else (bias[:] if hasattr(bias, "get_shape") else bias).to(device)
        return cls(
            local, k, n, start, stop, group, bias=b, activation=activation, input_is_parallel=input_is_parallel
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        if not self.input_is_parallel:
            x = x[..., self.start : self.stop]
        y = self.local(x)
        if self.world_size > 1:
            dist.all_reduce(y, group=self.group)
        if self.bias is not None:
            y = y + self.bias
        if self.activation != "none":
            y = _ACTIVATION_FN[self.activation](y)
        return y

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bias={self.bias is not None}, activation={self.activation}"


def _k_multiple(multiple: int) -> int:
    if multiple % K_SPLIT_MULTIPLE:
        raise ValueError(
            f"row-parallel split multiple {multiple} is not a multiple of {K_SPLIT_MULTIPLE} "
            "(whole 2:4 groups and metadata bytes)"
        )
    return multiple


def _source_device(t: Any) -> torch.device:
    device = getattr(t, "device", None)
    return device if isinstance(device, torch.device) and device.type != "meta" else torch.device("cpu")


# ------------------------------------------------------------------------------------ plans

COLWISE, ROWWISE = "colwise", "rowwise"


def _style(style: Any) -> Tuple[str, Dict[str, bool]]:
    """``("colwise" | "rowwise", options)`` from a style name or a
    ``torch.distributed.tensor.parallel`` ``ColwiseParallel`` / ``RowwiseParallel``; layouts this
    module cannot honour are an error, never ignored."""
    if style in (COLWISE, ROWWISE):
        return style, {}
    name = type(style).__name__
    if name not in ("ColwiseParallel", "RowwiseParallel"):
        raise ValueError(f"unknown tensor-parallel style {style!r}: use 'colwise', 'rowwise', ColwiseParallel(), RowwiseParallel()")
    from torch.distributed.tensor import Replicate, Shard

    def is_shard(layouts: Any) -> bool:
        layouts = layouts if isinstance(layouts, (tuple, list)) else (layouts,)
        return all(isinstance(p, Shard) and p.dim in (-1,) for p in layouts)

    def is_replicate(layouts: Any) -> bool:
        layouts = layouts if isinstance(layouts, (tuple, list)) else (layouts,)
        return all(isinstance(p, Replicate) for p in layouts)

    inputs, outputs = getattr(style, "input_layouts", None), getattr(style, "output_layouts", None)
    if name == "ColwiseParallel":
        if not is_replicate(inputs) or not (is_shard(outputs) or is_replicate(outputs)):
            raise ValueError("ColwiseParallel: only input Replicate() and output Shard(-1) or Replicate() are supported")
        return COLWISE, {"gather_output": is_replicate(outputs)}
    if not is_replicate(outputs) or not (is_shard(inputs) or is_replicate(inputs)):
        raise ValueError("RowwiseParallel: only input Shard(-1) or Replicate() and output Replicate() are supported")
    return ROWWISE, {"input_is_parallel": is_shard(inputs)}


def llama_plan(model: nn.Module, world: int) -> Tuple[Dict[str, str], Dict[str, int]]:
    """The Megatron plan of a Llama-style model: ``({path: "colwise" | "rowwise"}, {path: split
    multiple})``. Attention blocks (children ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) are
    split by heads (q/k/v column-, o row-parallel); gated MLPs (``gate_proj``, ``up_proj``,
    ``down_proj``) split ``intermediate_size`` in multiples of 8 (gate/up column-, down
    row-parallel). That is one all-reduce per attention and one per MLP block. Head counts that
    do not divide by ``world`` are a ``ValueError``."""
    plan: Dict[str, str] = {}
    multiples: Dict[str, int] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = dict(module.named_children())
        if all(isinstance(children.get(c), nn.Linear) for c in ("q_proj", "k_proj", "v_proj", "o_proj")):
            config = getattr(module, "config", None)
            heads = getattr(config, "num_attention_heads", None)
            head_dim = getattr(module, "head_dim", None) or (children["q_proj"].out_features // heads if heads else None)
            if not head_dim:
                raise ValueError(f"{name}: cannot tell the head size (no head_dim attribute or config)")
            for c in ("q_proj", "k_proj", "v_proj"):
                count, rest = divmod(children[c].out_features, head_dim)
                if rest or count % world:
                    raise ValueError(
                        f"{prefix}{c}: {children[c].out_features} outputs = {count} heads of {head_dim} do not split "
                        f"over {world} ranks (tensor parallelism splits whole heads)"
                    )
                plan[prefix + c], multiples[prefix + c] = COLWISE, head_dim
            plan[prefix + "o_proj"], multiples[prefix + "o_proj"] = ROWWISE, head_dim
            if (children["q_proj"].out_features // world) % K_SPLIT_MULTIPLE:
                raise ValueError(
                    f"{prefix}o_proj: its shard of {children['q_proj'].out_features // world} inputs is not a multiple "
                    f"of {K_SPLIT_MULTIPLE} (whole 2:4 groups and metadata bytes)"
                )
        if all(isinstance(children.get(c), nn.Linear) for c in ("gate_proj", "up_proj", "down_proj")):
            for c, style in (("gate_proj", COLWISE), ("up_proj", COLWISE), ("down_proj", ROWWISE)):
                plan[prefix + c], multiples[prefix + c] = style, K_SPLIT_MULTIPLE
    return plan, multiples


def _bounds_for(style: str, shape: Tuple[int, int], world: int, multiple: int) -> List[Tuple[int, int]]:
    n, k = shape
    return shard_bounds(n, world, multiple) if style == COLWISE else shard_bounds(k, world, _k_multiple(multiple))


def parallelize(
    model: nn.Module,
    plan: Dict[str, Any],
    tp_group: Group = None,
    *,
    multiples: Optional[Dict[str, int]] = None,
    method: str = "magnitude",
) -> nn.Module:
    """Replaces the layers that ``plan`` names (exact path, suffix or fnmatch glob → ``"colwise"``,
    ``"rowwise"``, or ``torch.distributed.tensor.parallel``'s ``ColwiseParallel()`` /
    ``RowwiseParallel()``) by their column- / row-parallel shard on this rank, in the style of
    ``parallelize_module``. A :class:`SparseLinear` is sliced; a dense ``nn.Linear`` is sliced
    and its slice pruned (``method``). ``multiples``: split granularity per path (heads for
    attention); the default, 8 for both styles, gives a column-parallel layer the same
    boundaries as the row-parallel layer its output feeds. Returns the model."""
    from .sparsify import _matches, _move_hooks, _set_module

    multiples = multiples or {}
    for name, module in list(model.named_modules()):
        pattern = _matches(name, plan) if name else None
        if pattern is None:
            continue
        style, options = _style(plan[pattern])
        multiple = multiples.get(name, K_SPLIT_MULTIPLE)
        cls = ColumnParallelSparseLinear if style == COLWISE else RowParallelSparseLinear
        if isinstance(module, SparseLinear):
            new = cls.from_sparse(module, tp_group, multiple=multiple, **options)
        elif isinstance(module, nn.Linear):
            new = cls.from_dense(module, tp_group, method=method, multiple=multiple, **options)
        else:
            raise ValueError(f"plan entry {pattern!r} names {name}, a {type(module).__name__}: expected a linear layer")
        _move_hooks(module, new)
        _set_module(model, name, new)
    return model


# ------------------------------------------------------------------------------- sparsify


def sparsify_tensor_parallel(
    model: nn.Module,
    tp_group: Group,
    *,
    include: Optional[Sequence[str]],
    exclude: Sequence[str],
    method: str,
    fuse: bool,
    progress: bool,
) -> Tuple[nn.Module, Any]:
    """``sparsify(model, tp_group=...)``: shards a Llama-style model by :func:`llama_plan`
    (each rank keeps and prunes only its slices), then sparsifies the remaining layers
    replicated, as ``sparsify`` does. A planned layer that ``include`` / ``exclude`` (or a
    skip reason) leaves dense is sharded dense, so the block stays consistent. Report rows:
    full shapes, the rank's shard in ``note``, the diff of the rank's shard."""
    from .sparsify import LayerReport, SparsifyReport, _fusion_candidates, _move_hooks, _set_module, _skip_reason, sparsify

    _, rank, world = _group(tp_group)
    plan, multiples = llama_plan(model, world)
    if not plan:
        raise ValueError(
            "sparsify(tp_group=...) found no Llama-style attention (q/k/v/o_proj) or gated MLP "
            "(gate/up/down_proj) block; shard other models with sparseflow.parallel.parallelize(model, plan, group)"
        )
    order = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    fusions, not_fused = _fusion_candidates(model) if fuse else ({}, {})
    parents = dict(model.named_modules())
    rows: Dict[str, LayerReport] = {}
    for path, style in plan.items():
        dense = model.get_submodule(path)
        row = LayerReport(path, "skipped", dense.in_features, dense.out_features, str(dense.weight.dtype).replace("torch.", ""))
        rows[path] = row
        reason = _skip_reason(path, dense, parents, include, exclude, check_finite=False)
        if reason is not None and "own forward" in reason:
            raise ValueError(f"{path}: {reason}; it cannot be sharded")
        start, stop = _bounds_for(style, (dense.out_features, dense.in_features), world, multiples[path])[rank]
        what = "out_features" if style == COLWISE else "in_features"
        row.note = f"{'column' if style == COLWISE else 'row'}-parallel: rank {rank} of {world} holds {what} [{start}, {stop})"
        sliced = dense.weight[start:stop] if style == COLWISE else dense.weight[:, start:stop]
        if reason is None and not bool(torch.isfinite(sliced).all()):
            reason = "weight contains NaN or Inf"
        activation, act_path = "none", None
        if reason is None and path in fusions:
            if style == COLWISE:
                act_path, activation = fusions[path]
            else:
                row.note += "; activation not fused: a row-parallel output needs the all-reduce first"
        elif path in not_fused:
            row.note += f"; {not_fused[path]}"
        cls = ColumnParallelSparseLinear if style == COLWISE else RowParallelSparseLinear
        new = cls.from_dense(dense, tp_group, method=method, activation=activation, sparse=reason is None, multiple=multiples[path])
        _move_hooks(dense, new)
        _set_module(model, path, new)
        del dense
        if reason is not None:
            row.reason = reason + " (sharded dense)"
            continue
        if act_path is not None:
            _set_module(model, act_path, nn.Identity())
        row.status, row.fused, row.epilogue = "sparsified", act_path, new.local.epilogue
        row.diff = dict(new.local.diff or {})
        if style == ROWWISE and new.bias is not None:
            row.note += "; bias added after the all-reduce"
    # Every other linear layer (lm_head, ...) as sparsify does it, replicated; the dense shards
    # of skipped planned layers are not touched again.
    held = tuple(f"{p}.local" for p in plan)
    _, rest = sparsify(
        model, include=include, exclude=tuple(exclude) + held, method=method, fuse=fuse, progress=progress
    )  # fmt: skip
    rows.update({r.name: r for r in rest if r.name not in held})
    return model, SparsifyReport([rows[name] for name in order if name in rows])


# -------------------------------------------------------------------------------- loading


def shard(src: Union[str, "os.PathLike[str]"], dest: Union[str, "os.PathLike[str]"], size: int, *, force: bool = False) -> Path:
    """Writes the tensor-parallel directory ``dest`` of the unsharded SparseFlow model ``src``
    (``sf.save``, ``sparseflow convert``) over ``size`` ranks: each rank's slices of the
    Llama-style layers in a file of its own and the split in ``sparseflow.json``, the rest in
    ``model.safetensors`` (docs/FORMAT.md, "Tensor-parallel model directories"; the same code
    as ``sparseflow convert --tp``). :func:`load` then opens only the rank's file. Returns
    ``dest``."""
    from . import _C

    return Path(_C.model_shard_tp(os.fspath(src), os.fspath(dest), int(size), bool(force)))


class _Checkpoint:
    """The tensors of a safetensors checkpoint (``model.safetensors`` or shards listed in
    ``model.safetensors.index.json``), memory-mapped: ``slice(name)`` reads only what is
    indexed. A SparseFlow model directory also has its manifest."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        from safetensors import safe_open

        root = Path(path)
        index = root / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        elif (root / "model.safetensors").is_file():
            files, weight_map = ["model.safetensors"], None
        else:
            raise FileNotFoundError(f"{root}: no model.safetensors or model.safetensors.index.json")
        self.handles = {f: safe_open(os.fspath(root / f), framework="pt") for f in files}
        if weight_map is None:
            weight_map = {k: files[0] for k in self.handles[files[0]].keys()}
        self.files: Dict[str, str] = weight_map
        manifest = root / "sparseflow.json"
        self.manifest: Optional[Dict[str, Any]] = None
        self.aliases: Dict[str, str] = {}
        if manifest.is_file():
            from .io import FORMAT_VERSION

            data = json.loads(manifest.read_text())
            if data.get("format") != "sparseflow" or int(str(data.get("format_version", "0")).split(".")[0]) != FORMAT_VERSION:
                raise ValueError(
                    f"{manifest}: format {data.get('format')!r} version {data.get('format_version')!r}; "
                    f"this package reads sparseflow format version {FORMAT_VERSION}"
                )
            self.manifest, self.aliases = data, dict(data.get("aliases", {}))
        self.root = root
        #: ``tensor_parallel`` of a directory written per rank (``sparseflow convert --tp N``).
        self.tp: Optional[Dict[str, Any]] = (self.manifest or {}).get("tensor_parallel")

    def rank_tensors(self, rank: int, world: int) -> Any:
        """The rank's own file of a tensor-parallel directory (memory-mapped)."""
        from safetensors import safe_open

        assert self.tp is not None
        if int(self.tp["size"]) != world:
            raise ValueError(
                f"{self.root} is tensor-parallel for {self.tp['size']} ranks, the process group has {world}: "
                f"shard the unsharded model again (sparseflow convert --tp {world})"
            )
        return safe_open(os.fspath(self.root / self.tp["files"][rank]), framework="pt")

    def __contains__(self, name: str) -> bool:
        return self.aliases.get(name, name) in self.files

    def slice(self, name: str) -> Any:
        name = self.aliases.get(name, name)
        if name not in self.files:
            raise KeyError(f"the checkpoint has no tensor {name!r}")
        return self.handles[self.files[name]].get_slice(name)

    def tensor(self, name: str) -> Tensor:
        return self.slice(name)[:]


def load(
    path: Union[str, "os.PathLike[str]"],
    model: nn.Module,
    tp_group: Group = None,
    *,
    plan: Optional[Dict[str, Any]] = None,
    multiples: Optional[Dict[str, int]] = None,
    method: str = "magnitude",
    device: Optional[Union[str, torch.device]] = None,
    dtype: Optional[torch.dtype] = None,
) -> nn.Module:
    """Loads this rank's part of a checkpoint into ``model`` (a skeleton of the architecture,
    dense ``nn.Linear`` layers, any init — build it on the meta device, e.g. accelerate's
    ``init_empty_weights()``, so no rank allocates the full model): every planned layer
    (``plan``, default :func:`llama_plan`) reads only its slices from the memory-mapped
    safetensors file(s) (``get_slice``), every other tensor is read whole (replicated).

    * A SparseFlow model directory (``sf.save``, ``sparseflow convert``): a sparse layer's
      ``values`` / ``meta`` rows or whole-group columns, its fused epilogue kept on a
      column-parallel shard and applied after the all-reduce on a row-parallel one.
    * A Hugging Face checkpoint, dense or dense-stored 2:4: the slice of ``<name>.weight``,
      pruned (``method="magnitude"``) or checked to be 2:4 (``method="already-2:4"``).

    ``device``: where the tensors go (default: the model's, or the CPU for a meta model);
    ``dtype``: convert floating tensors (default: the file's). Returns the model."""
    from .io import _remove_fused_activation
    from .sparsify import _move_hooks, _set_module

    group, rank, world = _group(tp_group)
    ckpt = _Checkpoint(path)
    rank_file = ckpt.rank_tensors(rank, world) if ckpt.tp is not None else None
    file_bounds: Dict[str, Tuple[int, int]] = {}
    if rank_file is not None:
        # Sharded on disk: the file's split is the plan, and its bounds are this rank's.
        plan = {name: COLWISE if e["split"] == "column" else ROWWISE for name, e in ckpt.tp["layers"].items()}
        file_bounds = {name: tuple(e["bounds"][rank]) for name, e in ckpt.tp["layers"].items()}  # type: ignore[misc]
    elif plan is None:
        plan, default_multiples = llama_plan(model, world)
        multiples = {**default_multiples, **(multiples or {})}
    multiples = multiples or {}
    if device is None:
        devices = [t.device for t in model.parameters() if t.device.type != "meta"]
        device = devices[0] if devices else torch.device("cpu")
    device = torch.device(device)
    from .sparsify import _matches

    layers = (ckpt.manifest or {}).get("layers", {})
    held: List[str] = []
    for name, module in list(model.named_modules()):
        pattern = _matches(name, plan) if name else None
        if pattern is None:
            continue
        style, options = _style(plan[pattern])
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{name}: a {type(module).__name__}, expected an nn.Linear to load a shard into")
        n, k = module.out_features, module.in_features
        multiple = multiples.get(name, K_SPLIT_MULTIPLE)
        start, stop = file_bounds.get(name) or _bounds_for(style, (n, k), world, multiple)[rank]
        cls = ColumnParallelSparseLinear if style == COLWISE else RowParallelSparseLinear
        bias = ckpt.slice(f"{name}.bias") if f"{name}.bias" in ckpt else None
        if name in layers:
            entry = layers[name]
            if list(entry["shape"]) != [n, k]:
                raise ValueError(f"layer {name}: the file has shape {entry['shape']}, the model [{n}, {k}]")
            activation, _ = split_epilogue(entry["epilogue"])
            local_bias = None
            if name in file_bounds:  # the rank file holds exactly this rank's slices
                values, meta = rank_file.get_tensor(f"{name}.values"), rank_file.get_tensor(f"{name}.meta")
                if style == COLWISE and f"{name}.bias" in rank_file.keys():
                    local_bias = rank_file.get_tensor(f"{name}.bias")
            elif style == COLWISE:  # safetensors slices: only these rows are read
                values, meta = shard_rows(ckpt.slice(f"{name}.values"), ckpt.slice(f"{name}.meta"), start, stop)
                local_bias = None if bias is None else bias[start:stop]
            else:
                vs, ms = ckpt.slice(f"{name}.values"), ckpt.slice(f"{name}.meta")
                values, meta = shard_columns(vs, ms, start, stop, k)
            values = values.to(dtype) if dtype is not None else values
            local = _local_sparse(values, meta, _cast(local_bias, dtype), device, activation if style == COLWISE else "none")
            local.method, local.diff = entry.get("method", "magnitude"), dict(entry.get("diff") or {})
            if style == COLWISE:
                new: _ParallelLinear = cls(local, k, n, start, stop, group, **options)
            else:
                full_bias = None if bias is None else _cast(bias[:], dtype).to(device)
                new = cls(local, k, n, start, stop, group, bias=full_bias, activation=activation, **options)
            if entry.get("fused_activation"):
                _remove_fused_activation(model, name, entry["fused_activation"], activation)
        else:
            weight = _CastSlice(ckpt.slice(f"{name}.weight"), dtype)
            sparse = ckpt.manifest is None  # a layer a SparseFlow model keeps dense stays dense
            new = cls.from_dense(
                weight, group, bias=None if bias is None else _CastSlice(bias, dtype), method=method,
                sparse=sparse, multiple=multiple, device=device, **options,
            )  # fmt: skip
        _move_hooks(module, new)
        _set_module(model, name, new)
        held.append(name)
    # Sparse layers outside the plan (a sparsified lm_head, ...): whole, replicated.
    for name, entry in layers.items():
        if name in held:
            continue
        current = model.get_submodule(name)
        if not isinstance(current, nn.Linear):
            raise ValueError(f"layer {name}: expected nn.Linear in the model, found {type(current).__name__}")
        activation, has_bias = split_epilogue(entry["epilogue"])
        values = _cast(ckpt.tensor(f"{name}.values"), dtype)
        bias = _cast(ckpt.tensor(f"{name}.bias"), dtype) if has_bias else None
        sparse = _local_sparse(values, ckpt.tensor(f"{name}.meta"), bias, device, activation)
        sparse.method, sparse.diff = entry.get("method", "magnitude"), dict(entry.get("diff") or {})
        sparse.fused_activation = entry.get("fused_activation")
        _move_hooks(current, sparse)
        _set_module(model, name, sparse)
        if sparse.fused_activation:
            _remove_fused_activation(model, name, sparse.fused_activation, activation)
        held.append(name)
    # Everything else, whole: read only the names the model still has.
    wanted = {key for key in model.state_dict() if not any(key.startswith(h + ".") for h in held)}
    state = {key: _cast(ckpt.tensor(key), dtype).to(device) for key in wanted if key in ckpt}
    missing = sorted(wanted - set(state))
    model.load_state_dict(state, strict=False, assign=True)
    if missing and hasattr(model, "tie_weights"):
        model.tie_weights()  # e.g. lm_head tied to the embedding, not stored
    loaded = {t.data_ptr() for t in state.values()}
    after = model.state_dict()
    untied = [key for key in missing if after[key].device.type == "meta" or after[key].data_ptr() not in loaded]
    if untied:
        raise ValueError(
            f"{path}: no tensor for {', '.join(untied[:5])}{' ...' if len(untied) > 5 else ''} "
            "(neither in the checkpoint nor tied to a loaded tensor)"
        )
    # Buffers the checkpoint does not hold (rotary frequencies) follow the weights to `device`.
    for module in model.modules():
        if isinstance(module, SparseLinear):
            continue  # built on `device`; its kernel handle is bound to these very tensors
        for key, buf in module._buffers.items():
            if buf is not None and buf.device.type != "meta" and buf.device != device:
                module._buffers[key] = buf.to(device)
    still_meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.device.type == "meta"]
    if still_meta:
        raise ValueError(
            f"{path}: no data for {', '.join(still_meta[:5])}{' ...' if len(still_meta) > 5 else ''} "
            "(not in the checkpoint; a non-persistent buffer must be built on a real device: "
            "accelerate's init_empty_weights() keeps buffers off the meta device)"
        )
    return model


def _cast(t: Optional[Tensor], dtype: Optional[torch.dtype]) -> Optional[Tensor]:
    return t if t is None or dtype is None or not t.is_floating_point() else t.to(dtype)


class _CastSlice:
    """A safetensors slice whose reads are converted to ``dtype`` (the shape of ``get_shape``)."""

    def __init__(self, source: Any, dtype: Optional[torch.dtype]) -> None:
        self.source, self.dtype = source, dtype

    def get_shape(self) -> List[int]:
        return list(self.source.get_shape())

    def __getitem__(self, index: Any) -> Tensor:
        return _cast(self.source[index], self.dtype)
