#!/usr/bin/env bash
# Runs `sparseflow benchmark` on the GPU machine and writes bench.json / bench.svg / bench.md
# (plus stderr and nvidia-smi state) to $OUT.
#
# Build here first:   cargo build --release -p sparseflow-cli && mkdir -p .carry/bench && strip -o .carry/bench/sparseflow target/release/sparseflow
# Then (device tool): run with carry [".carry/bench"]:  bash scripts/device/bench.sh [benchmark args...]
# With no arguments it runs the docs/PERFORMANCE.md command:
#   sparseflow benchmark --model llama3-8b --m 1,16,64,256,1024,4096,16384 --dtype fp16 --epilogue-overhead --e2e
set -uo pipefail
OUT=${OUT:-/tmp/sparseflow-bench}
mkdir -p "$OUT"
source "$(dirname "$0")/cli_env.sh"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version,temperature.gpu,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1 || true
if [ $# -eq 0 ]; then
  set -- --model llama3-8b --m 1,16,64,256,1024,4096,16384 --dtype fp16 --epilogue-overhead --e2e
fi
"$BIN" benchmark "$@" --json "$OUT/bench.json" --plot "$OUT/bench.svg" --markdown "$OUT/bench.md" 2> >(tee "$OUT/stderr.log" >&2)
rc=$?
echo "exit code: $rc"
exit $rc
