#!/usr/bin/env python3
"""GPU machine: decode attention of one Llama-3-8B layer (32 query heads on 8 KV heads of 128,
bf16, 513 tokens of a 747-token static cache, batch 1 / 16 / 64), each candidate replayed from
a CUDA graph of 20 calls (median of 7 timings) and checked against SDPA in float32 — what the
e2e benchmark's ``--attention`` choices were picked from (docs/PERFORMANCE.md, "H200 end to end").

    python3 scripts/device/attention_dev.py variants OUT.json   # SDPA backends, matmuls, FlexAttention
    python3 scripts/device/attention_dev.py e2e OUT.json        # e2e's flex_decode path vs packed SDPA

``variants`` builds FlexAttention's block mask from the mask function (empty blocks skipped,
full blocks unmasked) once per batch; ``e2e`` times ``python/benchmarks/attention.py``'s
``flex_decode``, whose blocks are all partial so that one mask object serves every step.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict

import torch
import torch.nn.functional as F

H, HKV, D, L, CTX = 32, 8, 128, 747, 513
G = H // HKV
BATCHES = (1, 16, 64)


def timeit(fn: Callable[[], Any], n: int = 200) -> float:
    """Median µs per call of ``fn`` replayed from a CUDA graph of 20 calls."""
    fn()
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(20):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(7):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(n // 20):
            graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / n)
    return sorted(times)[3]


def measure(fn: Callable[[], torch.Tensor], ref: torch.Tensor, batch: int) -> Dict[str, Any]:
    try:
        out = fn().reshape(batch, H, 1, D).float()
        return {"us": timeit(fn), "rel_err": float((out - ref).norm() / ref.norm())}
    except Exception as e:  # one candidate failing (an unsupported backend) must not hide the rest
        return {"error": repr(e)[:300]}


def variants(batch: int) -> Dict[str, Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    torch.manual_seed(0)
    q = torch.randn(batch, H, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, HKV, L, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(batch, HKV, L, D, device="cuda", dtype=torch.bfloat16)
    k[:, :, CTX:] = 0
    v[:, :, CTX:] = 0
    pos = torch.full((batch,), CTX - 1, device="cuda", dtype=torch.int64)
    mask = (torch.arange(L, device="cuda") <= pos[:, None])[:, None, None, :]
    qp = q.reshape(batch, HKV, G, D)
    ref = F.scaled_dot_product_attention(qp.float(), k.float(), v.float(), attn_mask=mask).reshape(batch, H, 1, D)
    res: Dict[str, Any] = {"sdpa_default": measure(lambda: F.scaled_dot_product_attention(qp, k, v, attn_mask=mask), ref, batch)}
    for backend in ("MATH", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION"):

        def sdpa(backend: str = backend) -> torch.Tensor:
            with sdpa_kernel(getattr(SDPBackend, backend)):
                return F.scaled_dot_product_attention(qp, k, v, attn_mask=mask)

        res["sdpa_" + backend.lower()] = measure(sdpa, ref, batch)

    def matmuls() -> torch.Tensor:
        s = torch.matmul(qp, k.transpose(-1, -2)) * (D**-0.5)
        s = s.float().masked_fill(~mask, float("-inf")).softmax(-1).to(v.dtype)
        return torch.matmul(s, v)

    res["manual_eager"] = measure(matmuls, ref, batch)
    res["manual_compiled"] = measure(torch.compile(matmuls), ref, batch)
    flex = torch.compile(flex_attention, dynamic=False)
    block_mask = create_block_mask(lambda b, h, qi, kv: kv <= pos[b], batch, None, 1, L, device="cuda")
    res["flex_compiled"] = measure(lambda: flex(q, k, v, block_mask=block_mask, enable_gqa=True), ref, batch)
    score = lambda s, b, h, qi, kv: torch.where(kv <= pos[b], s, -float("inf"))  # noqa: E731
    res["flex_compiled_nomask_scoremod"] = measure(lambda: flex(q, k, v, score_mod=score, enable_gqa=True), ref, batch)
    return res


def e2e_path(batch: int) -> Dict[str, Any]:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python", "benchmarks"))
    import attention

    q = torch.randn(batch, H, 1, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, HKV, L, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(batch, HKV, L, D, device="cuda", dtype=torch.bfloat16)
    mask = (torch.arange(L, device="cuda") < CTX)[None, None, None, :].expand(batch, 1, 1, L).contiguous()
    qp = q.reshape(batch, HKV, G, D)
    ref = F.scaled_dot_product_attention(qp.float(), k.float(), v.float(), attn_mask=mask).reshape(batch, H, 1, D)
    return {
        "flex_decode": measure(lambda: attention._FLEX(q, k, v, mask, None), ref, batch),
        "packed_sdpa": measure(lambda: F.scaled_dot_product_attention(qp, k, v, attn_mask=mask), ref, batch),
    }


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("variants", "e2e"):
        print(__doc__, file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("attention_dev.py needs CUDA", file=sys.stderr)
        return 2
    run = variants if sys.argv[1] == "variants" else e2e_path
    out = {}
    for batch in BATCHES:
        out[f"batch{batch}"] = run(batch)
        print(batch, json.dumps(out[f"batch{batch}"]), flush=True)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
