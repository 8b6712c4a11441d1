"""The end-to-end benchmark (python/benchmarks/e2e.py, issue 29) on the CPU with a 2-layer,
hidden-64 Llama, so the script the GPU machine runs cannot rot: every case's code path runs
for the dense, sparse and projection-fused sparse models (graph capture and torch.compile are
CUDA-only and say so), results are resumable, and the profiler attribution puts SparseFlow's
linears where they belong."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[2] / "python" / "benchmarks"
TINY = ["--device", "cpu", "--model", "tiny", "--prompt", "16", "--prefill-batches", "2", "--decode-batches", "2",
        "--context", "8", "--steps", "2", "--new-tokens", "3", "--repeats", "1", "--agreement-positions", "16",
        "--greedy-prompt", "4", "--greedy-tokens", "4"]  # fmt: skip


@pytest.fixture(scope="module")
def e2e():
    pytest.importorskip("transformers")
    sys.path.insert(0, str(BENCH))
    try:
        import e2e as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_e2e_smoke_resumes_and_attributes(e2e, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "e2e.json"
    # A first run stops after part of the plan (as a device visit that hit its time limit would) ...
    assert e2e.main(TINY + ["--cases", "ttft,decode_graph/", "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    assert set(first["cases"]) == {"ttft/dense", "ttft/sparse", "ttft/sparse_fused"} | {
        f"{p}decode_graph/{m}/batch2" for p in ("", "profile/") for m in ("dense", "sparse", "sparse_fused")
    }
    # ... and the next run does only what is left.
    assert e2e.main(TINY + ["--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert len(rep["runs"]) == 2
    assert not set(rep["runs"][1]["ran"]) & set(first["cases"])
    cases = rep["cases"]
    assert set(cases) == set(e2e.case_plan(e2e.argparse.Namespace(decode_batches=[2], prefill_batches=[2]))) | {
        f"profile/{k}" for k in cases if k.startswith(("prefill", "decode_graph", "decode_generate/"))
    }
    assert not rep["summary"]["errors"], rep["summary"]["errors"]
    # Decode steps attend over the grouped KV heads in place (the tiny model has 4 heads on 2).
    assert rep["config"]["attention"] == e2e.PACKED_GQA
    for key, r in cases.items():
        if key.startswith("decode_graph"):
            assert r["check_rel_error"] < 1e-2, (key, r)  # the cached step computes the uncached logits
            assert r["not_measured"].startswith(e2e.CPU_GRAPH)
        if key.startswith(("decode_graph_compiled/", "prefill_compiled/")):
            # No Inductor on the CPU: the plain forward ran, and the case says so.
            assert r["compiled"] is False and e2e.CPU_INDUCTOR in r["not_measured"], (key, r)
        if key.startswith("decode_generate/"):
            assert r["not_measured"] == e2e.CPU_COMPILE
        if key.startswith("prefill"):
            assert r["tokens"] == 32 and r["tokens_per_s"] > 0
    # CPU stand-ins are not measurements: only prefill (and time to first token) form ratios.
    assert set(rep["summary"]["sparse_over_dense"]) == {"prefill/batch2", "ttft (time, < 1 = sparse sooner)"}
    fused_ratios = set(rep["summary"]["sparse_fused_over_sparse"])
    assert fused_ratios == {"prefill/batch2", "ttft (time, < 1 = sparse_fused sooner)"}
    groups = rep["runs"][0]["fused_groups"]
    assert [g["status"] for g in groups] == ["fused", "fused"] and groups[0]["out_features"] == 256
    fusion = cases["fusion_check"]  # the same weights: the logits differ by rounding only
    assert fusion["top1_agreement"] == 1.0 and fusion["logits_rel_error"] < 1e-2
    assert rep["cases"]["ttft/sparse"]["ttft_ms"] > 0
    agree = cases["agreement"]
    assert agree["positions"] == 16 and agree["top1_agreement"] > 0.9 and agree["logits_rel_error"] < 0.05
    mem = rep["summary"]["memory_sparse_over_dense"]
    assert 0.5 < mem["converted_linear_weights"] <= 0.5625  # values + 4-bit codes per kept pair
    assert mem["converted_linear_weights"] < mem["all_linear_weights"] < 0.75 and mem["whole_model"] < 1  # lm_head stays
    targets = rep["summary"]["targets"]  # the targets, judged only on measured figures
    assert targets["memory/converted_linear_weights"]["met"] and targets["agreement"]["target"] == 0.99
    assert not any(k.startswith("decode_graph/") for k in targets)
    # The module ranges put each op under the innermost category that ran it.
    for name in ("dense", "sparse", "sparse_fused"):
        prof = cases[f"profile/decode_graph/{name}/batch2"]["eager_module_ranges"]["per_step_us"]
        assert prof["dense_linear"] > 0 and prof["attention"] > 0 and prof["norm"] > 0
        assert (prof["sparseflow_linear"] > 0) == (name != "dense")
    # Nothing left: a third run builds nothing.
    assert e2e.main(TINY + ["--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["runs"]) == 2


def test_e2e_refuses_another_configuration(e2e, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "e2e.json"
    out.write_text(json.dumps({"schema": e2e.SCHEMA, "config": {"model": "tiny", "layers": 3}, "cases": {}}))
    with pytest.raises(SystemExit, match="another configuration"):
        e2e.main(TINY + ["--out", str(out)])


@pytest.mark.parametrize(
    "name, category",
    [
        ("sparseflow_decode_bf16_silu_m16n64k128_w4s3_sk1", "sparseflow_linear"),
        ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNT", "dense_linear"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "dense_linear"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128>>", "attention"),
        ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", "norm"),
        ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>", "other"),
    ],
)
def test_kernel_category(e2e, name: str, category: str) -> None:
    assert e2e.kernel_category(name) == category


def test_ttft_that_compiled_kernels_says_so(e2e) -> None:
    cases = {
        "ttft/dense": {"ttft_ms": 1300.0, "kernel_cache_files_before": 40, "kernel_cache_files_after": 40},
        "ttft/sparse": {"ttft_ms": 13100.0, "prepare_ms": 13050.0,
                        "kernel_cache_files_before": 40, "kernel_cache_files_after": 61},
        "ttft/sparse_fused": {"ttft_ms": 1170.0, "kernel_cache_files_before": 61, "kernel_cache_files_after": 61},
    }  # fmt: skip
    summary = e2e.summarize({"cases": cases})
    assert list(summary["ttft_includes_compile"]) == ["ttft/sparse"]
    assert "21 kernel files" in summary["ttft_includes_compile"]["ttft/sparse"]
    assert "ttft_includes_compile" not in e2e.summarize({"cases": {"ttft/dense": cases["ttft/dense"]}})


def test_flex_decode_attention_matches_sdpa(e2e, tmp_path: pathlib.Path) -> None:
    """``--attention flex_decode`` on the CPU (FlexAttention's reference implementation, no
    graph: the mask buffers are exercised, the kernel is not): every decode step computes the
    uncached logits."""
    out = tmp_path / "e2e-flex.json"
    args = TINY + ["--attention", "flex_decode", "--cases", "decode_graph/dense,decode_graph/sparse/", "--no-profile"]
    assert e2e.main(args + ["--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert not rep["summary"]["errors"], rep["summary"]["errors"]
    assert rep["config"]["attention"] == "flex_decode"
    for key in ("decode_graph/dense/batch2", "decode_graph/sparse/batch2"):
        assert rep["cases"][key]["check_rel_error"] < 1e-2, rep["cases"][key]


def test_causal_skip_mask_is_static(e2e) -> None:
    """Only a plain causal prefill without padding gets no mask (SDPA's causal kernel); every
    other case keeps transformers' mask, decided without reading any tensor's data."""
    pytest.importorskip("transformers")
    import attention

    from transformers.masking_utils import and_masks, causal_mask_function, sdpa_mask

    torch = e2e.torch
    q = "q_length" if "q_length" in e2e.inspect.signature(sdpa_mask).parameters else "cache_position"
    span = lambda n: n if q == "q_length" else torch.arange(n)  # noqa: E731
    base = dict(batch_size=1, kv_length=8, attention_mask=None, allow_is_causal_skip=True, **{q: span(8)})
    assert attention.causal_skip_mask(**base) is None
    keeps = {
        "skip forbidden (a static cache)": dict(allow_is_causal_skip=False),
        "padding": dict(attention_mask=torch.ones(1, 8, dtype=torch.bool)),
        "sliding window": dict(local_size=4),
        "cached keys before": dict(kv_offset=2),
        "offset unknown statically": dict(q_offset=torch.tensor(0)),
        "another mask function": dict(mask_function=and_masks(causal_mask_function, lambda b, h, qi, kv: kv >= 0)),
        "one query (a decode step)": dict(kv_length=1, **{q: span(1)}),
    }
    for why, change in keeps.items():
        args = {**base, **change}
        if q == "cache_position" and "q_offset" in change:
            continue  # older releases take no q_offset
        # Not skipped here: the result is whatever transformers builds (a mask, or its own skip
        # where eager code can see the data) — never a skip decided by causal_skip_mask.
        got, want = attention.causal_skip_mask(**args), sdpa_mask(**args)
        assert (got is None) == (want is None), why
        assert got is None or torch.equal(got, want), why
    assert attention.causal_skip_mask(**{**base, "local_size": 4}) is not None  # the window must be masked


def test_blocks_through_last_allowed(e2e) -> None:
    import attention

    torch = e2e.torch
    allowed = torch.zeros(4, 300, dtype=torch.bool)
    allowed[1, :5] = True  # block 0
    allowed[2, 20:129] = True  # blocks 0-1, left padding
    allowed[3, 299] = True  # the last, partial block
    assert attention.blocks_through_last_allowed(allowed, 128).tolist() == [0, 1, 2, 3]


def test_compiled_prefill_runs_the_causal_kernel(e2e) -> None:
    """Traced by dynamo (as ``prefill_compiled`` is), a prefill of unpadded sequences reaches
    attention with no mask — SDPA's causal kernel — and computes what eager code does."""
    import attention

    model = e2e.decode.build(2, 256, 64, 128, heads=4, kv_heads=2, head_dim=16, dtype=e2e.torch.float32,
                             device="cpu", max_positions=64)  # fmt: skip
    attention.use_attention(model, attention.PACKED_GQA)
    from transformers import AttentionInterface

    masks = []

    def spy(module, query, key, value, mask, **kw):  # type: ignore[no-untyped-def]
        masks.append(mask)
        return attention.packed_gqa_attention(module, query, key, value, mask, **kw)

    AttentionInterface.register(attention.PACKED_GQA, spy)
    try:
        ids = e2e.torch.randint(1, 256, (2, 16))
        with e2e.torch.no_grad(), attention.packing_checked_eagerly():
            ref = model(ids, use_cache=False).logits
            got = e2e.torch.compile(model, backend="eager")(ids, use_cache=False).logits
    finally:
        AttentionInterface.register(attention.PACKED_GQA, attention.packed_gqa_attention)
    assert masks and all(m is None for m in masks)
    assert e2e.torch.equal(got, ref)


@pytest.mark.parametrize("traced", [False, True])
def test_flex_decode_matches_sdpa_with_any_mask(e2e, traced: bool) -> None:
    """One decode step through ``flex_decode`` — eager (mask buffers) or traced by dynamo (block
    mask built in the graph) — equals SDPA over the repeated KV heads, for a static cache's causal
    mask with and without left padding. (The reference implementation ignores the block counts:
    ``test_blocks_through_last_allowed`` checks those.)"""
    import attention

    torch = e2e.torch
    torch.manual_seed(0)
    b, heads, kv_heads, dim, length = 3, 4, 2, 16, 300  # three 128-blocks, the last one partial
    q = torch.randn(b, heads, 1, dim)
    k, v = torch.randn(b, kv_heads, length, dim), torch.randn(b, kv_heads, length, dim)
    filled = torch.tensor([5, 140, 290])  # positions written so far, per sequence
    allowed = torch.arange(length)[None, :] < filled[:, None]
    allowed[1, :20] = False  # left padding
    mask = allowed[:, None, None, :]

    class Layer(torch.nn.Module):
        num_key_value_groups = heads // kv_heads

        def forward(self, q, k, v, mask):  # type: ignore[no-untyped-def]
            return attention.flex_decode_attention(self, q, k, v, mask, scaling=dim**-0.5)[0]

    layer = Layer()
    run = torch.compile(layer, backend="eager") if traced else layer
    got = run(q, k, v, mask)
    rep = lambda t: t.repeat_interleave(heads // kv_heads, dim=1)  # noqa: E731
    ref = torch.nn.functional.scaled_dot_product_attention(q, rep(k), rep(v), attn_mask=mask).transpose(1, 2)
    assert got.shape == ref.shape == (b, 1, heads, dim)
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-4), (got - ref).abs().max()
