"""Tensor parallelism on the CPU: shard rules in one process, then 2 gloo processes
(``tp_worker.py``, spawned once for the module) whose outputs must equal the single-process
sparse model's.

Tolerance: float32 on the CPU reference. A column-parallel rank computes whole output rows with
the same accumulation as the full layer, so its outputs are bit-identical (checked exactly). A
row-parallel layer sums two partial products in fp32 by ``all_reduce`` before the bias and the
activation, so it may differ by rounding: ``max |y_tp - y| <= 1e-5 * max(1, max |y|)``.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import sparseflow as sf
from sparseflow.ops import check_meta, decompress
from sparseflow.parallel import shard_bounds, shard_columns, shard_rows

from conftest import exact_24_weight

RTOL = 1e-5


def test_shard_bounds() -> None:
    assert shard_bounds(77, 2) == [(0, 39), (39, 77)]
    assert shard_bounds(200, 2, 8) == [(0, 104), (104, 200)]  # 13 + 12 groups of 8
    assert shard_bounds(196, 2, 8) == [(0, 104), (104, 196)]  # the last holds a partial byte
    assert shard_bounds(72, 4, 8) == [(0, 24), (24, 40), (40, 56), (56, 72)]
    with pytest.raises(ValueError, match="a rank would hold nothing"):
        shard_bounds(16, 3, 8)


@pytest.mark.parametrize("k", [200, 196, 72])
def test_shards_are_slices_of_the_weight(k: int) -> None:
    w = exact_24_weight(9, k, torch.float16)
    values, meta = sf.compress(w, prune=False)
    for start, stop in shard_bounds(k, 2, 8):
        v, m = shard_columns(values, meta, start, stop, k)
        check_meta(m, stop - start)  # valid codes and, for an odd group count, the padding nibble
        assert torch.equal(decompress(v, m), w[:, start:stop])
    for start, stop in shard_bounds(9, 2):
        v, m = shard_rows(values, meta, start, stop)
        assert torch.equal(decompress(v, m), w[start:stop])


def test_row_split_must_keep_whole_groups() -> None:
    values, meta = sf.compress(exact_24_weight(4, 64), prune=False)
    with pytest.raises(ValueError, match="multiple of 8"):
        shard_columns(values, meta, 4, 64, 64)


def test_parallel_layers_need_a_process_group() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        pytest.skip("a process group is initialized in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        sf.parallel.ColumnParallelSparseLinear.from_dense(torch.nn.Linear(8, 8))


def test_save_tp_writes_one_file_per_rank(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conftest import tiny_llama

    model, _ = sf.sparsify(tiny_llama(intermediate_size=200), progress=False)
    out = sf.save(model, tmp_path / "tp2", tp=2)
    manifest = json.loads((out / "sparseflow.json").read_text())
    tp = manifest["tensor_parallel"]
    assert tp["size"] == 2 and all((out / f).is_file() for f in tp["files"])
    assert tp["layers"]["model.layers.1.mlp.down_proj"] == {"split": "row", "bounds": [[0, 104], [104, 200]]}
    assert tp["layers"]["model.layers.0.self_attn.k_proj"] == {"split": "column", "bounds": [[0, 16], [16, 32]]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tp2"]  # the unsharded copy is gone
    with pytest.raises(ValueError, match="load it per rank"):
        sf.load(out, tiny_llama(intermediate_size=200))
    with pytest.raises(ValueError, match="do not split over 4 ranks"):
        sf.save(model, tmp_path / "tp4", tp=4)  # 2 KV heads over 4 ranks


@pytest.fixture(scope="module")
def tp_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Spawns the two gloo ranks once; both ranks' results per scenario."""
    pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    import tp_worker

    tmp = str(tmp_path_factory.mktemp("tp"))
    torch.multiprocessing.spawn(tp_worker.main, args=(tmp, os.path.dirname(__file__)), nprocs=tp_worker.WORLD)
    results = []
    for rank in range(tp_worker.WORLD):
        with open(os.path.join(tmp, f"rank{rank}.json")) as f:
            results.append(json.load(f))
    return {name: [r[name] for r in results] for name in tp_worker.SCENARIOS}


def _ok(per_rank: list) -> list:
    for rank, r in enumerate(per_rank):
        assert "error" not in r, f"rank {rank}:\n{r['error']}"
    return per_rank


def _close(d: dict) -> None:
    assert d["max_abs"] <= RTOL * max(1.0, d["scale"]), d


def test_column_parallel_odd_n(tp_results: dict) -> None:
    ranks = _ok(tp_results["column_odd_n"])
    assert [r["local_rows"] for r in ranks] == [[0, 39], [39, 77]]
    for r in ranks:
        assert r["from_sparse"]["max_abs"] == 0.0 and r["from_dense_local"]["max_abs"] == 0.0, r
        assert r["local_activation"] == "silu"  # stays fused


@pytest.mark.parametrize("scenario, cols", [("row_k200", [[0, 104], [104, 200]]), ("row_k196", [[0, 104], [104, 196]])])
def test_row_parallel(tp_results: dict, scenario: str, cols: list) -> None:
    ranks = _ok(tp_results[scenario])
    assert [r["local_cols"] for r in ranks] == cols
    for r in ranks:
        _close(r["from_sparse"])
        _close(r["from_dense"])
        # The bias and the activation come after the all-reduce, never in the local kernel.
        assert r["local_epilogue"] == "none" and r["activation_after_all_reduce"] == "relu"


def test_parallelize_with_torch_styles(tp_results: dict) -> None:
    for r in _ok(tp_results["plan_styles"]):
        _close(r["out"])
        assert r["types"] == ["ColumnParallelSparseLinear", "ReLU", "RowParallelSparseLinear"]
        assert r["shard_output"] and "output Replicate()" in r["shard_output"]


def test_sparsify_llama_tensor_parallel(tp_results: dict) -> None:
    ranks = _ok(tp_results["llama_sparsify"])
    for rank, r in enumerate(ranks):
        _close(r["logits"])
        assert r["all_reduces"] == 2 * r["layers"]  # one per attention, one per MLP block
        assert r["gate_fused"] == "model.layers.0.mlp.act_fn"
        assert "bias added after the all-reduce" in r["down_note"]
        assert f"rank {rank} of 2 holds out_features [{32 * rank}, {32 * rank + 32})" in r["q_note"]
        assert r["lm_head"] == "skipped" and r["statuses"] == ["skipped", "sparsified"]
    assert [r["down_local"] for r in ranks] == [[64, 52], [64, 48]]  # K/2 of 104 and 96
    assert all("tensor-parallel shard" in r["save_error"] for r in ranks)  # never a file of one rank's slices


def test_sparsify_tensor_parallel_fuses_projections_per_rank(tp_results: dict) -> None:
    ranks = _ok(tp_results["llama_fused"])
    for r in ranks:
        _close(r["logits"])
        assert r["groups"] == ["fused", "fused"] and r["mlp"] == "FusedGatedMLP"
        assert r["down"] == "RowParallelSparseLinear"
    # intermediate 200 split 104 / 96: each rank stacks its gate and up rows (and biases).
    assert [r["local"] for r in ranks] == [[208, "bias"], [192, "bias"]]


def test_sparsify_tensor_parallel_shards_excluded_layers_dense(tp_results: dict) -> None:
    for r in _ok(tp_results["llama_exclude"]):
        _close(r["logits"])
        assert (r["o_local"], r["o_status"]) == ("Linear", "skipped")
        assert "sharded dense" in r["o_reason"]


def test_load_sparseflow_model_per_rank(tp_results: dict) -> None:
    for r in _ok(tp_results["load_sparseflow"]):
        _close(r["logits"])
        assert r["act_fn"] == "Identity"  # fused into the column-parallel gate_proj


def test_load_tensor_parallel_directory(tp_results: dict) -> None:
    for r in _ok(tp_results["load_tp_dir"]):
        _close(r["logits"])
        assert r["files"] == ["model-tp-rank-0-of-2.safetensors", "model-tp-rank-1-of-2.safetensors"]
        assert "load it per rank" in r["single_process_error"]


def test_load_hf_checkpoint_per_rank(tp_results: dict) -> None:
    for r in _ok(tp_results["load_hf"]):
        _close(r["dense"])
        _close(r["stored_24"])
        assert r["not_24_error"] and "not 2:4" in r["not_24_error"]


def test_tp_benchmark_dry_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """scripts/device/tp_check.sh's script on the CPU (torchrun, 2 gloo ranks, tiny shapes), so
    the two-GPU run cannot rot: correctness passes and every case has both step times."""
    import pathlib
    import subprocess
    import sys

    pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    root = pathlib.Path(__file__).resolve().parents[2]
    out = tmp_path / "tp.json"
    subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(root / "python/benchmarks/tp.py"), "--dry-run", "--iters", "1", "--out", str(out)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert report["passed"] and report["correctness"]["passed"]
    assert report["environment"]["multicast_env"] == {
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"
    }  # fmt: skip
    bench = report["benchmark"]
    assert [(c["kind"], c["m"]) for c in bench["cases"]] == [("decode", 1), ("decode", 16), ("prefill", 32)]
    assert all(c["dense_step_us"] > 0 and c["sparse_step_us"] > 0 for c in bench["cases"])
    assert 0.5 < bench["weight_ratio"] < 0.6
