"""End-to-end decode: a Llama-style transformers model, dense vs SparseFlow 2:4, tokens/s.

Random weights from a config with real 8B-class layer shapes (hidden 4096, intermediate 14336,
32 heads, 8 KV heads) and a few layers, fp16, greedy decode with a static KV cache, at
batch 1 and 16, eager and under CUDA graphs (``torch.compile(mode="reduce-overhead")`` on the
model's forward). The dense model's linear weights are pruned to 2:4 first, so dense and
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
from typing import Any, Callable, Dict

import torch
from torch import nn

import sparseflow as sf


def build(layers: int, vocab: int) -> nn.Module:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=4096, intermediate_size=14336, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=4096, rope_theta=500000.0,
    )
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with torch.device("cuda"):
            model = transformers.LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    with torch.no_grad():  # small random weights keep activations in fp16 range
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.02)
    return model.eval()


def prune_in_place(model: nn.Module) -> None:
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and name != "lm_head":
                m.weight.copy_(sf.decompress(*sf.compress(m.weight)))


def generate(model: nn.Module, ids: torch.Tensor, new_tokens: int) -> torch.Tensor:
    kwargs: Dict[str, Any] = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                  cache_implementation="static", pad_token_id=0)
    try:  # keep transformers from compiling by itself: we choose eager vs graphs
        return model.generate(ids, disable_compile=True, **kwargs)
    except (TypeError, ValueError) as e:
        if "disable_compile" not in str(e):
            raise
        return model.generate(ids, **kwargs)


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``fn`` (CUDA-synchronized)."""
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def decode_tps(model: nn.Module, batch: int, prompt: int, new_tokens: int, repeats: int) -> Dict[str, float]:
    ids = torch.randint(1, model.config.vocab_size, (batch, prompt), device="cuda")
    generate(model, ids, new_tokens)  # warm-up (kernel compile / graph record)
    generate(model, ids, 1)
    full = timed(lambda: generate(model, ids, new_tokens), repeats)
    first = timed(lambda: generate(model, ids, 1), repeats)
    step = (full - first) / (new_tokens - 1)
    return {"tokens_per_s": batch / step, "ms_per_step": 1e3 * step, "prefill_plus_first_ms": 1e3 * first}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "config": {"hidden": 4096, "intermediate": 14336, "heads": 32, "kv_heads": 8, "layers": args.layers,
                   "vocab": args.vocab, "dtype": "float16", "prompt": args.prompt, "new_tokens": args.new_tokens},
        "results": {},
    }
    try:
        import transformers

        out["transformers"] = transformers.__version__
    except ImportError:
        out["error"] = "transformers is not installed"
        return out
    dense = build(args.layers, args.vocab)
    prune_in_place(dense)
    t0 = time.perf_counter()
    sparse, report = sf.sparsify(copy.deepcopy(dense))
    out["sparsify_s"] = time.perf_counter() - t0
    out["report"] = report.summary()
    ids = torch.randint(1, args.vocab, (2, 16), device="cuda")
    with torch.no_grad():
        a, b = dense(ids).logits.float(), sparse(ids).logits.float()
    out["logits_rel_error"] = ((a - b).norm() / a.norm()).item()
    out["greedy_token_agreement"] = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    for mode in args.modes:
        for name, base in (("dense", dense), ("sparse", sparse)):
            model = base
            if mode == "cuda_graphs":  # an instance attribute shadows the class's forward
                model.forward = torch.compile(base.forward, mode="reduce-overhead", fullgraph=True)
            for batch in args.batches:
                key = f"{mode}/{name}/batch{batch}"
                try:
                    with torch.no_grad():
                        out["results"][key] = decode_tps(model, batch, args.prompt, args.new_tokens, args.repeats)
                except Exception as e:  # record and go on: one failure should not hide the rest
                    out["results"][key] = {"error": f"{type(e).__name__}: {e}"[:2000], "trace": traceback.format_exc()[-3000:]}
                print(key, json.dumps(out["results"][key])[:300], flush=True)
            if "forward" in model.__dict__:
                del model.forward
            torch._dynamo.reset()
    speedup = {}
    for mode in args.modes:
        for batch in args.batches:
            d = out["results"].get(f"{mode}/dense/batch{batch}", {})
            s = out["results"].get(f"{mode}/sparse/batch{batch}", {})
            if "tokens_per_s" in d and "tokens_per_s" in s:
                speedup[f"{mode}/batch{batch}"] = s["tokens_per_s"] / d["tokens_per_s"]
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
    p.add_argument("--out", default=None)
    args = p.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
