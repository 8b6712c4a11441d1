#!/usr/bin/env bash
# GPU machine: the memory benchmark of issue 23 (python/benchmarks/memory.py --memory). Builds a
# Llama-3-8B-shaped layer set and a full-depth Llama-3-8B-shaped transformers model with random
# weights, sparsifies them (2:4) and reports device memory dense vs sparse after conversion,
# after running M = 1, 16, 256, 4096 once each, and the peak during sparsify; fp16 and bf16. Then
# the same models built on the host and converted with sf.sparsify(model, device="cuda")
# (runs[].from_cpu: peak against final footprint + largest dense layer + 256 MB).
# Writes $OUT/memory.json (+ memory.txt, one line of checks per model and dtype).
#
# Needs the abi3 wheel in .carry/ (bash scripts/device/build_carry.sh --no-cache), then:
#   run(command="bash scripts/device/memory_check.sh", carry=[".carry"])
# MODELS=layers (or llama) and DTYPES=fp16 narrow it, FROM_CPU=0 skips the host-built runs; the
# full run takes a few minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/sparseflow-out}"
mkdir -p "$OUT"
source scripts/device/install_wheel.sh
export SPARSEFLOW_CACHE_DIR="${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
FLAGS=""
[ "${FROM_CPU:-1}" = 0 ] && FLAGS="--no-from-cpu"
timeout 580 python3 python/benchmarks/memory.py --memory --models "${MODELS:-layers,llama}" \
  --dtype "${DTYPES:-fp16,bf16}" $FLAGS --out "$OUT/memory.json" 2>&1 | tee "$OUT/memory.txt"
exit "${PIPESTATUS[0]}"
