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
BIN=${SPARSEFLOW_BIN:-.carry/bench/sparseflow}
# cuSPARSELt ships inside torch's environment on the GPU machine.
LT_DIR=$(python3 -c "import nvidia.cusparselt as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LT_DIR:+:$LT_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -n "$LT_DIR" ]; then export SPARSEFLOW_CUSPARSELT=$LT_DIR; fi
export SPARSEFLOW_CACHE_DIR=${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,driver_version,temperature.gpu,power.draw --format=csv > "$OUT/nvidia-smi.txt" 2>&1 || true
if [ $# -eq 0 ]; then
  set -- --model llama3-8b --m 1,16,64,256,1024,4096,16384 --dtype fp16 --epilogue-overhead --e2e
fi
"$BIN" benchmark "$@" --json "$OUT/bench.json" --plot "$OUT/bench.svg" --markdown "$OUT/bench.md" 2> >(tee "$OUT/stderr.log" >&2)
rc=$?
echo "exit code: $rc"
exit $rc
