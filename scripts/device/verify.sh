#!/usr/bin/env bash
# GPU correctness run (issue 5, item 6). Runs on the GPU machine; build on the dev machine first:
#   cargo build --release -p sparseflow-runtime --example verify
#   cargo test --release -p sparseflow-runtime --test gpu --no-run   # prints the test binary's path
#   mkdir -p .carry && cp target/release/examples/verify .carry/ && cp <that path> .carry/runtime-gpu-tests
#   SPARSEFLOW_CACHE_DIR=.carry/kernel-cache LD_LIBRARY_PATH=<pip nvrtc lib> .carry/verify --precompile .carry/kernel-cache  # optional
# then call the device tool with carry [".carry"] and `bash scripts/device/verify.sh [--quick]`.
# Writes $OUT/verify.json (+ verify.log); exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

OUT="${OUT:-$PWD/target/verify-out}"
mkdir -p "$OUT"
export OUT
# libcuda comes with the driver; NVRTC from the CUDA 13 toolkit.
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# Kernels precompiled on the dev machine (same NVRTC 13.0 → same cache keys); new ones are added.
cache_src=.carry/kernel-cache
export SPARSEFLOW_CACHE_DIR=/tmp/sparseflow-kernel-cache
mkdir -p "$SPARSEFLOW_CACHE_DIR"
if [[ -d $cache_src ]]; then cp -r "$cache_src"/. "$SPARSEFLOW_CACHE_DIR"/; fi

bin=.carry/verify
if [[ ! -x $bin ]]; then
    echo "error: $bin missing; build it here first (see the header of this script)" >&2
    exit 3
fi
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
echo "kernel cache: $(ls "$SPARSEFLOW_CACHE_DIR" | wc -l) cubins carried"
rc=0
# The runtime's GPU unit tests (crates/runtime/tests/gpu.rs), which skip on machines without a GPU.
if [[ -x .carry/runtime-gpu-tests ]]; then
    .carry/runtime-gpu-tests --nocapture --test-threads=1 2>&1 | tee "$OUT/gpu-tests.log"
    t=${PIPESTATUS[0]}
    echo "runtime GPU tests exit code $t"
    [[ $t -ne 0 ]] && rc=$t
fi
"$bin" "$@" 2> >(tee "$OUT/verify.log" >&2)
v=$?
echo "verify exit code $v"
[[ $v -ne 0 ]] && rc=$v
exit $rc
