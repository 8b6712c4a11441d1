"""Model-wide channel permutations for ``sf.sparsify(..., permute=True)``.

A permutation of a layer's input channels changes which weights share a 2:4 group, so 2:4
keeps more; it costs nothing at run time when the layer that produces those channels has its
output rows permuted alike (the model computes exactly the same function). Applied only
where the module structure is recognised (anything else is left alone):

* **gated MLP** (any module with ``nn.Linear`` ``gate_proj``, ``up_proj``, ``down_proj`` whose
  ``forward`` is ``down_proj(act_fn(gate_proj(x)) * up_proj(x))``: transformers' Llama,
  Mistral, Qwen2/3 MLPs): the intermediate channels (gate/up rows, down_proj columns).
* **Llama-style attention** (transformers' ``LlamaAttention``, ``MistralAttention``,
  ``Qwen2Attention``, ``Qwen3Attention`` with ``v_proj``/``o_proj`` and a ``config`` giving
  ``num_attention_heads``/``num_key_value_heads``): the value channels within each head,
  v_proj rows with o_proj columns. With grouped-query attention one value head feeds several
  query heads; its permutation is applied to the o_proj columns of every query head reading it.
* **BERT layers** (transformers' ``BertLayer``, ``RobertaLayer``): ``intermediate.dense`` rows
  with ``output.dense`` columns (GELU is elementwise), and ``attention.self.value`` rows with
  ``attention.output.dense`` columns within each head.

The permutation is chosen for the consumer (down_proj, o_proj) by :func:`find_permutation`
from its weight and, with calibration, the norms of its inputs (``|W|·‖X_j‖``, Wanda's score).
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .prune import Calibration, find_permutation, permute_attention_values, permute_in_features, permute_out_features

__all__ = ["PermuteSite", "find_sites", "apply_permutations"]

_LLAMA_ATTENTION = ("LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention")
_BERT_LAYER = ("BertLayer", "RobertaLayer")
_MLP_FORWARD = re.compile(r"self\.down_proj\(self\.act_fn\(self\.gate_proj\((\w+)\)\)\*self\.up_proj\(\1\)\)")


@dataclass
class PermuteSite:
    """One place a permutation is free: ``producers`` (output rows) feed ``consumer`` (input
    columns). ``heads = (num_heads, num_kv_heads, head_dim)`` for attention (within-head)."""

    kind: str  # "mlp" or "attention"
    producers: List[str]
    consumer: str
    heads: Optional[Tuple[int, int, int]] = None


def _is_llama_mlp(module: nn.Module) -> bool:
    if not all(isinstance(getattr(module, a, None), nn.Linear) for a in ("gate_proj", "up_proj", "down_proj")):
        return False
    try:
        source = re.sub(r"\s+", "", inspect.getsource(type(module).forward))
    except (OSError, TypeError):
        return False
    return bool(_MLP_FORWARD.search(source))


def _attention_heads(module: nn.Module) -> Optional[Tuple[int, int, int]]:
    cfg = getattr(module, "config", None)
    heads = getattr(cfg, "num_attention_heads", None)
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    dim = getattr(module, "head_dim", None)
    v, o = getattr(module, "v_proj", None), getattr(module, "o_proj", None)
    if not (isinstance(heads, int) and isinstance(kv, int) and isinstance(dim, int)):
        return None
    if not (isinstance(v, nn.Linear) and isinstance(o, nn.Linear)) or heads % kv:
        return None
    if v.out_features != kv * dim or o.in_features != heads * dim:
        return None
    return heads, kv, dim


def find_sites(model: nn.Module, prefix: str = "") -> List[PermuteSite]:
    """Every recognised permutation site of ``model`` (paths under ``prefix``)."""
    sites: List[PermuteSite] = []
    pre = f"{prefix}." if prefix else ""
    for name, module in model.named_modules():
        p = f"{pre}{name}." if name else pre
        cls = type(module).__name__
        if _is_llama_mlp(module):
            sites.append(PermuteSite("mlp", [p + "gate_proj", p + "up_proj"], p + "down_proj"))
        elif cls in _LLAMA_ATTENTION and type(module).__module__.startswith("transformers."):
            heads = _attention_heads(module)
            if heads is not None:
                sites.append(PermuteSite("attention", [p + "v_proj"], p + "o_proj", heads))
        elif cls in _BERT_LAYER and type(module).__module__.startswith("transformers."):
            sites.extend(_bert_sites(module, p))
    return sites


def _bert_sites(layer: nn.Module, p: str) -> List[PermuteSite]:
    out: List[PermuteSite] = []
    try:
        inter, outp = layer.intermediate.dense, layer.output.dense
        value, odense = layer.attention.self.value, layer.attention.output.dense
        heads, dim = int(layer.attention.self.num_attention_heads), int(layer.attention.self.attention_head_size)
    except AttributeError:
        return out
    if all(isinstance(m, nn.Linear) for m in (inter, outp)) and inter.out_features == outp.in_features:
        out.append(PermuteSite("mlp", [p + "intermediate.dense"], p + "output.dense"))
    if isinstance(value, nn.Linear) and isinstance(odense, nn.Linear) and value.out_features == heads * dim:
        if odense.in_features == heads * dim and not getattr(layer.attention.self, "is_decoder", False):
            heads3 = (heads, heads, dim)
            out.append(PermuteSite("attention", [p + "attention.self.value"], p + "attention.output.dense", heads3))
    return out


def head_permutations(o_proj: nn.Linear, heads: Tuple[int, int, int], norms: Optional[Tensor]) -> Tensor:
    """``[num_kv_heads, head_dim]``: per value head, the permutation of its channels that keeps
    most of ``|W_o|·‖X_j‖`` over the o_proj columns of every query head that reads it."""
    n_heads, n_kv, dim = heads
    w = o_proj.weight.detach().to("cpu", torch.float32)
    if norms is not None:
        w = w * norms.to(torch.float32)[None, :]
    rep = n_heads // n_kv
    perms = []
    for g in range(n_kv):
        cols = [w[:, h * dim : (h + 1) * dim] for h in range(g * rep, (g + 1) * rep)]
        perms.append(find_permutation(torch.cat(cols, dim=0).contiguous()))
    return torch.stack(perms)


def apply_permutations(
    model: nn.Module,
    sites: Sequence[PermuteSite],
    run: Optional[Callable[[], None]],
    scope: Optional[nn.Module] = None,
    prefix: str = "",
) -> Dict[str, str]:
    """Chooses and applies the permutation of every site. ``run()`` runs ``scope`` (default:
    the model) on calibration inputs; the consumers' inputs are captured from it (``None``:
    weights only). Returns ``{layer path: what was permuted}`` for the report."""
    scope = scope if scope is not None else model
    pre = f"{prefix}." if prefix else ""

    def local(path: str) -> nn.Module:
        return scope.get_submodule(path[len(pre) :])

    cals: Dict[str, Calibration] = {}
    sq: Dict[str, Tensor] = {}
    handles = []
    if run is not None:
        for site in sites:

            def hook(_m: nn.Module, args: Tuple[Tensor, ...], site: PermuteSite = site) -> None:
                x = args[0].detach().reshape(-1, args[0].shape[-1]).to("cpu", torch.float32)
                if site.kind == "mlp":
                    cals.setdefault(site.consumer, Calibration(int(x.shape[-1]))).add(x)
                else:
                    sq[site.consumer] = sq.get(site.consumer, 0) + (x.double() ** 2).sum(0)

            handles.append(local(site.consumer).register_forward_pre_hook(hook))
        try:
            run()
        finally:
            for h in handles:
                h.remove()
    notes: Dict[str, str] = {}
    for site in sites:
        consumer = local(site.consumer)
        producers = [local(p) for p in site.producers]
        short = ", ".join(p.rsplit(".", 1)[-1] for p in site.producers)
        if site.kind == "mlp":
            perm = find_permutation(consumer, cals.get(site.consumer))
            for prod in producers:
                permute_out_features(prod, perm)
            permute_in_features(consumer, perm)
            moved = int((perm != torch.arange(perm.numel())).sum())
            notes[site.consumer] = f"input channels permuted with the rows of {short} ({moved} of {perm.numel()} moved)"
        elif site.heads is not None:
            norms = sq[site.consumer].sqrt() if site.consumer in sq else None
            perms = head_permutations(consumer, site.heads, norms)
            permute_attention_values(producers[0], consumer, perms, num_heads=site.heads[0])
            moved = int((perms != torch.arange(site.heads[2])[None, :]).sum())
            notes[site.consumer] = (
                f"input channels permuted within each head with the rows of {short} "
                f"({moved} of {perms.numel()} moved, {site.heads[1]} value heads)"
            )
        for p in site.producers:
            notes[p] = f"output rows permuted for {site.consumer.rsplit('.', 1)[-1]}"
    return notes
