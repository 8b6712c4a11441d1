"""Sparsify a Llama model to 2:4 with SparseFlow, check it, generate, save and load.

    python examples/sparsify_llama.py                      # a small random Llama (no download)
    python examples/sparsify_llama.py --model path/to/llama --device cuda --dtype bfloat16

The default model is built from a config with random weights, so its text is noise; what
matters is that the sparse model computes the same function as the pruned dense one.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import sparseflow as sf


def build(args: argparse.Namespace) -> nn.Module:
    import transformers

    dtype = getattr(torch, args.dtype)
    if args.model:
        return transformers.AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype).to(args.device).eval()
    config = transformers.LlamaConfig(
        vocab_size=1024,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).to(args.device, dtype).eval()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="a local Hugging Face model directory (default: a small random Llama)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--dtype",
        default="float16" if torch.cuda.is_available() else "float32",
        choices=["float16", "bfloat16", "float32"],
    )
    p.add_argument("--save", help="directory to save the sparse model to (default: a temporary one)")
    args = p.parse_args()

    dense = build(args)
    t0 = time.perf_counter()
    sparse, report = sf.sparsify(copy.deepcopy(dense))  # lm_head stays dense by default
    print(report)
    print(f"sparsify took {time.perf_counter() - t0:.2f} s\n")

    # The pruned dense model is the exact reference for the sparse one.
    with torch.no_grad():
        for row in report.sparsified:
            dense.get_submodule(row.name).weight.copy_(sparse.get_submodule(row.name).to_dense())
    ids = torch.randint(0, dense.config.vocab_size, (1, 12), device=args.device)
    with torch.no_grad():
        a, b = dense(ids).logits.float(), sparse(ids).logits.float()
    print(f"logits vs pruned dense: rel error {((a - b).norm() / a.norm()).item():.2e}")

    out = sparse.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    print("generated ids:", out[0, ids.shape[1] :].tolist())

    target = Path(args.save) if args.save else Path(tempfile.mkdtemp()) / "llama-2of4"
    sf.save(sparse, target, force=bool(args.save))
    loaded = sf.load(target, copy.deepcopy(build(args)) if args.model else None)
    loaded.to(args.device)
    with torch.no_grad():
        same = torch.equal(loaded(ids).logits, sparse(ids).logits)
    print(f"saved to {target}; reloaded model gives identical logits: {same}")


if __name__ == "__main__":
    main()
