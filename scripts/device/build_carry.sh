#!/usr/bin/env bash
# Dev machine: builds everything the device scripts carry into .carry/ (ignored by git), from the
# current work tree, in one go — so no visit runs a stale binary. Then call the device tool with
# carry [".carry"] (stripped binaries keep it far below the 64 MiB carry limit).
#   .carry/bench/sparseflow      sparseflow CLI (bench.sh, profile_decode.sh)
#   .carry/verify                GPU correctness matrix (verify.sh)
#   .carry/runtime-gpu-tests     crates/runtime/tests/gpu.rs (verify.sh)
#   .carry/kernel-cache/         kernels verify needs, precompiled with the same NVRTC 13.0
#   .carry/capi/libsparseflow.so C ABI library (capi_check.sh)
#   .carry/sparseflow-*.whl      abi3 Python wheel (python_check.sh; removed with --no-wheel)
# Usage: bash scripts/device/build_carry.sh [--no-cache] [--no-wheel]
set -euo pipefail
cd "$(dirname "$0")/../.."
NVRTC_LIB=$(ls -d .venv/lib/python3*/site-packages/nvidia/cu13/lib 2>/dev/null | head -1 || true)
export LD_LIBRARY_PATH="${NVRTC_LIB:+$PWD/$NVRTC_LIB:}${LD_LIBRARY_PATH:-}"
mkdir -p .carry/bench .carry/capi

# One build per kind of target: `--example` or `--test` would narrow a combined build to that
# target alone and leave the other packages' artifacts stale.
cargo build --release -p sparseflow-cli -p sparseflow-capi
cargo build --release -p sparseflow-runtime --example verify
gpu_tests=$(cargo test --release -p sparseflow-runtime --test gpu --no-run --message-format=json \
    | python3 -c 'import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "gpu" and m.get("executable")]
if len(exes) != 1:
    sys.exit(f"expected one gpu test executable from cargo, got {exes}")
print(exes[0])')
strip -o .carry/bench/sparseflow target/release/sparseflow
strip -o .carry/capi/libsparseflow.so target/release/libsparseflow.so
strip -o .carry/verify target/release/examples/verify
strip -o .carry/runtime-gpu-tests "$gpu_tests"

# An old wheel is removed either way: python_check.sh takes the newest one it finds.
rm -f .carry/sparseflow-*.whl
if [[ " $* " != *" --no-wheel "* ]]; then
    rm -f target/wheels/sparseflow-*.whl
    .venv/bin/python -m maturin build --release --quiet --out target/wheels
    cp target/wheels/sparseflow-*.whl .carry/
fi
if [[ " $* " != *" --no-cache "* ]]; then
    rm -rf .carry/kernel-cache
    SPARSEFLOW_CACHE_DIR=.carry/kernel-cache .carry/verify --precompile .carry/kernel-cache
fi
git rev-parse --short HEAD > .carry/BUILT_FROM
if [[ -n $(git status --porcelain --untracked-files=no) ]]; then echo "dirty" >> .carry/BUILT_FROM; fi
du -sh .carry
