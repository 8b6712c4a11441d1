"""Before deployment: at which batch sizes and prompt lengths a sparsified model's 2:4 linears
will be faster or slower than dense (issue 29, point 5).

``SparsifyReport.outlook()`` (and the last lines of ``str(report)``) answer it from measured
per-layer times the package ships (``_outlook_table.py``, generated from docs/bench by
``scripts/outlook_table.py``: SparseFlow's and the best dense path's median per layer shape and
token count M, on one GPU). For each point — a decode step of B sequences is M = B tokens, a
prefill of B prompts of P tokens is M = B·P — the figure is Σ dense time / Σ SparseFlow time over
the sparsified layers whose shape was measured, times interpolated between measured M (linear in
log M, log time). Linears only: attention, norms, the layers left dense and launch overheads are
not in it, so a whole model gains less than this where they weigh (python/benchmarks/e2e.py
measures that). A point beyond the measured M is only estimated from compute-bound runs
(M ≥ 4096), where the ratio no longer moves; otherwise the layer counts as not measured there.
Other GPUs differ: ``sparseflow audit --bench`` measures yours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ._outlook_table import GPU, ROWS

#: Above this ratio a point is "faster", below its inverse "slower" (run-to-run noise is ~2-3%).
MARGIN = 1.05
#: Beyond the largest measured M, a layer's ratio is carried on only from a run at least this large.
COMPUTE_BOUND_M = 4096

def _runs(dtype: str, n: int, k: int) -> List[Tuple[int, float, float]]:
    """The measured ``(M, sparse_us, dense_us)`` of a shape, sorted by M: the dtype's own rows,
    and the other half-precision dtype's at the token counts it lacks (fp16 and bf16 run at the
    same tensor-core rate and move the same bytes)."""
    other = {"float16": "bfloat16", "bfloat16": "float16"}.get(dtype)
    runs: Dict[int, Tuple[float, float]] = {}
    for d in (other, dtype):  # own rows last: they win
        for (rd, rn, rk, m), (s, t, _) in ROWS.items():
            if (rd, rn, rk) == (d, n, k):
                runs[m] = (s, t)
    return [(m, s, t) for m, (s, t) in sorted(runs.items())]


def layer_times(dtype: str, n: int, k: int, m: int) -> Optional[Tuple[float, float, bool]]:
    """``(sparse_us, dense_us, estimated)`` of one ``[n, k]`` layer at ``m`` tokens, or None when
    that shape was not measured near ``m``. ``estimated``: ``m`` is beyond the measured token
    counts."""
    runs = _runs(dtype, n, k)
    if not runs or m < runs[0][0]:
        return None
    if m >= runs[-1][0]:
        top, s, d = runs[-1]
        if m > top and top < COMPUTE_BOUND_M:
            return None
        return s * m / top, d * m / top, m > top
    for m0, s0, d0 in runs:
        if m0 == m:
            return s0, d0, False
    for (m0, s0, d0), (m1, s1, d1) in zip(runs, runs[1:]):
        if m0 < m < m1:
            w = (math.log(m) - math.log(m0)) / (math.log(m1) - math.log(m0))
            lerp = lambda a, b: math.exp((1 - w) * math.log(a) + w * math.log(b))  # noqa: E731
            return lerp(s0, s1), lerp(d0, d1), False
    return None  # unreachable: the runs are sorted and cover m


@dataclass
class Point:
    """One deployment point: ``kind`` "decode" (``batch`` sequences, one token each) or
    "prefill" (``batch`` prompts of ``prompt`` tokens)."""

    kind: str
    batch: int
    prompt: int
    tokens: int
    speedup: Optional[float]  # Σ dense / Σ sparse over the measured layers; None: none measured
    layers: int  # sparsified layers measured at this point
    estimated: bool  # some layer's M is beyond its measured token counts

    @property
    def verdict(self) -> str:
        if self.speedup is None:
            return "not measured"
        return "faster" if self.speedup >= MARGIN else "slower" if self.speedup <= 1 / MARGIN else "about the same"

    @property
    def label(self) -> str:
        return f"batch {self.batch}" if self.kind == "decode" else f"{self.batch}x{self.prompt}"


@dataclass
class Outlook:
    gpu: str
    sparsified: int
    points: List[Point] = field(default_factory=list)

    def to_list(self) -> List[Dict[str, object]]:
        return [{**p.__dict__, "verdict": p.verdict} for p in self.points]

    def lines(self) -> List[str]:
        if not self.sparsified:
            return []
        if not any(p.layers for p in self.points):
            return [
                f"speed outlook: none of the sparsified layer shapes was measured in the table shipped with "
                f"sparseflow ({GPU}, Llama-3-8B and Llama-3-70B tp8 shapes); measure yours: sparseflow audit --bench"
            ]
        out = [f"speed outlook, 2:4 linears vs the best dense path (measured on an {GPU}; linears only — "
               "attention, norms and dense layers not included; other GPUs: sparseflow audit --bench):"]  # fmt: skip
        for kind in ("decode", "prefill"):
            cells = []
            for p in (p for p in self.points if p.kind == kind):
                cell = f"{p.label}: {p.verdict}" if p.speedup is None else f"{p.label}: {p.speedup:.2f}x {p.verdict}"
                if p.speedup is not None and p.layers < self.sparsified:
                    cell += f" ({p.layers} of {self.sparsified} layers)"
                cells.append(cell + ("*" if p.estimated else ""))
            if cells:
                out.append(f"  {kind:<7} " + ", ".join(cells))
        if any(p.estimated for p in self.points):
            out.append(f"  * beyond the measured token counts: carried on from M >= {COMPUTE_BOUND_M}")
        return out


def outlook(
    layers: Sequence[Tuple[str, int, int]],
    decode_batches: Sequence[int] = (1, 16, 64),
    prefill: Sequence[Tuple[int, int]] = ((1, 512), (1, 2048), (8, 2048)),
) -> Outlook:
    """The outlook of sparsified layers given as ``(dtype, out_features, in_features)``; see the
    module docstring. ``prefill``: ``(batch, prompt tokens)`` pairs."""
    result = Outlook(GPU, len(layers))
    points = [("decode", b, 1) for b in decode_batches] + [("prefill", b, p) for b, p in prefill]
    memo: Dict[Tuple[str, int, int, int], Optional[Tuple[float, float, bool]]] = {}  # 224 layers, 7 shapes
    for kind, batch, prompt in points:
        m = batch * prompt
        sparse = dense = 0.0
        count, estimated = 0, False
        for dtype, n, k in layers:
            if (dtype, n, k, m) not in memo:
                memo[(dtype, n, k, m)] = layer_times(dtype, n, k, m)
            t = memo[(dtype, n, k, m)]
            if t is not None:
                sparse, dense, count, estimated = sparse + t[0], dense + t[1], count + 1, estimated or t[2]
        speedup = dense / sparse if count else None
        result.points.append(Point(kind, batch, prompt, m, speedup, count, estimated))
    return result
