"""Device memory of 2:4 through the public Python API (``--memory``), dense vs sparse (issue 23).

Builds its own models with random weights — a Llama-3-8B-shaped layer set (one block's seven
linears) and a full-depth Llama-3-8B-shaped ``transformers`` ``LlamaForCausalLM`` — converts them
with ``sf.sparsify`` (2:4 magnitude pruning) and reports, per dtype, the device memory held after
``torch.cuda.empty_cache()`` with no live activations (weights only):

* ``dense``: the dense model; ``sparse``: right after ``sparsify``; ``after_m<M>``: after running
  M tokens once, for each M of ``--m`` (1, 16, 256, 4096: one per kernel bucket family);
* ``peak_during_sparsify``: ``torch.cuda.max_memory_allocated()`` while ``sparsify`` ran, with the
  starting footprint and the largest dense layer, so the streaming bound can be checked;
* ``from_cpu``: the same model built on the host and converted with ``sf.sparsify(model,
  device="cuda")``, so the dense model is never on the GPU: its peak, final footprint and time,
  checked against the issue's literal bound (final footprint + largest dense layer + 256 MB).
  The full-depth host model is built on the meta device and materialised with ``to_empty`` +
  in-place ``normal_`` in its dtype (transformers' random init would run two fp32 passes over
  8B weights and a cast); ``--no-from-cpu`` skips it;
* three figures per point: ``allocated`` (torch tensors), ``reserved`` (torch's cache,
  ``reserved - allocated`` = blocks it holds but no tensor uses) and ``device_used``
  (``cudaMemGetInfo``: everything on the device, the runtime's own memory included), plus
  ``outside_torch`` = ``device_used - reserved``: the CUDA context, loaded modules (cuBLAS's,
  torch's, SparseFlow's), local-memory reservations and allocations not made through torch;
* from the point SparseFlow's runtime context exists (``runtime_context``, measured on its
  own before ``sparsify``): ``runtime``, what the runtime holds besides the layers' weights
  (``sparseflow._C.runtime_memory``: split-K workspaces, loaded kernels and their code bytes,
  the largest kernel stack frame, and the context's per-thread stack limit, whose rise means a
  local-memory reservation), and ``handle_owned``, device bytes the layers' kernel handles own
  (0: they borrow the layers' tensors).

Dense and sparse run in one process, so the sparse points also hold what the dense runs left
(cuBLAS's modules and torch's cuBLAS workspace, which is ``allocated``): each sparse point is
compared with the dense point after the same buckets ran, and ``attribution`` lists the
``outside_torch`` growth step by step.

Targets (issue 23): layer set sparse ≤ 0.57× dense + 64 MB after every bucket; full model linear
weights ≤ 0.57× dense, whole model ≤ 0.65× dense; peak ≤ start + largest dense layer + 256 MB
(``from_cpu``: ≤ final + largest dense layer + 256 MB).

    python3 python/benchmarks/memory.py --memory --out memory.json          # GPU
    python3 python/benchmarks/memory.py --memory --smoke --out memory.json  # CPU, tiny: the script only
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import re
import sys
import time
from typing import Any, Callable, Dict, List

import torch
from torch import nn

import sparseflow as sf

MB = 1 << 20
LLAMA3_8B = dict(hidden=4096, intermediate=14336, kv=1024, layers=32, heads=32, kv_heads=8, vocab=128256)
SMOKE = dict(hidden=64, intermediate=128, kv=32, layers=2, heads=4, kv_heads=2, vocab=128)
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def tensor_bytes(model: nn.Module) -> int:
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def measure(model: nn.Module, device: str, runtime: bool = False) -> Dict[str, Any]:
    """Memory held now, after dropping garbage and torch's unused cache; with ``runtime``, also
    what SparseFlow's runtime holds (creating its context if there is none yet)."""
    gc.collect()
    if device != "cuda":
        b = tensor_bytes(model)
        return {"allocated": b, "reserved": b, "device_used": b, "outside_torch": 0}
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info()
    out: Dict[str, Any] = {
        "allocated": torch.cuda.memory_allocated(),
        "reserved": torch.cuda.memory_reserved(),
        "device_used": total - free,
    }
    out["outside_torch"] = out["device_used"] - out["reserved"]
    if runtime:
        out["runtime"] = sf._C.runtime_memory(torch.cuda.current_device())
        out["handle_owned"] = sum(
            m._kernel.owned_device_bytes
            for m in model.modules()
            if isinstance(m, sf.SparseLinear) and m._kernel is not None
        )
    return out


def linear_bytes(model: nn.Module) -> Dict[str, int]:
    dense = sum(m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Linear))
    sparse = sum(
        m.values.numel() * m.values.element_size() + m.meta.numel()
        for m in model.modules()
        if isinstance(m, sf.SparseLinear)
    )
    return {"dense_linear": dense, "sparse_linear": sparse}


class LayerSet(nn.Module):
    """One Llama-3-8B block's linears (q, k, v, o, gate, up, down), run one after another."""

    def __init__(self, s: Dict[str, int], dtype: torch.dtype, device: str) -> None:
        super().__init__()
        h, i, kv = s["hidden"], s["intermediate"], s["kv"]
        shapes = {"q": (h, h), "k": (h, kv), "v": (h, kv), "o": (h, h), "gate": (h, i), "up": (h, i), "down": (i, h)}
        self.layers = nn.ModuleDict(
            {name: nn.Linear(k, n, bias=False, dtype=dtype, device=device) for name, (k, n) in shapes.items()}
        )
        self.dtype, self.device = dtype, device


def run_layer_set(layer_set: LayerSet, m: int) -> None:
    device = next(itertools.chain(layer_set.parameters(), layer_set.buffers())).device  # moved by sparsify(device=)
    for layer in layer_set.layers.values():
        x = torch.randn(m, layer.in_features, dtype=layer_set.dtype, device=device)
        y = layer(x)
        del x, y


def llama(s: Dict[str, int], dtype: torch.dtype, device: str) -> nn.Module:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=s["vocab"],
        hidden_size=s["hidden"],
        intermediate_size=s["intermediate"],
        num_hidden_layers=s["layers"],
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        max_position_embeddings=8192,
    )
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config).to(dtype).eval()
    return model


def llama_on_host(s: Dict[str, int], dtype: torch.dtype) -> nn.Module:
    """The model of :func:`llama` on the host, without transformers' random init: built on the
    meta device, materialised with ``to_empty`` in ``dtype`` and filled in place with N(0, 0.02)
    (the init's distribution). Buffers are computed, not initialised (the rotary ``inv_freq``):
    they come from the same architecture built one block deep with a small vocabulary."""
    model = llama(s, dtype, "meta").to_empty(device="cpu")
    small = dict(llama(dict(s, layers=1, vocab=256, intermediate=256), dtype, "cpu").named_buffers())
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)
        for name, b in model.named_buffers():
            b.copy_(small[re.sub(r"layers\.\d+\.", "layers.0.", name)])
    return model


def run_llama(model: nn.Module, m: int) -> None:
    ids = torch.randint(0, model.config.vocab_size, (1, m), device=next(model.parameters()).device)
    with torch.no_grad():
        out = model(ids, use_cache=False)
    del out, ids


def profile(name: str, build: Callable[[], nn.Module], run: Callable[[nn.Module, int], None], ms: List[int], device: str) -> Dict[str, Any]:
    res: Dict[str, Any] = {"model": name}
    base = measure(nn.Module(), device)
    res["baseline"] = base
    model = build()
    res["dense"] = measure(model, device)
    res["largest_dense_layer"] = max(
        m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Linear)
    )
    res.update({f"dense_{k}": v for k, v in linear_bytes(model).items() if k == "dense_linear"})
    with torch.no_grad():
        for m in ms:
            run(model, m)
            res[f"dense_after_m{m}"] = measure(model, device)
    start = measure(model, device)
    if device == "cuda":
        # SparseFlow's runtime context on its own (sparsify would create it with the first
        # layer's handle), so its device cost is a point of the attribution.
        res["runtime_context"] = measure(model, device, runtime=True)
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model, report = sf.sparsify(model, exclude=("lm_head",), progress=False)
    res["sparsify_s"] = time.perf_counter() - t
    res["peak_during_sparsify"] = torch.cuda.max_memory_allocated() if device == "cuda" else None
    res["start_of_sparsify"] = start
    res["sparsified_layers"] = len(report.sparsified)
    res["converted_dense_linear"] = sum(int(r.diff.get("bytes_dense", 0)) for r in report.sparsified)
    on_cuda = device == "cuda"
    res["sparse"] = measure(model, device, runtime=on_cuda)
    res.update({"sparse_linear": linear_bytes(model)["sparse_linear"]})
    with torch.no_grad():
        for m in ms:
            run(model, m)
            res[f"sparse_after_m{m}"] = measure(model, device, runtime=on_cuda)
    del model
    return res


def profile_from_host(
    build: Callable[[], nn.Module], run: Callable[[nn.Module, int], None], device: str
) -> Dict[str, Any]:
    """``sf.sparsify(model, device=device)`` of a model built on the host: the peak while it
    ran (the dense model is never on the device) and the final footprint, both including what
    the device held before (``start_of_sparsify``)."""
    res: Dict[str, Any] = {}
    t = time.perf_counter()
    model = build()
    res["build_s"] = time.perf_counter() - t
    res["largest_dense_layer"] = max(
        m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, nn.Linear)
    )
    res["start_of_sparsify"] = measure(nn.Module(), device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    model, report = sf.sparsify(model, exclude=("lm_head",), progress=False, device=device)
    res["sparsify_s"] = time.perf_counter() - t
    res["peak_during_sparsify"] = torch.cuda.max_memory_allocated() if device == "cuda" else None
    res["model_device"] = report.device
    res["sparsified_layers"] = len(report.sparsified)
    res["sparse"] = measure(model, device, runtime=device == "cuda")
    with torch.no_grad():
        run(model, 16)  # the moved model runs where it landed
    res["sparse_after_m16"] = measure(model, device, runtime=device == "cuda")
    del model
    return res


def checks(res: Dict[str, Any], ms: List[int], full_model: bool) -> Dict[str, Any]:
    """The issue's targets, on torch's allocated bytes net of the empty-process baseline and on
    the device-wide figure (which includes the runtime's own allocations)."""
    out: Dict[str, Any] = {}
    for key in ("allocated", "device_used"):
        base = res["baseline"][key]
        dense = res["dense"][key] - base
        out[f"sparse_over_dense_{key}"] = (res["sparse"][key] - base) / dense
        # After running: each sparse point against the dense point after the same buckets ran
        # (both then hold what the dense runs left behind, e.g. cuBLAS), worst case reported.
        pairs = [(res[f"sparse_after_m{m}"][key] - base, res[f"dense_after_m{m}"][key] - base) for m in ms]
        pairs = pairs or [(res["sparse"][key] - base, dense)]
        out[f"worst_after_run_over_dense_{key}"] = max(s / d for s, d in pairs)
        if full_model:
            out[f"whole_model_ok_{key}"] = all(s <= 0.65 * d for s, d in pairs)
        else:
            out[f"layer_set_ok_{key}"] = all(s <= 0.57 * d + 64 * MB for s, d in pairs)
    out["attribution"] = attribution(res, ms)
    if full_model:
        out["linear_over_dense"] = res["sparse_linear"] / res["converted_dense_linear"]
        out["linear_ok"] = out["linear_over_dense"] <= 0.57
    if res["peak_during_sparsify"] is not None:
        start = res["start_of_sparsify"]["allocated"]
        out["peak_over_start_mb"] = (res["peak_during_sparsify"] - start) / MB
        out["peak_ok"] = res["peak_during_sparsify"] <= start + res["largest_dense_layer"] + 256 * MB
        # The literal bound (final sparse + largest dense + 256 MB). A model that starts
        # on the GPU starts above it as soon as the 2:4 saving exceeds largest layer + 256 MB
        # (the full model: ~6 GB saved), and the peak is never below the start; the layer set
        # starts below it. Reported for the record; peak_ok is the bound streaming can keep.
        out["peak_within_final_sparse_bound"] = (
            res["peak_during_sparsify"] <= res["sparse"]["allocated"] + res["largest_dense_layer"] + 256 * MB
        )
    host = res.get("from_cpu")
    if host is not None and host["peak_during_sparsify"] is not None:
        # Converted from the host, the bound the issue states can hold: the device only fills up.
        final = host["sparse"]["allocated"]
        out["from_cpu_peak_over_final_mb"] = (host["peak_during_sparsify"] - final) / MB
        out["from_cpu_peak_within_final_sparse_bound"] = (
            host["peak_during_sparsify"] <= final + host["largest_dense_layer"] + 256 * MB
        )
    return out


def attribution(res: Dict[str, Any], ms: List[int]) -> Dict[str, Any]:
    """Where device memory outside torch's pool came from, step by step (MB), and what
    SparseFlow's runtime says it holds at the last point."""
    steps = ["baseline", "dense"] + [f"dense_after_m{m}" for m in ms]
    steps += [s for s in ("runtime_context",) if s in res] + ["sparse"] + [f"sparse_after_m{m}" for m in ms]
    out: Dict[str, Any] = {"outside_torch_mb": {s: res[s]["outside_torch"] / MB for s in steps}}
    growth, prev = {}, None
    for s in steps:
        if prev is not None:
            growth[s] = (res[s]["outside_torch"] - res[prev]["outside_torch"]) / MB
        prev = s
    out["outside_torch_growth_mb"] = growth
    last = res[steps[-1]]
    if "runtime" in last:
        rt = last["runtime"]
        out["runtime_owned_mb"] = (rt["workspace_bytes"] + last["handle_owned"]) / MB
        out["runtime_kernel_code_mb"] = rt["kernel_code_bytes"] / MB
        out["runtime"] = rt
        out["stack_limit_bytes"] = {s: res[s]["runtime"]["stack_limit_bytes"] for s in steps if "runtime" in res[s]}
    return out


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memory", action="store_true", help="the memory benchmark (this script's only mode)")
    ap.add_argument("--dtype", default="fp16,bf16")
    ap.add_argument("--m", default="1,16,256,4096")
    ap.add_argument("--models", default="layers,llama", help="layers (Llama-3-8B layer set), llama (full depth)")
    ap.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: checks the script only")
    ap.add_argument("--no-from-cpu", action="store_true", help="skip the sparsify(host model, device=...) runs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    device = "cpu" if args.smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available; use --smoke on the CPU", file=sys.stderr)
        return 2
    shapes = SMOKE if args.smoke else LLAMA3_8B
    ms = [int(m) for m in args.m.split(",") if m] if not args.smoke else [1, 16]
    results: Dict[str, Any] = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                               "torch": torch.__version__, "m": ms, "runs": []}  # fmt: skip
    for dname in args.dtype.split(","):
        dtype = DTYPES[dname]
        for which in args.models.split(","):
            if which == "layers":
                res = profile("llama3-8b-layer-set", lambda: LayerSet(shapes, dtype, device), run_layer_set, ms, device)
                host_build, run = (lambda: LayerSet(shapes, dtype, "cpu")), run_layer_set
            elif which == "llama":
                res = profile("llama3-8b-full", lambda: llama(shapes, dtype, device), run_llama, ms, device)
                host_build, run = (lambda: llama_on_host(shapes, dtype)), run_llama
            else:
                raise SystemExit(f"unknown model {which!r}")
            if not args.no_from_cpu:
                res["from_cpu"] = profile_from_host(host_build, run, device)
            res["checks"] = checks(res, ms, full_model=which == "llama")
            res["dtype"] = dname
            results["runs"].append(res)
            print(json.dumps({"model": res["model"], "dtype": dname, **res["checks"]}), flush=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
