"""The attention implementations ``e2e.py --attention`` offers, registered with transformers.

Attention is the same for the dense and the sparse model, so it never favours one of them, but
it is part of every step both take: a slow one hides the linears' gain. transformers 5.17's
decode step through SDPA expands the KV cache to every query head (``repeat_kv``) and then runs
a prefill-shaped attention kernel for one query token; serving engines attend over the grouped
heads with split-KV decoding kernels (FlashInfer, FlashAttention's decoding path). The choices:

* ``sdpa``: transformers' own.
* ``sdpa_packed_gqa`` (e2e's default): a decode step's query heads are packed per KV head as rows
  of one SDPA call (``(B, H, 1, D)`` → ``(B, H_kv, H / H_kv, D)``), the mask broadcast over them:
  no expanded copy of the cache. PyTorch picks cuDNN's flash kernel for it: on the H200 at
  Llama-3-8B shapes (context 513 of a 747-token static cache) 24 / 43 / 129 µs per layer at
  batch 1 / 16 / 64.
* ``flex_decode``: the same, except a decode step on CUDA runs FlexAttention's decoding kernel
  (split-KV, GQA in place), reading transformers' mask through ``mask_mod``. Run eagerly (and
  captured as a CUDA graph), the kernel is compiled on its own and the mask goes through a
  buffer kept per shape, every block partial, so graphs replay each step's mask and nothing
  recompiles (9.3 / 30 / 73 µs on the shapes above). Inside a compiled model the block mask is
  built in the graph from the step's mask, skipping the cache's unfilled tail: no graph break
  around attention (a block-sparse mask measured 7.8 / 20 / 50 µs on its own).

Both packed forms also skip the causal mask of a prefill without padding under
``torch.compile`` (transformers 5.17 skips it only in eager code, where it can look at the data;
``packing_checked_eagerly`` runs its packed-sequence check outside the compiled graph for the
same reason): a compiled prefill
then runs SDPA's causal kernel instead of a masked one (2.7 against 6.9 ms of cuDNN attention
per forward of 2048 tokens on the H200, plus 1.2 ms building the mask).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import torch
from torch import nn

#: ``--attention`` names (transformers' ``sdpa`` plus the two registered here).
PACKED_GQA = "sdpa_packed_gqa"
FLEX_DECODE = "flex_decode"
ATTENTIONS = (PACKED_GQA, FLEX_DECODE, "sdpa")


def _sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          attention_mask: Optional[torch.Tensor], **kwargs: Any) -> Tuple[torch.Tensor, None]:  # fmt: skip
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def _decode_step(module: nn.Module, query: torch.Tensor, mask: Optional[torch.Tensor], kwargs: Dict[str, Any]) -> bool:
    """One query token per sequence, grouped KV heads and a mask shared by all heads: what the
    packed forms handle; anything else goes to SDPA unchanged."""
    shared_mask = mask is None or (mask.dim() == 4 and mask.shape[1] == 1 and mask.shape[2] == 1)
    grouped = getattr(module, "num_key_value_groups", 1) > 1
    return query.shape[2] == 1 and grouped and shared_mask and kwargs.get("position_bias") is None


def packed_gqa_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                         is_causal: Optional[bool] = None, **kwargs: Any) -> Tuple[torch.Tensor, None]:  # fmt: skip
    """``sdpa_packed_gqa``: a decode step's query heads as rows per KV head (see the module)."""
    if not _decode_step(module, query, attention_mask, kwargs):
        return _sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal,
                     **kwargs)  # fmt: skip
    b, heads, _, dim = query.shape
    groups = module.num_key_value_groups
    q = query.reshape(b, heads // groups, groups, dim)  # head h reads KV head h // groups (repeat_kv's order)
    mask = attention_mask
    if mask is not None:
        mask = mask[:, :, :, : key.shape[-2]]
    out = torch.nn.functional.scaled_dot_product_attention(q, key, value, attn_mask=mask, dropout_p=dropout, scale=scaling)
    return out.reshape(b, heads, 1, dim).transpose(1, 2).contiguous(), None


class _FlexDecode:
    """FlexAttention for one query token per sequence. Per (batch, cache length, device): an
    ``allowed`` buffer (which cache positions each sequence attends to) that every call copies
    transformers' mask into, and a ``BlockMask`` whose blocks are all partial with a ``mask_mod``
    reading that buffer — one object, so the compiled kernel never recompiles and a CUDA graph
    captured over a step replays with each step's mask."""

    BLOCK = 128

    def __init__(self) -> None:
        self.masks: Dict[Tuple[int, int, str], Tuple[torch.Tensor, Any]] = {}
        self.kernels: Dict[str, Callable[..., torch.Tensor]] = {}

    def block_mask(self, batch: int, length: int, device: torch.device) -> Tuple[torch.Tensor, Any]:
        key = (batch, length, str(device))
        if key not in self.masks:
            allowed = torch.ones(batch, length, dtype=torch.bool, device=device)
            every_block = torch.full((batch,), -(-length // self.BLOCK), dtype=torch.int32, device=device)
            self.masks[key] = (allowed, _partial_blocks(allowed, every_block))
        return self.masks[key]

    def __call__(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                 scaling: Optional[float]) -> torch.Tensor:  # fmt: skip
        kernel = self.kernels.get(query.device.type)
        if kernel is None:
            from torch.nn.attention.flex_attention import flex_attention

            # Compiled on CUDA (the fused decoding kernel); on the CPU the reference
            # implementation, which only tests the mask handling.
            kernel = torch.compile(flex_attention, dynamic=False) if query.is_cuda else flex_attention
            self.kernels[query.device.type] = kernel
        b, length = query.shape[0], key.shape[-2]
        allowed, block_mask = self.block_mask(b, length, query.device)
        allowed.copy_(_allowed(mask, b, length, query.device))
        return kernel(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=True)


_FLEX = _FlexDecode()


def _allowed(mask: Optional[torch.Tensor], batch: int, length: int, device: torch.device) -> torch.Tensor:
    """``(batch, length)`` bool: the cache positions each sequence attends to."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    m = mask[:, 0, 0, :length]
    m = m if m.dtype == torch.bool else m == 0  # an additive mask is 0 where allowed
    return m.expand(batch, length)  # a mask broadcast over the batch (one row) serves every sequence


def blocks_through_last_allowed(allowed: torch.Tensor, block: int) -> torch.Tensor:
    """``(batch,)`` int32: per sequence, how many ``block``-wide KV blocks reach its last allowed
    position (0 when none is)."""
    b, length = allowed.shape
    blocks = -(-length // block)
    used = torch.nn.functional.pad(allowed, (0, blocks * block - length)).view(b, blocks, block).any(-1)
    rank = torch.arange(1, blocks + 1, dtype=torch.int32, device=allowed.device)
    return (used.to(torch.int32) * rank).amax(-1)


def _partial_blocks(allowed: torch.Tensor, count: torch.Tensor) -> Any:
    """A decoding ``BlockMask`` over ``allowed`` (``(batch, length)``): per sequence its first
    ``count`` KV blocks, every one partial, so ``mask_mod`` reads ``allowed`` inside each — exact
    for any mask. Forward only (no q-block transpose)."""
    from torch.nn.attention.flex_attention import BlockMask

    b, length = allowed.shape
    blocks = -(-length // _FlexDecode.BLOCK)
    index = torch.arange(blocks, dtype=torch.int32, device=allowed.device).expand(b, 1, 1, blocks).contiguous()

    def mask_mod(bi: torch.Tensor, h: torch.Tensor, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        return allowed[bi, kv]

    return BlockMask.from_kv_blocks(count.view(b, 1, 1), index, BLOCK_SIZE=_FlexDecode.BLOCK, mask_mod=mask_mod,
                                    seq_lengths=(1, length), compute_q_blocks=False)  # fmt: skip


def _flex_decode_traced(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                        scaling: Optional[float]) -> torch.Tensor:  # fmt: skip
    """The decode step inside a compiled model: the block mask is built in the graph from this
    step's mask (Inductor fuses its few ops), so nothing breaks the graph around attention, and
    blocks after the last allowed position are skipped (the unfilled tail of a static cache).
    Blocks up to it are all partial, ``mask_mod`` masks inside them: exact for any mask (left
    padding included) without sorting blocks."""
    from torch.nn.attention.flex_attention import flex_attention

    allowed = _allowed(mask, query.shape[0], key.shape[-2], query.device)
    block_mask = _partial_blocks(allowed, blocks_through_last_allowed(allowed, _FlexDecode.BLOCK))
    return flex_attention(query, key, value, block_mask=block_mask, scale=scaling, enable_gqa=True)


@torch.compiler.disable
def _flex_decode_eager(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                       scaling: Optional[float]) -> torch.Tensor:  # fmt: skip
    # Reached only outside tracing (see _flex_decode); the decorator keeps it so if someone calls
    # it from compiled code: its mask buffers are Python state a graph would have to guard on.
    return _FLEX(query, key, value, mask, scaling)


def _flex_decode(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Optional[torch.Tensor],
                 scaling: Optional[float]) -> torch.Tensor:  # fmt: skip
    if torch.compiler.is_compiling():
        return _flex_decode_traced(query, key, value, mask, scaling)
    return _flex_decode_eager(query, key, value, mask, scaling)


def flex_decode_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: Optional[torch.Tensor], dropout: float = 0.0, scaling: Optional[float] = None,
                          is_causal: Optional[bool] = None, **kwargs: Any) -> Tuple[torch.Tensor, None]:  # fmt: skip
    """``flex_decode``: a decode step through FlexAttention's decoding kernel (see the module)."""
    if dropout or not _decode_step(module, query, attention_mask, kwargs):
        return packed_gqa_attention(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                    is_causal=is_causal, **kwargs)  # fmt: skip
    out = _flex_decode(query, key, value, attention_mask, scaling)
    return out.transpose(1, 2).contiguous(), None


def _zero(offset: Any) -> bool:
    # A StaticCache layer gives its offset as a device tensor: not known statically, so not plain
    # (and never turned into a Python bool: that would sync, or break a compiled graph).
    return isinstance(offset, int) and offset == 0


def causal_skip_mask(**kwargs: Any) -> Optional[torch.Tensor]:
    """transformers' SDPA mask, except a plain causal prefill without padding (as many queries as
    keys, nothing cached before them) gets no mask — SDPA then runs its causal kernel — also
    under ``torch.compile``, where transformers 5.17 materializes the mask because its own skip
    looks at the data. The conditions here are all static (shapes and arguments)."""
    from transformers.masking_utils import causal_mask_function, sdpa_mask

    cache_position = kwargs.get("cache_position")
    q_len = kwargs.get("q_length", cache_position.shape[0] if cache_position is not None else None)
    plain = (
        q_len is not None and q_len > 1 and q_len == kwargs.get("kv_length")
        and kwargs.get("allow_is_causal_skip", True) and kwargs.get("attention_mask") is None
        and kwargs.get("mask_function", causal_mask_function) is causal_mask_function
        and kwargs.get("local_size") is None and _zero(kwargs.get("kv_offset", 0)) and _zero(kwargs.get("q_offset", 0))
    )  # fmt: skip
    return None if plain else sdpa_mask(**kwargs)


@contextlib.contextmanager
def packing_checked_eagerly() -> Iterator[None]:
    """transformers looks for packed sequences in the position ids of a prefill without cache or
    padding mask; under ``torch.compile`` it cannot look at the data, assumes packing and builds
    a mask. Inside this context that one check runs outside the compiled graph (a graph break
    before the layers), so it sees that one sequence per row is not packed — what eager code
    concludes. Scoped to the compiled prefill cases: it is a graph break for everything else."""
    import transformers.masking_utils as masking

    find = getattr(masking, "find_packed_sequence_indices", None)  # (older releases: no such check)
    if find is None:
        yield
        return
    masking.find_packed_sequence_indices = torch.compiler.disable(find)
    try:
        yield
    finally:
        masking.find_packed_sequence_indices = find


def use_attention(model: nn.Module, name: str) -> None:
    """Sets ``model``'s attention implementation (``--attention``), registering the packed forms
    (their attention function and mask) with transformers first."""
    registered = {PACKED_GQA: packed_gqa_attention, FLEX_DECODE: flex_decode_attention}
    if name in registered:
        from transformers import AttentionInterface, AttentionMaskInterface

        AttentionInterface.register(name, registered[name])
        AttentionMaskInterface.register(name, causal_skip_mask)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:  # older transformers: the attribute the attention layers read
        model.config._attn_implementation = name
