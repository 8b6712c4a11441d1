"""Layer-by-layer calibrated pruning for ``sf.sparsify(model, method=..., calibration=batches)``.

Each *input group* (layers that read the very same input tensor: ``q/k/v_proj``,
``gate/up_proj``) is pruned, in execution order, from the inputs the model produces with every
earlier layer already pruned (the pruned weight is written into the ``nn.Linear`` right away),
so errors do not silently compound. A fraction of the batches is held out: the layer's
relative output error ``‖X_h(W − Ŵ)ᵀ‖ / ‖X_h Wᵀ‖`` on them goes into the report, and with
``max_rel_error`` a layer above it stays dense.

Fast path (transformer stacks): when the pending layers sit in the blocks of an
``nn.ModuleList`` (``model.layers``, ``encoder.layer``, ``transformer.h``), the model runs once
up to the first block and the block inputs (positional and keyword arguments, KV caches
dropped) are cached; every group is then captured by running only its own block on the
cached inputs, and the finished block's outputs become the next block's inputs. The chain is
checked once against a full dense forward of the first batch (every block's captured input
must equal the previous block's output); when it is not (a model that does something between
blocks), every group is captured by running the whole model up to it instead.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .linear import SparseLinear
from .prune import Calibration


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the group's inputs are captured."""


@dataclass
class Outcome:
    """What happened to one layer: ``sparse`` is ``None`` when it stays dense (``reason``)."""

    sparse: Optional[SparseLinear]
    diff: Dict[str, float] = field(default_factory=dict)
    reason: str = ""


@dataclass
class _Inputs:
    """The positional and keyword arguments of one call of a block."""

    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]


def _call(model: nn.Module, batch: Any) -> Any:
    if isinstance(batch, _Inputs):
        return model(*batch.args, **batch.kwargs)
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


#: Keyword arguments of a block that carry state across calls (KV caches): dropped when a
#: block is re-run on cached inputs.
_CACHE_KWARGS = ("past_key_value", "past_key_values", "layer_past", "cache")


def _find_blocks(model: nn.Module, pending: Dict[str, nn.Linear]) -> List[Tuple[str, nn.Module]]:
    """The blocks of the ``nn.ModuleList`` holding most of the pending layers (``[]``: none)."""
    best: List[Tuple[str, nn.Module]] = []
    best_count = 0
    for path, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 2:
            continue
        blocks = [(f"{path}.{i}" if path else str(i), block) for i, block in enumerate(module)]
        count = sum(1 for name in pending if any(name.startswith(bp + ".") for bp, _ in blocks))
        if count > best_count:
            best, best_count = blocks, count
    return best


def _block_inputs(model: nn.Module, blocks: Sequence[nn.Module], batches: Sequence[Any]) -> List[List[_Inputs]]:
    """Runs the model on ``batches``; per block, per batch, the block's call arguments. Only the
    first batch runs through every block (to check the chain); the others stop at block 0."""
    seen: List[List[_Inputs]] = [[] for _ in blocks]
    state = {"full": True}

    def hook(i: int):
        def pre(_module: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
            kw = dict(kwargs)
            for key in _CACHE_KWARGS:
                if kw.get(key) is not None:
                    kw[key] = None
            if "use_cache" in kw:
                kw["use_cache"] = False
            seen[i].append(_Inputs(tuple(args), kw))
            if not state["full"]:
                raise _Stop

        return pre

    handles = [b.register_forward_pre_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        for j, batch in enumerate(batches):
            state["full"] = j == 0
            try:
                _call(model, batch)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return seen


def _advance(block: nn.Module, inputs: _Inputs) -> Optional[_Inputs]:
    """The next block's inputs: this block's output (its first element) as hidden states."""
    out = _call(block, inputs)
    h = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(h, Tensor):
        return None
    if inputs.args and isinstance(inputs.args[0], Tensor):
        return _Inputs((h,) + tuple(inputs.args[1:]), inputs.kwargs)
    if isinstance(inputs.kwargs.get("hidden_states"), Tensor):
        return _Inputs(inputs.args, {**inputs.kwargs, "hidden_states": h})
    return None


def _chain_holds(blocks: Sequence[nn.Module], seen: List[List[_Inputs]]) -> bool:
    """Whether block ``i + 1`` of the first batch was called with block ``i``'s output."""
    if any(not s for s in seen):
        return False
    for i in range(len(blocks) - 1):
        nxt = _advance(blocks[i], seen[i][0])
        ref = seen[i + 1][0]
        if nxt is None or len(nxt.args) != len(ref.args):
            return False
        a = nxt.args[0] if nxt.args else nxt.kwargs["hidden_states"]
        b = ref.args[0] if ref.args else ref.kwargs.get("hidden_states")
        if not isinstance(b, Tensor) or a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            return False
    return True


class _Bar:
    """tqdm when installed, else one line per layer on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled, self.tqdm = total, 0, enabled, None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.tqdm = tqdm(total=total, desc="sparsify", unit="layer")
            except ImportError:
                pass

    def update(self, name: str, note: str) -> None:
        self.done += 1
        if self.tqdm is not None:
            self.tqdm.set_postfix_str(f"{name} {note}", refresh=False)
            self.tqdm.update(1)
        elif self.enabled:
            print(f"sparsify [{self.done}/{self.total}] {name}: {note}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def _capture(
    model: nn.Module, pending: Dict[str, nn.Linear], batches: Sequence[Any]
) -> Tuple[List[str], List[List[Tensor]]]:
    """Runs the batches until the first pending layer (and the pending layers fed the very same
    input tensor) have seen their input; returns the group and, per batch, that input
    (``[tokens, in_features]``, float32, CPU)."""
    group: List[str] = []
    inputs: List[List[Tensor]] = []
    state: Dict[str, Any] = {}

    def hook(name: str):
        def pre(_module: nn.Module, args: Tuple[Any, ...]) -> None:
            x = args[0] if args else None
            if state.get("done") or not isinstance(x, Tensor):
                return
            if "x" not in state:
                state["x"] = x
                if first_batch:
                    group.append(name)
                state["batch"].append(x.detach().reshape(-1, x.shape[-1]).to("cpu", torch.float32))
            elif x is state["x"] and (name in group or first_batch):
                if first_batch and name not in group:
                    group.append(name)
            elif name not in group:
                state["done"] = True
                raise _Stop

        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in pending.items()]
    try:
        for i, batch in enumerate(batches):
            first_batch = i == 0
            state.clear()
            state["batch"] = []
            try:
                _call(model, batch)
            except _Stop:
                pass
            inputs.append(state["batch"])
            if first_batch and not group:
                break
    finally:
        for h in handles:
            h.remove()
    return group, [b[0] for b in inputs if b] if group else []


def _calibration_batches(count: int, heldout: float) -> int:
    """How many of ``count`` batches calibrate (the rest are held out; all of a single one)."""
    return count - min(count - 1, max(1, round(heldout * count))) if count >= 2 else 1


def _split(xs: List[Tensor], heldout: float) -> Tuple[List[Tensor], List[Tensor]]:
    """Calibration and held-out inputs: whole batches when there are several, else the last
    ``heldout`` fraction of the single batch's tokens."""
    if len(xs) >= 2:
        n_cal = _calibration_batches(len(xs), heldout)
        return xs[:n_cal], xs[n_cal:]
    x = xs[0]
    cut = max(1, min(x.shape[0] - 1, round(x.shape[0] * (1 - heldout))))
    return [x[:cut]], [x[cut:]]


def heldout_error(w: Tensor, wp: Tensor, xs: Iterable[Tensor]) -> float:
    """``‖X(W − Wp)ᵀ‖_F / ‖XWᵀ‖_F`` over the batches ``xs`` (float64 sums)."""
    w32, d32 = w.detach().to("cpu", torch.float32), (w.detach().to("cpu", torch.float32) - wp.to("cpu", torch.float32))
    num = den = 0.0
    for x in xs:
        num += float((x @ d32.T).double().pow(2).sum())
        den += float((x @ w32.T).double().pow(2).sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


@torch.no_grad()
def run_sequential(
    model: nn.Module,
    jobs: Sequence[Tuple[str, nn.Linear, str]],
    method: str,
    calibration: Iterable[Any],
    *,
    max_rel_error: Optional[float] = None,
    heldout: float = 0.25,
    prune_options: Optional[Dict[str, Any]] = None,
    progress: bool = True,
    before_block: Optional[Callable[[str, nn.Module, Callable[[], None]], None]] = None,
) -> Dict[str, Outcome]:
    """Prunes ``jobs`` (``(path, linear, fused activation)``) group by group; see the module
    docstring. ``before_block(path, block, run)`` is called before a block's layers are pruned
    (``run()`` runs the block on the calibration batches, not the held-out ones; path ``""``
    and the whole model without the block fast path): the channel permutations hook in here.
    Returns one :class:`Outcome` per path."""
    batches = list(calibration) if not isinstance(calibration, (Tensor, dict)) else [calibration]
    if not batches:
        raise ValueError("calibration is empty: pass a non-empty list of model inputs (tensors, tuples or dicts)")
    if not 0.0 < heldout < 1.0:
        raise ValueError(f"heldout must be a fraction in (0, 1), got {heldout}")
    if max_rel_error is not None and not max_rel_error > 0:
        raise ValueError(f"max_rel_error must be positive, got {max_rel_error}")
    pending = {name: linear for name, linear, _ in jobs}
    activation = {name: act for name, _, act in jobs}
    outcomes: Dict[str, Outcome] = {}
    bar = _Bar(len(jobs), progress)
    n_cal = _calibration_batches(len(batches), heldout)

    def prune_groups(scope: nn.Module, scope_pending: Dict[str, nn.Linear], scope_batches: Sequence[Any]) -> None:
        """Captures and prunes the groups of ``scope_pending`` by running ``scope``."""
        while scope_pending:
            group, xs = _capture(scope, scope_pending, scope_batches)
            if not group:
                return
            cal_x, held_x = _split(xs, heldout)
            cal = Calibration(int(cal_x[0].shape[-1]))
            for x in cal_x:
                cal.add(x)
            for name in group:
                linear = scope_pending.pop(name)
                pending.pop(name, None)
                outcomes[name] = _prune_one(linear, method, cal, held_x, activation[name], max_rel_error, prune_options)
                o = outcomes[name]
                note = f"held-out err {o.diff['heldout_rel_error']:.4f}" + (" (kept dense)" if o.sparse is None else "")
                bar.update(name, note)

    def run_on(scope: nn.Module, scope_batches: Sequence[Any]) -> Callable[[], None]:
        def run() -> None:
            for batch in scope_batches[:n_cal]:
                _call(scope, batch)

        return run

    try:
        blocks = _find_blocks(model, pending)
        seen = _block_inputs(model, [b for _, b in blocks], batches) if blocks else []
        if blocks and _chain_holds([b for _, b in blocks], seen) and len(seen[0]) == len(batches):
            inputs: List[_Inputs] = seen[0]
            for path, block in blocks:
                local = {n: lin for n, lin in pending.items() if n.startswith(path + ".")}
                if before_block is not None:
                    before_block(path, block, run_on(block, inputs))
                # Hook names are the model's paths; _capture only uses them as labels.
                prune_groups(block, local, inputs)
                if path != blocks[-1][0]:
                    advanced = [_advance(block, x) for x in inputs]
                    inputs = [x for x in advanced if x is not None]
        elif before_block is not None:
            before_block("", model, run_on(model, batches))
        # Layers outside the blocks (or every layer, when the chain does not hold).
        prune_groups(model, dict(pending), batches)
        for name in list(pending):
            outcomes[name] = Outcome(None, reason="not reached by the calibration inputs")
            bar.update(name, "not reached")
    finally:
        bar.close()
    return outcomes


def _prune_one(
    linear: nn.Linear,
    method: str,
    cal: Calibration,
    held_x: List[Tensor],
    activation: str,
    max_rel_error: Optional[float],
    prune_options: Optional[Dict[str, Any]],
) -> Outcome:
    sparse = SparseLinear.from_dense(
        linear, method=method, calibration=cal, activation=activation, prune_options=prune_options
    )
    pruned = sparse.to_dense()
    diff = dict(sparse.diff or {})
    diff["heldout_rel_error"] = heldout_error(linear.weight, pruned, held_x)
    diff["heldout_tokens"] = sum(int(x.shape[0]) for x in held_x)
    sparse.diff = diff
    if max_rel_error is not None and diff["heldout_rel_error"] > max_rel_error:
        saved = int(diff.get("bytes_dense", 0)) - int(diff.get("bytes_sparse", 0))
        reason = (
            f"max_rel_error: held-out output error {diff['heldout_rel_error']:.4f} > {max_rel_error}; "
            f"left dense (keeps {saved} more weight bytes and runs the dense GEMM, no 2:4 speed-up)"
        )
        return Outcome(None, diff, reason)
    # Later layers must see this layer's pruned output.
    linear.weight.copy_(pruned.to(linear.weight.dtype))
    return Outcome(sparse, diff)
