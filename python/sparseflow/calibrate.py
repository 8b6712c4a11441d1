"""Layer-by-layer calibrated pruning for ``sf.sparsify(model, method=..., calibration=batches)``.

The model runs on the calibration batches once per *input group* (layers that read the very
same input tensor: ``q/k/v_proj``, ``gate/up_proj``), in execution order, stopping as soon as
the group's inputs are captured. Each group is pruned from the inputs the model produces with
every earlier layer already pruned (the pruned weight is written into the ``nn.Linear`` right
away), so errors do not silently compound. A fraction of the batches is held out: the layer's
relative output error ``‖X_h(W − Ŵ)ᵀ‖ / ‖X_h Wᵀ‖`` on them goes into the report, and with
``max_rel_error`` a layer above it stays dense.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

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


def _call(model: nn.Module, batch: Any) -> None:
    if isinstance(batch, dict):
        model(**batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    else:
        model(batch)


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


def _split(xs: List[Tensor], heldout: float) -> Tuple[List[Tensor], List[Tensor]]:
    """Calibration and held-out inputs: whole batches when there are several, else the last
    ``heldout`` fraction of the single batch's tokens."""
    if len(xs) >= 2:
        n_held = min(len(xs) - 1, max(1, round(heldout * len(xs))))
        return xs[: len(xs) - n_held], xs[len(xs) - n_held :]
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
) -> Dict[str, Outcome]:
    """Prunes ``jobs`` (``(path, linear, fused activation)``) group by group; see the module
    docstring. Returns one :class:`Outcome` per path."""
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
    try:
        while pending:
            group, xs = _capture(model, pending, batches)
            if not group:
                for name in pending:
                    outcomes[name] = Outcome(None, reason="not reached by the calibration inputs")
                    bar.update(name, "not reached")
                break
            cal_x, held_x = _split(xs, heldout)
            cal = Calibration(int(cal_x[0].shape[-1]))
            for x in cal_x:
                cal.add(x)
            for name in group:
                linear = pending.pop(name)
                outcomes[name] = _prune_one(linear, method, cal, held_x, activation[name], max_rel_error, prune_options)
                o = outcomes[name]
                note = f"held-out err {o.diff['heldout_rel_error']:.4f}" + (" (kept dense)" if o.sparse is None else "")
                bar.update(name, note)
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
