"""End to end (issue 29): a full-depth ``transformers`` Llama, dense vs SparseFlow 2:4.

Builds a ``LlamaForCausalLM`` with the full Llama-3-8B configuration (``--model llama3-8b``: 32
layers, hidden 4096, intermediate 14336, 32 heads / 8 KV heads, vocab 128256; bf16 by default)
or one tensor-parallel shard of Llama-3-70B (``llama3-70b-tp8``: 80 layers, hidden 8192, 8 heads
/ 1 KV head of 128, intermediate 3584, vocab shard 16032; one shard's compute, no all-reduce),
with random weights. The dense model's linears are pruned 2:4 and a copy is converted with
``sf.sparsify`` (``decode.sparse_twin``), so dense and sparse compute the same function and only
the kernels differ. Every size can be overridden (``--layers``, ``--hidden``, ...), which is how
CI runs a CPU-sized version (``--device cpu --model tiny``).

``sparse_fused`` is the sparse model with projection fusion (``sf.fuse_projections`` of a copy:
each MLP's gate_proj and up_proj as one 2:4 GEMM, the same weights; docs/PYTHON.md, "Projection
fusion"), so every case also compares one launch with twice the N against two.

Cases, for ``dense``, ``sparse`` and ``sparse_fused`` (each one key of ``cases`` in the JSON):

* ``ttft/<model>``: time to first token of one ``--prompt``-token prompt on the freshly built
  model, ``sf.prepare(max_tokens=prompt)`` included (the kernel cache's state is recorded),
  after one 16-token dense forward has paid the process's one-time CUDA library start;
* ``prefill/<model>/batch<B>``: one forward of B × ``--prompt`` tokens (no KV cache, logits of
  the last position only, as a serving engine computes them);
* ``decode_graph/<model>/batch<B>``: one greedy decode step (forward of B new tokens against a
  ``StaticCache`` holding ``--context`` tokens, argmax fed back) captured once as a CUDA graph
  and replayed, as a serving engine runs it; the first replay's logits are checked against an
  uncached forward of the same tokens;
* ``decode_graph_compiled/...``, ``prefill_compiled/...``: the same with the forward through
  ``torch.compile`` (``COMPILED``), as serving engines run a model; the compile is not timed;
* ``decode_generate/<model>/batch<B>``: ``model.generate`` with a static cache and transformers'
  ``torch.compile(mode="reduce-overhead")`` decode step (``decode.decode_tps``);
* ``profile/<case>``: a ``torch.profiler`` breakdown per step of the timed case (SparseFlow
  linears, dense linears, attention, norms, other, and the step time no kernel covers);
* ``agreement``: teacher-forced top-1 agreement over ``--agreement-positions`` positions and the
  first position where greedy generation diverges;
* ``fusion_check``: ``sparse_fused`` against ``sparse`` on the same positions (the logits differ
  by rounding only: the activation runs on the rounded GEMM output instead of in its epilogue).

Attention (``--attention``, the same for every model; ``attention.py`` has the measurements):
``sdpa_packed_gqa`` (default) is transformers' SDPA attention except that a decode step's single
query token attends over the KV heads in place — its query heads regrouped as rows per KV head —
instead of SDPA reading a copy of the cache expanded to every query head (``repeat_kv``, a 26 ms
elementwise kernel per step at batch 64 on the H200 with transformers 5.17). ``flex_decode`` runs
those decode steps through FlexAttention's split-KV decoding kernel instead, the kind of kernel
serving engines attend with. ``sdpa`` keeps transformers' own.

``summary.sparse_over_dense``, ``summary.sparse_fused_over_dense`` and
``summary.sparse_fused_over_sparse`` hold the speed ratios of every finished pair.

``memory`` (weights of each model, linear weights, what SparseFlow's runtime holds, the device
after this run's cases) is rewritten by every run. The JSON (``--out``) is rewritten after each
case and a rerun with the same configuration skips finished cases (``--retry-errors`` reruns
failed ones), so a run stopped by a time limit continues where it stopped. On the CPU, graph
capture and ``torch.compile`` are not available: those cases run their step eagerly instead
(so the code path is exercised) and say so under ``not_measured``.

    python3 python/benchmarks/e2e.py --out e2e.json                          # GPU, Llama-3-8B bf16
    python3 python/benchmarks/e2e.py --model llama3-70b-tp8 --dtype fp16 --out e2e-70b.json
    python3 python/benchmarks/e2e.py --device cpu --model tiny --out smoke.json  # CI, seconds

docs/PERFORMANCE.md ("End to end", method) says what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import inspect
import json
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import decode  # noqa: E402  (the Llama builder, the pruned twin, generate timing)
from attention import ATTENTIONS, PACKED_GQA, packing_checked_eagerly, use_attention  # noqa: E402
from memory import linear_bytes, tensor_bytes  # noqa: E402

import sparseflow as sf  # noqa: E402

SCHEMA = 1
PRESETS: Dict[str, Dict[str, int]] = {
    "llama3-8b": dict(layers=32, hidden=4096, intermediate=14336, heads=32, kv_heads=8, head_dim=128, vocab=128256),
    # One tensor-parallel shard of 8: attention heads, KV heads, the MLP and the vocabulary split 8 ways.
    "llama3-70b-tp8": dict(layers=80, hidden=8192, intermediate=3584, heads=8, kv_heads=1, head_dim=128, vocab=16032),
    "tiny": dict(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=16, vocab=256),
}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MODELS = ("dense", "sparse", "sparse_fused")
#: Suffix of a case kind whose forward runs through ``torch.compile`` (Inductor, default mode:
#: the norms, rotary embedding, residual adds and the SiLU product fused into a few kernels; the
#: GEMMs stay cuBLAS / SparseFlow) — how serving engines (vLLM, SGLang) run the model — before the
#: same timing as the eager form: ``decode_graph_compiled`` captures the compiled step as a CUDA
#: graph, ``prefill_compiled`` times the compiled forward.
COMPILED = "_compiled"
#: Issue 29's targets (H200, Llama-3-8B, bf16): speed ratios sparse over dense (at least),
#: memory ratios (at most), teacher-forced top-1 agreement (at least). ``summary.targets`` says
#: which finished cases meet them.
TARGETS: Dict[str, float] = {
    "decode_graph/batch1": 1.4, "decode_graph/batch16": 1.35, "decode_graph/batch64": 1.2,
    "prefill/batch1": 1.25, "prefill/batch8": 1.25,
    "memory/converted_linear_weights": 0.58, "memory/whole_model": 0.65, "agreement": 0.99,
}  # fmt: skip
#: The compiled variants of the speed cases (``COMPILED`` suffix) are held to the same targets:
#: the summary reports both forms side by side, never one in place of the other.
TARGETS.update({k.replace("/", COMPILED + "/", 1): v for k, v in list(TARGETS.items()) if k.startswith(("decode_graph/", "prefill/"))})
PREFILL_CHUNK = 16384  # tokens per forward when a decode case fills its KV cache
CATEGORIES = ("sparseflow_linear", "dense_linear", "attention", "norm", "other")
CPU_GRAPH = "CUDA-graph capture needs CUDA: the same step ran eagerly instead (code path only, not a measurement)"
CPU_INDUCTOR = "torch.compile's GPU code needs CUDA: the same forward ran eagerly instead (code path only, not a measurement)"
CPU_COMPILE = (
    "torch.compile(mode='reduce-overhead') records CUDA graphs and needs CUDA: generate ran eagerly instead "
    "(code path only, not a measurement)"
)


# ----------------------------------------------------------------------------- results file


class Results:
    """The JSON file: ``config`` (must match a rerun's), ``cases`` (one entry per finished case),
    ``runs`` (one entry per process: build, setup and what it ran), ``memory``, ``summary``."""

    def __init__(self, path: Optional[str], config: Dict[str, Any], retry_errors: bool) -> None:
        self.path, self.retry_errors = path, retry_errors
        self.data: Dict[str, Any] = {"schema": SCHEMA, "config": config, "cases": {}, "runs": []}
        if path and os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if old.get("schema") != SCHEMA or old.get("config") != config:
                raise SystemExit(
                    f"{path} holds results of another configuration (or schema); pass another --out or "
                    f"delete it.\n  stored:  {json.dumps(old.get('config'), sort_keys=True)}\n"
                    f"  current: {json.dumps(config, sort_keys=True)}"
                )
            self.data = old

    @property
    def cases(self) -> Dict[str, Any]:
        return self.data["cases"]

    def done(self, key: str) -> bool:
        r = self.cases.get(key)
        return r is not None and ("error" not in r or not self.retry_errors)

    def save(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=2)
            f.write("\n")
        os.replace(tmp, self.path)  # a run killed mid-write keeps the previous file


# ----------------------------------------------------------------------------- timing helpers


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median(xs: List[float]) -> float:
    return sorted(xs)[len(xs) // 2]


@contextlib.contextmanager
def peak_memory(device: str, out: Dict[str, Any]) -> Iterator[None]:
    """Records the device memory a case allocated above what was held when it started
    (activations, KV cache, graph pools, workspaces): ``peak_over_start_bytes``."""
    if device != "cuda":
        yield
        return
    gc.collect()
    torch.cuda.synchronize()
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    yield
    torch.cuda.synchronize()
    out["peak_over_start_bytes"] = torch.cuda.max_memory_allocated() - start


def forward_kwargs(model: nn.Module) -> Dict[str, str]:
    """Keyword names of this transformers version's causal-LM forward: the cache argument
    (``cache`` since 5.2x, ``past_key_values`` before), whether it takes ``cache_position``, and
    the logits-to-keep argument."""
    params = inspect.signature(model.forward).parameters
    return {
        "cache": "cache" if "cache" in params else "past_key_values",
        "cache_position": "cache_position" if "cache_position" in params else "",
        "keep": "logits_to_keep" if "logits_to_keep" in params else "num_logits_to_keep",
    }


def static_cache(model: nn.Module, batch: int, max_len: int) -> Any:
    from transformers import StaticCache

    try:
        return StaticCache(config=model.config, max_cache_len=max_len)
    except TypeError:  # older transformers: the cache is allocated up front
        p = next(model.parameters())
        return StaticCache(config=model.config, max_batch_size=batch, max_cache_len=max_len, device=p.device, dtype=p.dtype)


def random_ids(model: nn.Module, batch: int, length: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.config.vocab_size, (batch, length), generator=g)
    return ids.to(next(model.parameters()).device)


# ----------------------------------------------------------------------------- profiler breakdown


def _label(module: nn.Module) -> Optional[str]:
    if isinstance(module, sf.SparseLinear):
        return "sparseflow_linear"
    if isinstance(module, nn.Linear):
        return "dense_linear"
    name = type(module).__name__
    if name.endswith("Attention"):
        return "attention"
    if name.endswith("RMSNorm") or name.endswith("LayerNorm"):
        return "norm"
    return None


@contextlib.contextmanager
def module_ranges(model: nn.Module) -> Iterator[None]:
    """Wraps every categorised module's forward in a ``record_function("e2e::<category>")``
    range, so the profiler can attribute each kernel to the innermost category that launched it
    (a q_proj inside attention counts as a linear, the attention's own kernels as attention)."""
    handles, stack = [], []

    def pre(label: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            r = torch.profiler.record_function(f"e2e::{label}")
            r.__enter__()
            stack.append(r)

        return hook

    def post(*_: Any) -> None:
        stack.pop().__exit__(None, None, None)

    for m in model.modules():
        label = _label(m)
        if label is not None:
            handles.append(m.register_forward_pre_hook(pre(label)))
            handles.append(m.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def kernel_category(name: str) -> str:
    """A kernel's category from its name alone (graph replays and compiled code carry no module
    ranges). SparseFlow kernels are ``sparseflow_<family>_...``; Inductor names its fused kernels
    after the ops they hold (an RMSNorm has ``rsqrt``)."""
    n = name.lower()
    if "sparseflow" in n:
        return "sparseflow_linear"
    if any(s in n for s in ("flash", "fmha", "attention", "sdpa", "attn")):
        return "attention"
    if any(s in n for s in ("gemm", "nvjet", "cutlass", "xmma", "cublas", "splitk", "gemv")):
        return "dense_linear"
    if any(s in n for s in ("rms", "norm", "rsqrt")):
        return "norm"
    return "other"


def breakdown(prof: Any, steps: int, device: str) -> Dict[str, Any]:
    """Per step, µs per category. On CUDA: the GPU time of every kernel, attributed to the
    innermost ``e2e::`` module range that launched it, else by its name. On the CPU (no
    kernels): the ops' own CPU time, attributed the same way (tests the attribution only)."""
    from torch.autograd import DeviceType

    out = {c: 0.0 for c in CATEGORIES}
    by_name: Dict[str, float] = {}
    attributed_by = {"module_range": 0.0, "kernel_name": 0.0}
    for e in prof.events():
        if e.device_type != DeviceType.CPU:
            continue
        label = None
        p = e
        while p is not None and label is None:
            if p.name.startswith("e2e::") and p.name[len("e2e::") :] in CATEGORIES:
                label = p.name[len("e2e::") :]
            p = p.cpu_parent
        if device == "cuda":  # kernels hang off the op (or range) that launched them
            items = [(k.name, k.duration) for k in e.kernels]
        elif e.name.startswith("e2e::"):
            items = []  # the ranges' own CPU time is the hooks'
        else:
            items = [(e.name, e.self_cpu_time_total)]
        for name, us in items:
            cat = label or kernel_category(name)
            out[cat] += us
            attributed_by["module_range" if label else "kernel_name"] += us
            by_name[(name, cat)] = by_name.get((name, cat), 0.0) + us
    if device == "cuda":
        # Kernels the profiler could not link to a launching op (e.g. a driver-API launch
        # without correlation) still count, by name: every device event's time minus what was
        # attributed above under the same name.
        seen: Dict[str, float] = {}
        for e in prof.events():
            # The GPU-side copy of a ``record_function`` range (e.g. ``e2e::graph_replay``)
            # spans kernels already counted: it is no kernel of its own.
            if e.device_type == DeviceType.CUDA and not e.name.startswith("e2e::"):
                seen[e.name] = seen.get(e.name, 0.0) + (e.time_range.end - e.time_range.start)
        for name, us in seen.items():
            left = us - sum(v for (n, _), v in by_name.items() if n == name)
            if left > 0.5:
                cat = kernel_category(name)
                out[cat] += left
                attributed_by["unlinked_kernel_name"] = attributed_by.get("unlinked_kernel_name", 0.0) + left
                by_name[(name, cat)] = by_name.get((name, cat), 0.0) + left
    per_step = {c: v / steps for c, v in out.items()}
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:12]
    return {
        "unit": "GPU µs per step" if device == "cuda" else "CPU self µs per step (no GPU: attribution check only)",
        "per_step_us": per_step,
        "total_us": sum(per_step.values()),
        "attributed_by_us": {k: v / steps for k, v in attributed_by.items()},
        "top": [{"name": n[:160], "category": c, "us_per_step": us / steps} for (n, c), us in top],
    }


def profiled(fn: Callable[[], Any], steps: int, device: str) -> Dict[str, Any]:
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        fn()
        sync(device)
    return breakdown(prof, steps, device)


# ----------------------------------------------------------------------------- cases


def case_ttft(model: nn.Module, name: str, a: argparse.Namespace) -> Dict[str, Any]:
    """First token of a fresh model: prepare (sparse) + prefill forward + argmax, synchronized."""
    ids = random_ids(model, 1, a.prompt, seed=1)
    kw = forward_kwargs(model)
    cache_dir = os.environ.get("SPARSEFLOW_CACHE_DIR", os.path.expanduser("~/.cache/sparseflow"))
    files = lambda: sum(len(f) for _, _, f in os.walk(cache_dir)) if os.path.isdir(cache_dir) else 0  # noqa: E731
    before = files()
    sync(a.device)
    t0 = time.perf_counter()
    prepared = sf.prepare(model, max_tokens=a.prompt) if name != "dense" else 0
    sync(a.device)
    t1 = time.perf_counter()
    with torch.no_grad():
        tok = model(ids, use_cache=False, **{kw["keep"]: 1}).logits[:, -1].argmax(-1)
    tok.tolist()  # the token on the host: what a server would send
    t2 = time.perf_counter()
    return {
        "ttft_ms": 1e3 * (t2 - t0),
        "prepare_ms": 1e3 * (t1 - t0),
        "first_forward_ms": 1e3 * (t2 - t1),
        "prepared_layers": prepared,
        "kernel_cache_dir": cache_dir,
        "kernel_cache_files_before": before,
        "kernel_cache_files_after": files(),
    }


def compiled(model: nn.Module, a: argparse.Namespace) -> Tuple[Callable[..., Any], Dict[str, Any]]:
    """The model's forward through ``torch.compile`` (Inductor, default mode: no CUDA graphs of
    its own, so a case can capture the compiled step itself) and what the result records. On
    the CPU the plain model, marked as not measured."""
    if a.device != "cuda":
        return model, {"compiled": False, "not_measured": CPU_INDUCTOR}
    return torch.compile(model), {"compiled": "torch.compile (Inductor, default mode)"}


def case_prefill(
    model: nn.Module, batch: int, a: argparse.Namespace, compile: bool = False
) -> Tuple[Dict[str, Any], Callable[[], Any]]:
    ids = random_ids(model, batch, a.prompt, seed=2)
    kw = forward_kwargs(model)
    forward, res = compiled(model, a) if compile else (model, {})

    def run() -> Any:
        with torch.no_grad(), (packing_checked_eagerly() if compile else contextlib.nullcontext()):
            return forward(ids, use_cache=False, **{kw["keep"]: 1}).logits

    t = time.perf_counter()
    run()  # warm-up (first use of each shape; the compile of a compiled case)
    sync(a.device)
    first_s = time.perf_counter() - t
    s = decode.timed(run, a.repeats)
    tokens = batch * a.prompt
    res = {**res, "ms": 1e3 * s, "tokens": tokens, "tokens_per_s": tokens / s, "first_call_s": first_s}
    return res, run


class DecodeStep:
    """One greedy decode step of ``batch`` sequences against a static KV cache that already
    holds ``context`` tokens: the forward of the current tokens (``ids``, ``[batch, 1]``), then
    the argmax written back into ``ids`` — so replaying it generates. Each step advances the
    cache by one position on the device (transformers' ``StaticLayer`` keeps the length in a
    device tensor; older versions take a ``cache_position`` tensor, advanced here)."""

    def __init__(
        self, model: nn.Module, batch: int, context: int, max_steps: int, forward: Optional[Callable[..., Any]] = None
    ) -> None:
        # ``forward`` (default: the model) runs the decode steps; the context fill and the check
        # always run the plain model, so a compiled step is checked against eager code.
        self.model, self.kw = model, forward_kwargs(model)
        self.forward = model if forward is None else forward  # (a compiled module has no truth value)
        self.prompt = random_ids(model, batch, context, seed=3)
        self.max_len = context + max_steps + 8
        self.cache = static_cache(model, batch, self.max_len)
        self.consumed: List[torch.Tensor] = []  # the tokens fed by eager steps (for the check)
        # The context goes in by chunks of at most PREFILL_CHUNK tokens (batch x chunk), so
        # filling a batch-64 cache runs no larger GEMM than the prefill cases do.
        chunk = max(1, PREFILL_CHUNK // batch)
        with torch.no_grad():
            for i in range(0, context, chunk):
                self.pos = torch.arange(i, min(i + chunk, context), device=self.prompt.device)
                logits = model(self.prompt[:, i : i + chunk], **self._kwargs()).logits
        self.pos = self.pos[-1:] + 1
        self.ids = logits[:, -1:].argmax(-1)
        self.logits = logits[:, -1].clone()

    def _kwargs(self) -> Dict[str, Any]:
        kw = {self.kw["cache"]: self.cache, "use_cache": True, self.kw["keep"]: 1}
        if self.kw["cache_position"]:
            kw["cache_position"] = self.pos
        return kw

    def __call__(self) -> None:
        with torch.no_grad():
            logits = self.forward(self.ids, **self._kwargs()).logits[:, -1]
            self.logits.copy_(logits)
            self.ids.copy_(logits.argmax(-1, keepdim=True))
            self.pos.add_(1)

    def eager(self) -> None:
        self.consumed.append(self.ids.clone())
        self()

    def check(self, rows: int = 4) -> float:
        """Relative error of the last step's logits against an uncached forward of every token
        the cache has seen (prompt + the tokens fed since), on the first ``rows`` sequences:
        proves the step (and its graph) used the cache right."""
        seq = torch.cat([self.prompt] + self.consumed, dim=1)[:rows]
        with torch.no_grad():
            ref = self.model(seq, use_cache=False, **{self.kw["keep"]: 1}).logits[:, -1].float()
        return float((self.logits[:rows].float() - ref).norm() / ref.norm())


def case_decode_graph(
    model: nn.Module, batch: int, a: argparse.Namespace, compile: bool = False
) -> Tuple[Dict[str, Any], Callable[[], Any], Callable[[], None]]:
    warm = 2
    forward, info = compiled(model, a) if compile else (model, {})
    step = DecodeStep(model, batch, a.context, warm + 1 + a.steps * (a.repeats + 2), forward)
    t = time.perf_counter()
    for _ in range(warm):
        step.eager()  # the first one compiles a compiled step
    sync(a.device)
    info["warmup_s"] = time.perf_counter() - t
    if a.device != "cuda":
        step.eager()
        err = step.check()
        s = decode.timed(lambda: [step() for _ in range(a.steps)], a.repeats) / a.steps
        why = " ".join(filter(None, (CPU_GRAPH, info.pop("not_measured", ""))))
        res = {"ms_per_step": 1e3 * s, "tokens_per_s": batch / s, "check_rel_error": err, "graph": False,
               **info, "not_measured": why}  # fmt: skip
        return res, step, step
    # Warm-up on a side stream (PyTorch's rule before capture), then capture one step.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step.eager()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    step.consumed.append(step.ids.clone())
    graph.replay()
    torch.cuda.synchronize()
    err = step.check()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(a.repeats):
        start.record()
        for _ in range(a.steps):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / a.steps)
    s = median(times)
    res = {"ms_per_step": 1e3 * s, "tokens_per_s": batch / s, "check_rel_error": err, "graph": True,
           "context": a.context, "static_cache_len": step.max_len, **info}  # fmt: skip

    def replay() -> None:
        with torch.profiler.record_function("e2e::graph_replay"):
            for _ in range(a.steps):
                graph.replay()

    return res, replay, step  # replay holds the graph


def case_decode_generate(model: nn.Module, batch: int, a: argparse.Namespace) -> Tuple[Dict[str, Any], Callable[[], Any]]:
    graphs = a.device == "cuda"
    decode.DEVICE = a.device
    res = decode.decode_tps(model, batch, a.context, a.new_tokens, a.repeats, graphs)
    res = {**res, "compiled": graphs, "context": a.context, "new_tokens": a.new_tokens}
    if not graphs:
        res["not_measured"] = CPU_COMPILE
    ids = random_ids(model, batch, a.context, seed=4)

    def run(n: int) -> Callable[[], Any]:
        return lambda: decode.generate(model, ids, n, graphs)

    return res, run


def case_fusion_check(sparse: nn.Module, fused: nn.Module, a: argparse.Namespace) -> Dict[str, Any]:
    """Teacher-forced: the fused model against the unfused sparse one (same weights)."""
    ids = random_ids(sparse, 1, a.agreement_positions, seed=5)
    with torch.no_grad():
        s = sparse(ids, use_cache=False).logits[0].float()
        f = fused(ids, use_cache=False).logits[0].float()
    return {
        "positions": a.agreement_positions,
        "top1_agreement": float((s.argmax(-1) == f.argmax(-1)).float().mean()),
        "logits_rel_error": float((s - f).norm() / s.norm()),
    }


def case_agreement(dense: nn.Module, sparse: nn.Module, a: argparse.Namespace) -> Dict[str, Any]:
    """Teacher-forced: both models read the same random sequence; top-1 per position compared.
    Greedy: both generate from the same prompt; the first position where their tokens differ.
    The noise floor beside it: the same pruned dense model in float32 (a temporary copy) as the
    reference both are compared with — random weights give flat logits, and how often the
    half-precision dense model itself picks another top-1 than float32 says what agreement its
    rounding alone allows."""
    ids = random_ids(dense, 1, a.agreement_positions, seed=5)
    with torch.no_grad():
        d = dense(ids, use_cache=False).logits[0].float()
        s = sparse(ids, use_cache=False).logits[0].float()
        exact = copy.deepcopy(dense).float()
        r = exact(ids, use_cache=False).logits[0].float()
        del exact
        gc.collect()
    top_d, top_s, top_r = d.argmax(-1), s.argmax(-1), r.argmax(-1)
    top2 = d.topk(2, dim=-1).values
    prompt = ids[:, : a.greedy_prompt]
    decode.DEVICE = a.device
    with torch.no_grad():
        gd = decode.generate(dense, prompt, a.greedy_tokens, False)[0, a.greedy_prompt :]
        gs = decode.generate(sparse, prompt, a.greedy_tokens, False)[0, a.greedy_prompt :]
    differ = (gd != gs).nonzero()
    return {
        "positions": a.agreement_positions,
        "top1_agreement": float((top_d == top_s).float().mean()),
        "logits_rel_error": float((d - s).norm() / d.norm()),
        "dense_top1_agreement_with_fp32": float((top_d == top_r).float().mean()),
        "sparse_top1_agreement_with_fp32": float((top_s == top_r).float().mean()),
        "dense_logits_rel_error_vs_fp32": float((d - r).norm() / r.norm()),
        "sparse_logits_rel_error_vs_fp32": float((s - r).norm() / r.norm()),
        "median_dense_top1_margin": float((top2[:, 0] - top2[:, 1]).median()),
        "greedy_tokens": a.greedy_tokens,
        "greedy_first_divergence": int(differ[0, 0]) if len(differ) else None,
        "greedy_agreement": float((gd == gs).float().mean()),
    }


# ----------------------------------------------------------------------------- driver


def config_of(a: argparse.Namespace) -> Dict[str, Any]:
    shape = dict(PRESETS[a.model])
    for k in shape:
        if getattr(a, k) is not None:
            shape[k] = getattr(a, k)
    return {
        "model": a.model, **shape, "dtype": a.dtype, "device": a.device, "prompt": a.prompt,
        "prefill_batches": a.prefill_batches, "decode_batches": a.decode_batches, "context": a.context,
        "steps": a.steps, "new_tokens": a.new_tokens, "repeats": a.repeats,
        "agreement_positions": a.agreement_positions, "greedy_prompt": a.greedy_prompt, "greedy_tokens": a.greedy_tokens,
        "attention": a.attention,
    }  # fmt: skip


def case_plan(a: argparse.Namespace) -> List[str]:
    """Every case key in run order: the first-token cases first (they need fresh models), the
    graph-replayed decode (the headline) next, the ``torch.compile`` forms last (their compiles
    are slow)."""
    keys = [f"ttft/{m}" for m in MODELS]
    keys += [f"decode_graph/{m}/batch{b}" for b in a.decode_batches for m in MODELS]
    keys += [f"prefill/{m}/batch{b}" for b in a.prefill_batches for m in MODELS]
    keys += ["agreement", "fusion_check"]
    keys += [f"decode_graph{COMPILED}/{m}/batch{b}" for b in a.decode_batches for m in MODELS]
    keys += [f"prefill{COMPILED}/{m}/batch{b}" for b in a.prefill_batches for m in MODELS]
    keys += [f"decode_generate/{m}/batch{b}" for b in a.decode_batches for m in MODELS]
    return keys


def profile_key(key: str) -> str:
    return f"profile/{key}"


#: The speed ratios ``summary`` holds: (model, over model).
RATIOS = (("sparse", "dense"), ("sparse_fused", "dense"), ("sparse_fused", "sparse"))


def ratios(cases: Dict[str, Any], model: str, base: str) -> Dict[str, float]:
    """``model`` over ``base`` for every pair of finished, measured cases (> 1 = ``model``
    faster; for time to first token, < 1 = ``model`` sooner)."""
    out: Dict[str, float] = {}
    for key, r in cases.items():
        kind, *rest = key.split("/")
        if not rest or rest[0] != model or "not_measured" in r:  # a CPU stand-in is no measurement
            continue
        b = cases.get("/".join([kind, base, *rest[1:]]), {})
        if "tokens_per_s" in r and "tokens_per_s" in b:
            out["/".join([kind, *rest[1:]])] = r["tokens_per_s"] / b["tokens_per_s"]
        if kind == "ttft" and "ttft_ms" in r and "ttft_ms" in b:
            out[f"ttft (time, < 1 = {model} sooner)"] = r["ttft_ms"] / b["ttft_ms"]
    return out


def summarize(data: Dict[str, Any]) -> Dict[str, Any]:
    """Speed ratios of every pair of finished cases (``RATIOS``; memory < 1 = sparse smaller),
    the issue's targets, plus what is missing or failed."""
    cases, out = data["cases"], {"errors": {}, "not_measured": {}}
    for key, r in cases.items():
        if "error" in r:
            out["errors"][key] = r["error"][:300]
        if "not_measured" in r:
            out["not_measured"][key] = r["not_measured"]
    for model, base in RATIOS:
        out[f"{model}_over_{base}"] = ratios(cases, model, base)
    compiled = ttft_compiles(cases)
    if compiled:
        out["ttft_includes_compile"] = compiled
    out["targets"] = targets(data, out["sparse_over_dense"])
    out["targets_sparse_fused"] = targets(data, out["sparse_fused_over_dense"])
    if out_memory(data):
        out["memory_sparse_over_dense"] = out_memory(data)
    return out


def ttft_compiles(cases: Dict[str, Any]) -> Dict[str, str]:
    """The time-to-first-token cases whose ``sf.prepare`` compiled kernels (the cache gained
    files): their time includes NVRTC, which a deployment pays ahead with ``sparseflow compile``
    — say so beside the ratio rather than let it pass for serving latency."""
    out = {}
    for key, r in cases.items():
        added = r.get("kernel_cache_files_after", 0) - r.get("kernel_cache_files_before", 0)
        if key.startswith("ttft/") and added > 0:
            out[key] = (f"{added} kernel files compiled during sf.prepare ({r.get('prepare_ms', 0):.0f} ms): "
                        "precompile with `sparseflow compile` for a serving figure")  # fmt: skip
    return out


def targets(data: Dict[str, Any], speed: Dict[str, float]) -> Dict[str, Any]:
    """Which of the issue's targets the finished cases meet, from one model's speed ratios
    over dense (memory and agreement are the sparse model's: fusion changes neither)."""
    checks = {}
    for key, need in TARGETS.items():
        got = speed.get(key)
        if key.startswith("memory/"):
            got = out_memory(data).get(key[len("memory/") :])
        elif key == "agreement":
            got = data["cases"].get("agreement", {}).get("top1_agreement")
        if got is not None:
            ok = got <= need if key.startswith("memory/") else got >= need
            checks[key] = {"value": got, "target": need, "met": ok}
    return checks


def out_memory(data: Dict[str, Any]) -> Dict[str, float]:
    mem = data.get("memory", {})
    if "dense" not in mem or "sparse" not in mem:
        return {}
    return {
        "converted_linear_weights": mem["sparse"]["converted_linear_bytes"] / mem["dense"]["converted_linear_bytes"],
        "all_linear_weights": mem["sparse"]["linear_bytes"] / mem["dense"]["linear_bytes"],
        "whole_model": mem["sparse"]["model_with_runtime_bytes"] / mem["dense"]["model_bytes"],
    }


def memory_figures(dense: nn.Module, sparse: nn.Module, device: str) -> Dict[str, Any]:
    d_lin = linear_bytes(dense)["dense_linear"]
    s_lin = linear_bytes(sparse)
    # "converted": the linears sparsify converted (the target); "linear": all of them, the
    # ones left dense in both models (lm_head) included.
    out: Dict[str, Any] = {
        "dense": {"model_bytes": tensor_bytes(dense), "linear_bytes": d_lin,
                  "converted_linear_bytes": d_lin - s_lin["dense_linear"]},
        "sparse": {"model_bytes": tensor_bytes(sparse), "linear_bytes": s_lin["sparse_linear"] + s_lin["dense_linear"],
                   "converted_linear_bytes": s_lin["sparse_linear"]},
    }  # fmt: skip
    runtime_bytes = 0
    if device == "cuda":
        rt = sf._C.runtime_memory(torch.cuda.current_device())
        runtime_bytes = rt["workspace_bytes"] + rt["kernel_code_bytes"]
        free, total = torch.cuda.mem_get_info()
        out["runtime"] = rt
        out["device"] = {"allocated": torch.cuda.memory_allocated(), "reserved": torch.cuda.memory_reserved(),
                         "device_used": total - free, "max_allocated": torch.cuda.max_memory_allocated()}  # fmt: skip
    out["sparse"]["model_with_runtime_bytes"] = out["sparse"]["model_bytes"] + runtime_bytes
    return out


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(PRESETS), default="llama3-8b", help="shape preset (default llama3-8b)")
    for k in PRESETS["tiny"]:
        p.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=None, help=f"override the preset's {k}")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--prompt", type=int, default=2048, help="prompt tokens of prefill and time to first token")
    p.add_argument("--prefill-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--decode-batches", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--context", type=int, default=512, help="tokens in the KV cache when decode is timed")
    p.add_argument("--steps", type=int, default=32, help="graph-replayed decode steps per timing sample")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens per generate() call")
    p.add_argument("--repeats", type=int, default=5, help="timing samples per case (median reported)")
    p.add_argument("--agreement-positions", type=int, default=256)
    p.add_argument("--greedy-prompt", type=int, default=16)
    p.add_argument("--greedy-tokens", type=int, default=128)
    p.add_argument("--attention", choices=ATTENTIONS, default=PACKED_GQA,
                   help="decode attention: SDPA over the grouped KV heads in place (default), FlexAttention's "
                        "decoding kernel (flex_decode) or transformers' sdpa (attention.py)")  # fmt: skip
    p.add_argument("--cases", default=None, help="comma-separated prefixes of the case keys to run (default all)")
    p.add_argument("--no-profile", action="store_true", help="skip the profile/<case> breakdowns")
    p.add_argument("--budget-s", type=float, default=1e9, help="start no case after this many seconds")
    p.add_argument("--retry-errors", action="store_true", help="rerun cases that failed before")
    p.add_argument("--out", required=True, help="the JSON file (read first: finished cases are skipped)")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available: pass --device cpu (with --model tiny) to check the script", file=sys.stderr)
        return 2
    start = time.perf_counter()
    decode.DEVICE = a.device
    cfg = config_of(a)
    for k in PRESETS["tiny"]:
        setattr(a, k, cfg[k])
    res = Results(a.out, cfg, a.retry_errors)
    plan = case_plan(a)
    if a.cases:
        wanted = tuple(s.strip() for s in a.cases.split(",") if s.strip())
        plan = [k for k in plan if k.startswith(wanted)]
    profile_wanted = not a.no_profile
    pending = [k for k in plan if not res.done(k) or (profile_wanted and _profiled(k) and not res.done(profile_key(k)))]
    if not pending:
        print(json.dumps({"all_done": True, "summary": res.data.get("summary")}, indent=2))
        return 0

    import transformers

    run: Dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "torch": torch.__version__,
                           "transformers": transformers.__version__, "sparseflow": sf.__version__,
                           "device_name": torch.cuda.get_device_name() if a.device == "cuda" else "cpu",
                           "build": os.environ.get("SPARSEFLOW_BUILD"), "ran": []}  # fmt: skip
    res.data["runs"].append(run)
    if hasattr(torch._dynamo.config, "recompile_limit"):  # one compiled step per model and batch
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    if hasattr(torch._dynamo.config, "cache_size_limit"):
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    t = time.perf_counter()
    dense = decode.build(
        cfg["layers"], cfg["vocab"], cfg["hidden"], cfg["intermediate"], heads=cfg["heads"], kv_heads=cfg["kv_heads"],
        head_dim=cfg["head_dim"], dtype=DTYPES[a.dtype], device=a.device,
        max_positions=max(a.prompt, a.context + a.steps * (a.repeats + 3) + 8, a.agreement_positions) + a.new_tokens + 64,
    )  # fmt: skip
    use_attention(dense, a.attention)  # before the copies: they share it
    run["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    sparse, report = decode.sparse_twin(dense, progress=False)
    run["sparsify_s"] = time.perf_counter() - t
    run["report"] = report.summary()
    t = time.perf_counter()
    fused, groups = sf.fuse_projections(copy.deepcopy(sparse))
    run["fuse_s"] = time.perf_counter() - t
    run["fused_groups"] = [g.to_dict() for g in groups]
    models = {"dense": dense, "sparse": sparse, "sparse_fused": fused}
    res.save()

    def record(key: str, fn: Callable[[], Any]) -> Optional[List[Any]]:
        """Runs one case, stores its result (or its error) and saves the file; returns the
        callables the case handed back for its profile, or None (failed, or over the budget)."""
        if time.perf_counter() - start > a.budget_s:
            return None
        print(f"[{time.perf_counter() - start:7.1f} s] {key} ...", flush=True)
        out: Dict[str, Any] = {}
        extra: List[Any] = []
        t0 = time.perf_counter()
        try:
            with peak_memory(a.device, out):
                got = fn()
            if isinstance(got, tuple):
                got, *extra = got
            out.update(got)
        except Exception as e:  # record and go on: one failure should not hide the rest
            out = {"error": f"{type(e).__name__}: {e}"[:2000], "trace": traceback.format_exc()[-4000:]}
        out["seconds"] = time.perf_counter() - t0
        res.cases[key] = out
        run["ran"].append(key)
        res.data["summary"] = summarize(res.data)
        res.save()
        print(f"           {json.dumps({k: v for k, v in out.items() if k != 'trace'})[:300]}", flush=True)
        return None if "error" in out else extra

    def with_profile(key: str, case: Callable[[], Any], profile: Callable[..., Dict[str, Any]]) -> None:
        """Runs ``case`` (which returns its result and the callables its profile needs), then
        ``profile/<key>``; when only the profile is left (a run stopped between the two), the case
        runs again untimed for its callables."""
        extra = record(key, case) if not res.done(key) else None
        if not profile_wanted or res.done(profile_key(key)) or "error" in res.cases.get(key, {"error": ""}):
            return
        if extra is None:
            if time.perf_counter() - start > a.budget_s:
                return
            extra = list(case()[1:])
        record(profile_key(key), lambda: profile(key, *extra))

    prepared = warmed = False
    for key in pending:
        kind, *rest = key.split("/")
        base = kind.removesuffix(COMPILED)
        comp = base != kind  # the torch.compile form of the case
        model = models.get(rest[0]) if rest else None
        batch = int(rest[1][len("batch") :]) if len(rest) > 1 else 0
        if kind == "ttft" and not warmed:
            # The process's one-time start (CUDA libraries' handles, attention and GEMM kernels'
            # first use), paid before the first case rather than billed to it: a server has
            # run its warm-up before the first prompt. The dense model is left unprepared.
            t = time.perf_counter()
            with torch.no_grad():
                dense(random_ids(dense, 1, 16, seed=5), use_cache=False)
            sync(a.device)
            run["warmup_s"] = time.perf_counter() - t
            warmed = True
        if kind != "ttft" and not prepared:
            # Every bucket a capture will meet, once (larger eager calls prepare at first use).
            t = time.perf_counter()
            for m in (sparse, fused):
                sf.prepare(m, max_tokens=max(a.decode_batches))
            run["prepare_s"] = time.perf_counter() - t
            prepared = True
        if kind == "ttft":
            if not res.done(key):
                record(key, lambda: case_ttft(model, rest[0], a))
        elif kind == "agreement":
            if not res.done(key):
                record(key, lambda: case_agreement(dense, sparse, a))
        elif kind == "fusion_check":
            if not res.done(key):
                record(key, lambda: case_fusion_check(sparse, fused, a))
        elif base == "prefill":
            with_profile(key, lambda: case_prefill(model, batch, a, comp),
                         lambda _, fn: _profile_eager(model, fn, a.device, module_ranges_too=not comp))  # fmt: skip
        elif base == "decode_graph":
            with_profile(key, lambda: case_decode_graph(model, batch, a, comp),
                         lambda k, replay, step: _profile_decode(model, replay, step, res.cases[k], a, not comp))  # fmt: skip
        elif kind == "decode_generate":
            with_profile(key, lambda: case_decode_generate(model, batch, a), lambda _, gen: _profile_generate(gen, a))
        gc.collect()
        if a.device == "cuda":
            torch.cuda.empty_cache()

    res.data["memory"] = {**memory_figures(dense, sparse, a.device), "after_cases": run["ran"]}
    res.data["summary"] = summarize(res.data)
    run["elapsed_s"] = time.perf_counter() - start
    res.save()
    left = [k for k in plan if not res.done(k)]
    print(json.dumps({"summary": res.data["summary"], "cases_left": left}, indent=2))
    return 0


def _profiled(key: str) -> bool:
    return key.split("/")[0].removesuffix(COMPILED) in ("prefill", "decode_graph", "decode_generate")


def _profile_eager(model: nn.Module, fn: Callable[[], Any], device: str, module_ranges_too: bool = True) -> Dict[str, Any]:
    """One forward, attributed by module range, or (a compiled forward: module hooks would make
    dynamo recompile, and compiled code has no module boundaries) by kernel name."""
    if not module_ranges_too:
        return {"by_kernel_name": profiled(fn, 1, device)}
    with module_ranges(model):
        return {"eager_module_ranges": profiled(fn, 1, device)}


def _profile_decode(
    model: nn.Module, replay: Callable[[], None], step: DecodeStep, timed: Dict[str, Any], a: argparse.Namespace,
    module_ranges_too: bool = True,
) -> Dict[str, Any]:
    """The replayed graph by kernel name (what ran; the timed step minus its kernels is the
    time the GPU had no kernel of the step, ``idle_us``), and — unless the step is compiled — one
    eager step with module ranges (the same kernels, attributed exactly)."""
    out: Dict[str, Any] = {}
    if a.device == "cuda":
        out["graph_replay"] = profiled(replay, a.steps, a.device)
        out["graph_replay"]["idle_us"] = 1e3 * timed["ms_per_step"] - out["graph_replay"]["total_us"]
    else:
        out["graph_replay"] = {"not_measured": CPU_GRAPH}
    if module_ranges_too:
        with module_ranges(model):
            out["eager_module_ranges"] = profiled(step, 1, a.device)
    return out


def _profile_generate(gen: Callable[[int], Callable[[], Any]], a: argparse.Namespace) -> Dict[str, Any]:
    """Per decode step of generate: the profile of n new tokens minus that of 1 (the prefill and
    the first token), over n - 1, by kernel name (compiled code has no module ranges)."""
    n = a.new_tokens
    long, short = profiled(gen(n), n - 1, a.device), profiled(gen(1), n - 1, a.device)
    per = {c: long["per_step_us"][c] - short["per_step_us"][c] for c in CATEGORIES}
    return {"per_decode_step": {"unit": long["unit"], "per_step_us": per, "total_us": sum(per.values())},
            "top_n_tokens": long["top"]}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
