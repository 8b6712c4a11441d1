"""One linear layer through the public Python API: ``F.linear`` vs ``SparseLinear`` vs the raw kernel.

For each layer shape ``N×K`` and token count ``M`` it times, on the same 2:4-pruned weight:

* ``F.linear``  — ``torch.nn.functional.linear(x, W)`` on the pruned dense weight: what a user
  compares with (PyTorch picks cuBLAS/cuBLASLt itself);
* ``op``        — ``SparseLinear(x)``: the module's forward through the
  ``sparseflow::sparse_linear`` custom op (operand checks, handle cache, output allocation);
* ``handle``    — the op's cached kernel handle called directly (``handle.forward(x, y, m,
  stream)``): the same launch without the torch op around it;

each **under CUDA graphs** (enough calls for ``--sample-ms`` of GPU time, at most 2000, captured
once into a ``torch.cuda.CUDAGraph`` and replayed; the per-call time is replay time over the
calls) and **eagerly** (calls back to back between CUDA events). Weights are rotated: every contender cycles through copies
of its weight that together span at least 2× the L2 cache, so no call finds its weight in L2,
the rule of ``sparseflow benchmark``. Each contender's output is checked against a float64
reference before it is timed.

With ``--bench-json FILE`` (a ``sparseflow benchmark`` JSON of the same run) the shapes, token
counts and dtype come from that file, and the table adds its raw-kernel time (``kernel``: the
Rust benchmark's SparseFlow median) and best dense path, so the overhead of each Python layer
shows up as ``op / kernel``.

    python3 python/benchmarks/linear.py --bench-json bench.json --out linear.json
    python3 python/benchmarks/linear.py --shape 4096,4096 --m 1,16,256 --dtype bf16
    python3 python/benchmarks/linear.py --smoke          # CPU, tiny: checks the script only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import math
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

import sparseflow as sf
from sparseflow import ops

DTYPES = {"fp16": torch.float16, "f16": torch.float16, "bf16": torch.bfloat16}
MODES = ("graph", "eager")


def pruned_weight(n: int, k: int, dtype: torch.dtype, device: str, seed: int) -> torch.Tensor:
    """A random ``[n, k]`` weight pruned to 2:4 (the weight every contender computes with)."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(n, k, generator=g) * 0.02).to(dtype)
    values, meta = ops.compress(w)
    return ops.decompress(values, meta).to(device)


def copies_for(bytes_: int, rotation_bytes: int) -> int:
    """Weight copies so that cycling through them spans ``rotation_bytes`` (at least 2)."""
    return max(2, min(512, math.ceil(rotation_bytes / max(1, bytes_))))


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out, ref = out.double(), ref.double()
    return float((out - ref).norm() / ref.norm().clamp_min(1e-30))


class Timer:
    """Per-call times of a list of calls (one per weight copy), graph-replayed or eager."""

    def __init__(self, samples: int, sample_ms: float, device: str) -> None:
        self.samples, self.sample_ms, self.device = samples, sample_ms, device

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _elapsed_ms(self, run: Callable[[], None]) -> float:
        if self.device != "cuda":
            t0 = time.perf_counter()
            run()
            return 1e3 * (time.perf_counter() - t0)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def launches(self, calls: Sequence[Callable[[], Any]]) -> int:
        """Eager calls per sample: enough for ``sample_ms``, at least one pass over the copies."""
        for c in calls:  # warm-up: first-use work (plans, kernels, workspaces) happens here
            c()
        self._sync()
        n = 8 * len(calls)
        ms = self._elapsed_ms(lambda: [calls[i % len(calls)]() for i in range(n)])
        per = max(ms / n, 1e-4)
        return int(min(2000, max(len(calls), math.ceil(self.sample_ms / per))))

    def eager(self, calls: Sequence[Callable[[], Any]], launches: int) -> List[float]:
        def run() -> None:
            for i in range(launches):
                calls[i % len(calls)]()

        return [1e3 * self._elapsed_ms(run) / launches for _ in range(self.samples)]

    def _capture(self, calls: Sequence[Callable[[], Any]], launches: int) -> Tuple["torch.cuda.CUDAGraph", Any]:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for i in range(launches):
                last = calls[i % len(calls)]()
        graph.replay()  # the first replay uploads the graph
        self._sync()
        return graph, last

    def graph(self, calls: Sequence[Callable[[], Any]]) -> Tuple[List[float], Any, int]:
        """Per-call times of graph replays, the last call's output as the replays left it, and
        the calls per graph. The count comes from the GPU time of a probe graph, not from eager
        timing: eager calls are host-bound (tens of µs of Python), and a graph of too few calls
        would charge its fixed replay cost to each of them."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up on a side stream (PyTorch's own advice)
            for c in calls:
                c()
        torch.cuda.current_stream().wait_stream(side)
        probe_n = max(len(calls), 64)
        probe, _ = self._capture(calls, probe_n)
        per = max(min(self._elapsed_ms(probe.replay) for _ in range(3)) / probe_n, 1e-5)
        del probe
        launches = int(min(2000, max(len(calls), math.ceil(self.sample_ms / per))))
        graph, last = self._capture(calls, launches)
        times = [1e3 * self._elapsed_ms(graph.replay) / launches for _ in range(self.samples)]
        return times, last, launches


def summary(times: List[float]) -> Dict[str, float]:
    q = sorted(times)
    return {
        "median_us": statistics.median(q),
        "p10_us": q[int(0.1 * (len(q) - 1))],
        "p90_us": q[int(0.9 * (len(q) - 1))],
    }


def kernel_handle(layer: "sf.SparseLinear") -> Any:
    """The kernel handle a layer's forward launches: on CUDA the layer's own (it reads the
    layer's tensors in place); on the CPU, which runs the reference without a handle, a host
    handle built from the layer's weight."""
    if layer.values.is_cuda:
        return ops.device_handle(layer.values, layer.meta, layer.bias, layer.epilogue, layer.out_features, layer.in_features)
    values, meta = layer.canonical()
    return sf._C.SparseGemmHandle(
        values.data_ptr(), meta.data_ptr(), None if layer.bias is None else layer.bias.data_ptr(),
        layer.out_features, layer.in_features, ops.dtype_name(values.dtype), layer.epilogue, None,
    )  # fmt: skip


class Layer:
    """One shape's contenders: rotated dense copies, ``SparseLinear`` copies and their handles."""

    def __init__(self, n: int, k: int, dtype: torch.dtype, device: str, rotation_bytes: int, seed: int) -> None:
        self.n, self.k, self.dtype, self.device, self.seed = n, k, dtype, device, seed
        self.w = pruned_weight(n, k, dtype, device, seed)
        self.dense = [self.w.clone() for _ in range(copies_for(self.w.numel() * self.w.element_size(), rotation_bytes))]
        linear = torch.nn.Linear(k, n, bias=False, dtype=dtype, device=device)
        with torch.no_grad():
            linear.weight.copy_(self.w)
        layer = sf.SparseLinear.from_dense(linear)  # already 2:4: pruning keeps every weight
        sparse_bytes = layer.values.numel() * layer.values.element_size() + layer.meta.numel()
        # Copies with their own storage, so each has its own kernel handle and device weight.
        self.layers = [layer] + [copy.deepcopy(layer) for _ in range(copies_for(sparse_bytes, rotation_bytes) - 1)]
        self.handles = [kernel_handle(l) for l in self.layers]

    def calls(self, m: int) -> Tuple[Dict[str, List[Callable[[], torch.Tensor]]], torch.Tensor]:
        """The contenders' calls at ``m`` tokens (one per weight copy) and the float64 reference."""
        g = torch.Generator().manual_seed(self.seed * 7919 + m)
        x = torch.randn(m, self.k, generator=g).to(self.dtype).to(self.device)
        ref = x.double() @ self.w.double().T
        y = torch.empty(m, self.n, dtype=self.dtype, device=self.device)
        cuda = self.device == "cuda"

        def raw(h: Any) -> Callable[[], torch.Tensor]:
            def call() -> torch.Tensor:
                h.forward(x.data_ptr(), y.data_ptr(), m, torch.cuda.current_stream().cuda_stream if cuda else 0)
                return y

            return call

        calls = {
            "F.linear": [lambda d=d: F.linear(x, d) for d in self.dense],
            "op": [lambda l=l: l(x) for l in self.layers],
            "handle": [raw(h) for h in self.handles],
        }
        return calls, ref


def bench_rows(path: str) -> Tuple[List[Tuple[str, int, int]], List[int], str, Dict[Tuple[int, int, int], Dict[str, Any]]]:
    """Shapes, token counts, dtype and per-case figures of a ``sparseflow benchmark`` JSON."""
    with open(path) as f:
        rep = json.load(f)
    shapes: List[Tuple[str, int, int]] = []
    ms: List[int] = []
    cases: Dict[Tuple[int, int, int], Dict[str, Any]] = {}
    for r in rep["rows"]:
        if not any(s[1:] == (r["n"], r["k"]) for s in shapes):
            shapes.append((r["layer"], r["n"], r["k"]))
        if r["m"] not in ms:
            ms.append(r["m"])
        med = {x["contender"]: (x["time"] or {}).get("median_us") for x in r["measurements"]}
        cases[(r["n"], r["k"], r["m"])] = {
            "kernel_us": med.get("sparseflow"),
            "best_dense_us": med.get(r.get("dense_best")) if r.get("dense_best") else None,
            "dense_best": r.get("dense_best"),
        }
    return shapes, ms, rep["config"]["dtype"], cases


def run(args: argparse.Namespace) -> Dict[str, Any]:
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available: this benchmark times GPU kernels (use --smoke to check the script)")
    cases: Dict[Tuple[int, int, int], Dict[str, Any]] = {}
    if args.bench_json:
        shapes, ms, dtype_name, cases = bench_rows(args.bench_json)
    else:
        shapes = [("custom", *map(int, s.split(","))) for s in args.shape] or [("custom", 256, 512)]
        ms = [int(v) for v in args.m.split(",")]
        dtype_name = args.dtype
    dtype = DTYPES[dtype_name]
    modes = ["eager"] if device == "cpu" else args.modes
    l2 = torch.cuda.get_device_properties(0).L2_cache_size if device == "cuda" else 1 << 20
    rotation = 0 if args.smoke else 2 * l2
    timer = Timer(args.samples, args.sample_ms, device)
    out: Dict[str, Any] = {
        "schema": "sparseflow-linear-bench/1",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu (smoke test)",
        "torch": torch.__version__,
        "sparseflow": sf.__version__,
        "dtype": dtype_name,
        "rotation_bytes": rotation,
        "bench_json": args.bench_json,
        "rows": [],
    }
    for si, (name, n, k) in enumerate(shapes):
        layer = Layer(n, k, dtype, device, rotation, args.seed + si)
        for m in ms:
            calls, ref = layer.calls(m)
            row: Dict[str, Any] = {"layer": name, "n": n, "k": k, "m": m, "copies": len(calls["op"])}
            row.update(cases.get((n, k, m), {}))
            for who, fns in calls.items():
                err = rel_err(fns[0](), ref)
                row[f"{who}_rel_err"] = err
                if not err <= 1e-2:
                    row[f"{who}_error"] = f"wrong result: rel err {err:.2e}; not timed"
                    continue
                launches = timer.launches(fns)
                row[f"{who}_eager_launches"] = launches
                for mode in modes:
                    if mode == "graph":
                        times, last, row[f"{who}_graph_launches"] = timer.graph(fns)
                        # What the replays computed, not only the eager check above.
                        row[f"{who}_graph_rel_err"] = rel_err(last, ref)
                        if not row[f"{who}_graph_rel_err"] <= 1e-2:
                            row[f"{who}_error"] = f"wrong result under graph replay: rel err {row[f'{who}_graph_rel_err']:.2e}"
                            continue
                    else:
                        times = timer.eager(fns, launches)
                    row[f"{who}_{mode}"] = summary(times)
            for mode in modes:
                t = {who: row.get(f"{who}_{mode}", {}).get("median_us") for who in calls}
                if t["op"] and t["handle"]:
                    row[f"op_over_handle_{mode}"] = t["op"] / t["handle"]
                if t["op"] and t["F.linear"]:
                    row[f"speedup_vs_F.linear_{mode}"] = t["F.linear"] / t["op"]
                if t["op"] and row.get("kernel_us"):
                    row[f"op_over_kernel_{mode}"] = t["op"] / row["kernel_us"]
            out["rows"].append(row)
            print(line(row, modes), flush=True)
            del calls
            if args.out:  # partial results survive a timeout
                write(args.out, out)
        del layer
        if device == "cuda":
            ops.clear_cache()
            torch.cuda.empty_cache()
    out["summary"] = summarize(out["rows"], modes)
    return out


def geomean(v: List[float]) -> Optional[float]:
    v = [x for x in v if x and x > 0]
    return math.exp(sum(map(math.log, v)) / len(v)) if v else None


def summarize(rows: List[Dict[str, Any]], modes: Sequence[str]) -> Dict[str, Any]:
    s: Dict[str, Any] = {}
    for mode in modes:
        for key in ("op_over_handle", "op_over_kernel", "speedup_vs_F.linear"):
            vals = [r[f"{key}_{mode}"] for r in rows if f"{key}_{mode}" in r]
            if vals:
                s[f"{key}_{mode}"] = {"geomean": geomean(vals), "max": max(vals), "min": min(vals), "cases": len(vals)}
    return s


def line(row: Dict[str, Any], modes: Sequence[str]) -> str:
    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.2f}"

    parts = [f"{row['layer']} {row['n']}x{row['k']} M={row['m']}"]
    for mode in modes:
        t = [row.get(f"{w}_{mode}", {}).get("median_us") for w in ("F.linear", "op", "handle")]
        parts.append(f"{mode}: F.linear {f(t[0])} op {f(t[1])} handle {f(t[2])} µs")
    parts.append(f"kernel {f(row.get('kernel_us'))} µs")
    return " | ".join(parts)


def table(out: Dict[str, Any]) -> str:
    """Markdown: per case and mode, the three contenders, the benchmark's kernel and ratios."""
    lines = [
        "| layer | N×K | M | mode | F.linear µs | op µs | handle µs | kernel µs (benchmark) | op / handle | op / kernel | vs F.linear |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: Any, fmt: str = "{:.1f}") -> str:
        return "n/a" if v is None else fmt.format(v)

    for r in out["rows"]:
        for mode in MODES:
            if f"op_{mode}" not in r and f"F.linear_{mode}" not in r:
                continue
            med = lambda w: r.get(f"{w}_{mode}", {}).get("median_us")  # noqa: E731
            lines.append(
                f"| {r['layer']} | {r['n']}×{r['k']} | {r['m']} | {mode} | {f(med('F.linear'))} | {f(med('op'))} | "
                f"{f(med('handle'))} | {f(r.get('kernel_us'))} | {f(r.get(f'op_over_handle_{mode}'), '{:.3f}')} | "
                f"{f(r.get(f'op_over_kernel_{mode}'), '{:.3f}')} | {f(r.get(f'speedup_vs_F.linear_{mode}'), '{:.2f}×')} |"
            )
    return "\n".join(lines) + "\n"


def write(path: str, out: Dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench-json", help="take shapes, M and dtype from this `sparseflow benchmark` JSON")
    p.add_argument("--shape", action="append", default=[], metavar="N,K", help="a layer shape (repeatable)")
    p.add_argument("--m", default="1,16,256", help="token counts, comma-separated")
    p.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--sample-ms", type=float, default=2.0, help="target duration of one sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the JSON here (rewritten after every case)")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the script, times nothing real")
    args = p.parse_args()
    if args.smoke and not args.shape:
        args.m = "1,3"
    out = run(args)
    text = table(out)
    print(text)
    print(json.dumps(out["summary"], indent=2))
    if args.out:
        write(args.out, out)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
