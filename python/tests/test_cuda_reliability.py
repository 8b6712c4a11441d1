"""GPU-only bad-input cases (issue 25): device memory exhausted, and forged or corrupted kernel
cache entries. Each case runs in a fresh Python process (its own CUDA context and kernel cache
directory), so a crash would show as a signal, not take the test runner down. Skipped without
CUDA; `scripts/device/python_check.sh --pytest-only` runs them on the GPU machine."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from conftest import requires_cuda

pytestmark = requires_cuda

MAGIC = b"SFCUBIN1"  # crates/codegen/src/compiler.rs: MAGIC ++ sha256(cubin) ++ cubin

RUN_LAYER = """
import torch, sparseflow as sf
torch.manual_seed(0)
layer = sf.SparseLinear.from_dense(torch.nn.Linear(256, 128).half().cuda())
x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
try:
    y = layer(x)
    torch.cuda.synchronize()
    err = ((y.double() - x.double() @ layer.to_dense().double().T - layer.bias.double()).norm() / y.double().norm()).item()
    print("OK", err)
except Exception as e:
    print("ERROR", type(e).__name__, str(e).replace("\\n", " ")[:500])
"""


def run(script: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPARSEFLOW_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


def entries(cache: Path) -> list:
    return sorted(p for p in cache.glob("*.cubin") if p.is_file())


def test_forged_and_corrupted_cache_entries(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run(RUN_LAYER, cache)
    assert first.returncode == 0 and first.stdout.startswith("OK"), first.stdout + first.stderr
    assert float(first.stdout.split()[1]) < 1e-2
    assert entries(cache), "the first run filled the cache"
    # Forged: a well-formed entry (its digest matches) holding bytes that are no cubin. The digest
    # is a checksum, not an authentication, so the runtime loads it: the load must fail cleanly.
    garbage = b"not a cubin " * 64
    for p in entries(cache):
        p.write_bytes(MAGIC + hashlib.sha256(garbage).digest() + garbage)
    forged = run(RUN_LAYER, cache)
    assert forged.returncode == 0, f"crashed ({forged.returncode}): {forged.stderr[-2000:]}"
    assert forged.stdout.startswith("ERROR RuntimeError"), forged.stdout + forged.stderr
    assert "cuModuleLoadData" in forged.stdout, forged.stdout
    # Corrupted: the digest no longer matches, so the entry is a miss: recompiled, correct.
    for p in entries(cache):
        raw = bytearray(p.read_bytes())
        raw[-1] ^= 0xFF
        p.write_bytes(bytes(raw))
    corrupted = run(RUN_LAYER, cache)
    assert corrupted.returncode == 0 and corrupted.stdout.startswith("OK"), corrupted.stdout + corrupted.stderr
    assert float(corrupted.stdout.split()[1]) < 1e-2


EXHAUST = """
import torch, sparseflow as sf
x = torch.randn(1, 8192, device="cuda", dtype=torch.float16)
# A first layer of the same shape loads the kernel (module loads need device memory too; this
# test is about the weight upload), then an upload through the runtime (a host-weight handle:
# SparseLinear's own handles borrow its tensors and upload nothing) meets a full device.
warm = sf.SparseLinear.from_dense(torch.nn.Linear(8192, 8192, bias=False).half().cuda())
warm(x)
torch.cuda.synchronize()
values, meta = sf.compress(torch.randn(8192, 8192).half())
free, _ = torch.cuda.mem_get_info()
blocker = torch.empty(max(0, free - (8 << 20)), dtype=torch.uint8, device="cuda")  # leave 8 MB
try:
    handle = sf._C.SparseGemmHandle(values.data_ptr(), meta.data_ptr(), None, 8192, 8192, "float16", "none", 0)
    handle.prepare(1)  # the runtime uploads its weight (tens of MB): more than is left
    torch.cuda.synchronize()
    print("NO ERROR")
except MemoryError as e:
    print("MemoryError", str(e)[:300])
except Exception as e:
    print("OTHER", type(e).__name__, str(e)[:300])
"""


def test_device_out_of_memory_is_a_memory_error(tmp_path: Path) -> None:
    done = run(EXHAUST, tmp_path / "cache")
    assert done.returncode == 0, f"crashed ({done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("MemoryError"), done.stdout + done.stderr
