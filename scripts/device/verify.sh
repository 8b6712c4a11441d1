#!/usr/bin/env bash
# GPU correctness run (issue 5, item 6). Runs on the GPU machine; build on the dev machine first:
#   cargo build --release -p sparseflow-runtime --example verify
#   mkdir -p .carry && cp target/release/examples/verify .carry/
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
"$bin" "$@" 2> >(tee "$OUT/verify.log" >&2)
rc=$?
echo "verify exit code $rc"
exit $rc
