"""End-to-end decode: a Llama-style transformers model, dense vs SparseFlow 2:4, tokens/s.

Random weights from a config with real 8B-class layer shapes (hidden 4096, intermediate 14336,
32 heads, 8 KV heads) and a few layers, fp16, greedy decode with a static KV cache, at
batch 1 and 16, eager and under CUDA graphs (transformers' compiled decode step,
``torch.compile(mode="reduce-overhead", fullgraph=True)``). The dense model's linear weights are pruned to 2:4 first, so dense and
sparse compute the same function (the dense timing is the same as for unpruned weights) and
their logits are compared. Prints one JSON object; writes it to ``--out`` too.

    python3 python/benchmarks/decode.py --layers 4 --new-tokens 32 --out $OUT/decode.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import traceback
from typing import Any, Callable, Dict, Optional, Tuple

import torch
from torch import nn

import sparseflow as sf


DEVICE = "cuda"


def build(
    layers: int,
    vocab: int,
    hidden: int = 4096,
    intermediate: int = 14336,
    *,
    heads: int = 32,
    kv_heads: int = 8,
    head_dim: Optional[int] = None,
    dtype: torch.dtype = torch.float16,
    max_positions: int = 4096,
    device: Optional[str] = None,
) -> nn.Module:
    """A ``transformers`` ``LlamaForCausalLM`` with random weights (seed 0), built directly on
    ``device`` (default: this module's ``DEVICE``) in ``dtype``, eval mode. Every 2-D parameter is
    drawn from N(0, 0.02), which keeps activations of a full-depth model in fp16 range.
    ``head_dim`` defaults to ``hidden / heads`` (set it for tensor-parallel shards)."""
    import transformers

    extra = {} if head_dim is None else {"head_dim": head_dim}
    config = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        rope_theta=500000.0,
        **extra,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device or DEVICE):
            model = transformers.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():  # small random weights keep activations in fp16 range
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    return model.eval()


def sparse_twin(dense: nn.Module, **sparsify_kwargs: Any) -> Tuple[nn.Module, Any]:
    """``(sparse, report)``: ``sf.sparsify`` of a copy of ``dense``, after which ``dense``'s
    converted linears hold the same 2:4-pruned weights (copied back from the sparse layers), so
    both models compute the same function and only the kernels differ. The dense timing is the
    same as for unpruned weights (dense GEMMs do not skip zeros)."""
    sparse, report = sf.sparsify(copy.deepcopy(dense), **sparsify_kwargs)
    with torch.no_grad():
        for row in report.sparsified:
            dense.get_submodule(row.name).weight.copy_(sparse.get_submodule(row.name).to_dense())
    return sparse, report


def generate(model: nn.Module, ids: torch.Tensor, new_tokens: int, graphs: bool) -> torch.Tensor:
    """Greedy decode with a static KV cache. ``graphs``: transformers compiles the decode step
    with ``torch.compile(mode="reduce-overhead", fullgraph=True)`` (CUDA graphs; prefill stays
    eager, as in transformers' own compiled generation); otherwise everything runs eagerly."""
    kwargs: Dict[str, Any] = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        cache_implementation="static",
        pad_token_id=0,
    )
    if graphs:
        from transformers import CompileConfig

        kwargs["compile_config"] = CompileConfig(fullgraph=True, mode="reduce-overhead", dynamic=False)
        return model.generate(ids, **kwargs)
    try:  # keep transformers from compiling by itself
        return model.generate(ids, disable_compile=True, **kwargs)
    except (TypeError, ValueError) as e:
        if "disable_compile" not in str(e):
            raise
        return model.generate(ids, **kwargs)


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn`` (CUDA-synchronized)."""
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def decode_tps(
    model: nn.Module, batch: int, prompt: int, new_tokens: int, repeats: int, graphs: bool
) -> Dict[str, float]:
    ids = torch.randint(1, model.config.vocab_size, (batch, prompt), device=DEVICE)
    generate(model, ids, new_tokens, graphs)  # warm-up (kernel compile / graph record)
    generate(model, ids, 1, graphs)
    full = timed(lambda: generate(model, ids, new_tokens, graphs), repeats)
    first = timed(lambda: generate(model, ids, 1, graphs), repeats)
    step = (full - first) / (new_tokens - 1)
    return {"tokens_per_s": batch / step, "ms_per_step": 1e3 * step, "prefill_plus_first_ms": 1e3 * first}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (smoke test)",
        "torch": torch.__version__,
        "config": {
            "hidden": 256 if args.smoke else 4096,
            "intermediate": 512 if args.smoke else 14336,
            "heads": 32,
            "kv_heads": 8,
            "layers": args.layers,
            "vocab": args.vocab,
            "dtype": "float16",
            "prompt": args.prompt,
            "new_tokens": args.new_tokens,
        },
        "results": {},
    }
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:
        out["error"] = "transformers is not installed"
        return out
    start = time.perf_counter()
    dense = build(args.layers, args.vocab, *((256, 512) if args.smoke else ()))
    t0 = time.perf_counter()
    sparse, report = sparse_twin(dense)  # dense = the pruned weights: both compute the same function
    out["sparsify_s"] = time.perf_counter() - t0
    out["report"] = report.summary()
    ids = torch.randint(1, args.vocab, (2, 16), device=DEVICE)
    with torch.no_grad():
        a, b = dense(ids).logits.float(), sparse(ids).logits.float()
    out["logits_rel_error"] = ((a - b).norm() / a.norm()).item()
    out["greedy_token_agreement"] = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    variants = [("dense", dense), ("sparse", sparse)]
    if args.pdl_ab and DEVICE == "cuda":
        # The same sparse model again (its own compiled graphs and kernel handles), run with
        # programmatic dependent launch on: an A/B of that launch mode end to end.
        variants.append(("sparse_pdl", copy.deepcopy(sparse)))
    for mode in args.modes:
        for batch in args.batches:
            for name, model in variants:
                key = f"{mode}/{name}/batch{batch}"
                if time.perf_counter() - start > args.budget_s:
                    out["results"][key] = {"error": f"skipped: over the {args.budget_s} s budget"}
                    continue
                try:
                    if name == "sparse_pdl":
                        sf.ops.set_programmatic_launch(True)
                    with torch.no_grad():
                        out["results"][key] = decode_tps(
                            model, batch, args.prompt, args.new_tokens, args.repeats, mode == "cuda_graphs"
                        )
                except Exception as e:  # record and go on: one failure should not hide the rest
                    out["results"][key] = {
                        "error": f"{type(e).__name__}: {e}"[:2000],
                        "trace": traceback.format_exc()[-3000:],
                    }
                finally:
                    if name == "sparse_pdl":
                        sf.ops.set_programmatic_launch(False)
                out["results"][key]["elapsed_s"] = time.perf_counter() - start
                print(key, json.dumps(out["results"][key])[:400], flush=True)
                if args.out:  # partial results survive a timeout
                    with open(args.out, "w") as f:
                        f.write(json.dumps(out, indent=2) + "\n")
    speedup = {}
    for mode in args.modes:
        for batch in args.batches:
            d = out["results"].get(f"{mode}/dense/batch{batch}", {})
            for name, suffix in (("sparse", ""), ("sparse_pdl", "/pdl")):
                r = out["results"].get(f"{mode}/{name}/batch{batch}", {})
                if "tokens_per_s" in d and "tokens_per_s" in r:
                    speedup[f"{mode}/batch{batch}{suffix}"] = r["tokens_per_s"] / d["tokens_per_s"]
    out["sparse_over_dense"] = speedup
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--prompt", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--modes", nargs="+", default=["eager", "cuda_graphs"], choices=["eager", "cuda_graphs"])
    p.add_argument("--budget-s", type=float, default=300.0, help="skip configurations started after this")
    p.add_argument("--out", default=None)
    p.add_argument(
        "--pdl-ab",
        action="store_true",
        help="also run the sparse model with programmatic dependent launch on (sm_90+)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU: checks the script, times nothing real")
    args = p.parse_args()
    if args.smoke:
        global DEVICE
        DEVICE = "cpu"
        args.vocab = min(args.vocab, 512)
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
