"""The speed outlook of ``sf.sparsify``'s report (issue 29, point 5): which batch sizes and
prompt lengths the 2:4 linears will be faster or slower at, from the measured table the package
ships — which must match docs/bench."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

import sparseflow as sf
from sparseflow import outlook as ol
from sparseflow._outlook_table import ROWS

from conftest import tiny_llama

ROOT = pathlib.Path(__file__).resolve().parents[2]
LLAMA3_8B = [("bfloat16", n, k) for n, k in [(4096, 4096), (1024, 4096), (1024, 4096), (4096, 4096),
                                             (14336, 4096), (14336, 4096), (4096, 14336)]] * 32  # fmt: skip


def test_shipped_table_matches_docs_bench() -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "outlook_table.py"), "--check"], check=True, timeout=60)


def test_measured_points_are_the_table_and_between_them_interpolated() -> None:
    s, d, _ = ROWS[("bfloat16", 4096, 4096, 16)]
    assert ol.layer_times("bfloat16", 4096, 4096, 16) == (s, d, False)
    s0, d0, _ = ROWS[("float16", 4096, 4096, 512)]
    s1, d1, _ = ROWS[("float16", 4096, 4096, 2048)]
    s_mid, d_mid, est = ol.layer_times("bfloat16", 4096, 4096, 1024)  # fp16 rows stand in for bf16
    assert min(s0, s1) <= s_mid <= max(s0, s1) and min(d0, d1) <= d_mid <= max(d0, d1) and not est
    # Beyond the largest measured M only from a compute-bound run; a decode-only shape is not guessed.
    assert ol.layer_times("bfloat16", 4096, 4096, 32768)[2] is True
    assert ol.layer_times("bfloat16", 1024, 8192, 64) is None  # 70B-tp8 q_proj: measured up to M = 16
    assert ol.layer_times("bfloat16", 48, 64, 1) is None


def test_llama3_8b_outlook_says_where_it_wins_and_loses() -> None:
    out = ol.outlook(LLAMA3_8B)
    by = {p.label: p for p in out.points}
    # The shipped H200 measurements (docs/PERFORMANCE.md): decode kernels win at batch 1 and 16,
    # the tuned sm90 family from M = 64 up, measured to M = 16384 (8 x 2048).
    assert by["batch 1"].verdict == "faster" and by["batch 1"].layers == len(LLAMA3_8B)
    assert by["batch 16"].verdict == "faster"
    assert by["1x512"].speedup > 1 and by["1x2048"].speedup > 1 and not by["8x2048"].estimated
    # k_proj / v_proj alone (1024 features: few tiles) still lose at 512 tokens.
    kv = {p.label: p for p in ol.outlook([("bfloat16", 1024, 4096)] * 4).points}
    assert kv["1x512"].verdict == "slower" and kv["batch 1"].verdict == "faster"
    text = "\n".join(ol.outlook([("bfloat16", 1024, 4096)] * 4).lines())
    assert "batch 1: " in text and "1x512: " in text and "slower" in text


def test_report_ends_with_the_outlook() -> None:
    pytest.importorskip("transformers")
    model, report = sf.sparsify(tiny_llama(), progress=False)
    text = str(report)
    # hidden 64: no shape of the table, and the report says so instead of guessing
    assert text.splitlines()[-1].startswith("speed outlook: none of the sparsified layer shapes was measured")
    assert all(p["speedup"] is None and p["verdict"] == "not measured" for p in report.outlook().to_list())
    _, empty = sf.sparsify(tiny_llama(), include=["nothing"], progress=False)
    assert "speed outlook" not in str(empty)
