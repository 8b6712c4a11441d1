"""The Python benchmarks run in CI on the CPU (``--smoke``) so they cannot rot: the scripts the
device runs are the ones tested here."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_linear_benchmark_smoke(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "linear.json"
    md = tmp_path / "linear.md"
    subprocess.run(
        [sys.executable, str(ROOT / "python/benchmarks/linear.py"), "--smoke", "--shape", "32,64", "--m", "1,3",
         "--samples", "2", "--sample-ms", "0.2", "--out", str(out), "--markdown", str(md)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    rep = json.loads(out.read_text())
    assert [(r["n"], r["k"], r["m"]) for r in rep["rows"]] == [(32, 64, 1), (32, 64, 3)]
    for row in rep["rows"]:
        for who in ("F.linear", "op", "handle"):
            assert row[f"{who}_rel_err"] < 1e-2, row  # every contender computed the same function
            assert row[f"{who}_eager"]["median_us"] > 0
        assert "op_over_handle_eager" in row
    assert "| 32×64 | 1 | eager |" in md.read_text()


def test_linear_benchmark_reads_bench_json(tmp_path: pathlib.Path) -> None:
    """Shapes, M and dtype come from a `sparseflow benchmark` JSON, whose kernel time joins the row."""
    bench = {
        "config": {"dtype": "f16"},
        "rows": [
            {"layer": "q_proj", "n": 16, "k": 32, "m": 2, "dense_best": "cublas-gemmex",
             "measurements": [{"contender": "sparseflow", "time": {"median_us": 4.0}},
                              {"contender": "cublas-gemmex", "time": {"median_us": 7.0}},
                              {"contender": "cublaslt-h0", "time": None}]},
        ],
    }
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(bench))
    out = tmp_path / "linear.json"
    subprocess.run(
        [sys.executable, str(ROOT / "python/benchmarks/linear.py"), "--smoke", "--bench-json", str(src),
         "--samples", "2", "--sample-ms", "0.2", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (row,) = json.loads(out.read_text())["rows"]
    assert (row["layer"], row["n"], row["k"], row["m"]) == ("q_proj", 16, 32, 2)
    assert row["kernel_us"] == 4.0 and row["best_dense_us"] == 7.0 and row["dense_best"] == "cublas-gemmex"
    assert row["op_over_kernel_eager"] == row["op_eager"]["median_us"] / 4.0


def test_memory_benchmark_smoke(tmp_path):
    """The --memory benchmark on the CPU with tiny shapes, so the GPU script cannot rot."""
    pytest.importorskip("transformers")
    out = tmp_path / "memory.json"
    subprocess.run(
        [sys.executable, str(ROOT / "python/benchmarks/memory.py"), "--memory", "--smoke", "--out", str(out)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    runs = json.loads(out.read_text())["runs"]
    assert {(r["model"], r["dtype"]) for r in runs} == {
        (m, d) for m in ("llama3-8b-layer-set", "llama3-8b-full") for d in ("fp16", "bf16")
    }
    for r in runs:
        assert set(r) >= {"dense", "sparse", "sparse_after_m1", "sparse_after_m16", "peak_during_sparsify"}
        assert r["checks"]["sparse_over_dense_allocated"] < 0.66
        assert set(r["checks"]["attribution"]["outside_torch_growth_mb"]) >= {"dense", "sparse", "sparse_after_m16"}
        # sparsify(host model, device=...): on the CPU the no-op path, same conversion.
        host = r["from_cpu"]
        assert host["model_device"] == "cpu" and host["sparsified_layers"] == r["sparsified_layers"]
        assert host["sparse"]["allocated"] == r["sparse"]["allocated"]
