#!/usr/bin/env bash
# Nsight Compute profile of the decode kernels the benchmark picks, plain vs fused bias_silu,
# on the shapes where issue 7's epilogue target is missed (4096x4096 and 1024x4096 at M = 8
# and 16). Runs on the GPU machine; build and carry the benchmark binary first:
#   cargo build --release -p sparseflow-cli && mkdir -p .carry/bench \
#     && strip -o .carry/bench/sparseflow target/release/sparseflow
# then (device tool, carry [".carry/bench"]): bash scripts/device/profile_decode.sh [M...]
# Writes $OUT/ncu.csv (one row per kernel and metric) and $OUT/ncu.txt. ncu locks clocks, so
# its durations run ~15% longer than the benchmark's; compare plain and fused with each other.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sparseflow-profile}
mkdir -p "$OUT"
BIN=${SPARSEFLOW_BIN:-.carry/bench/sparseflow}
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null || true)
if [[ -z $NCU ]]; then
    echo "error: ncu (Nsight Compute) not found" >&2
    exit 3
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SPARSEFLOW_CACHE_DIR=${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-kernel-cache}
ms=${*:-8 16}
rc=0
for m in $ms; do
    # Eager launches (ncu profiles kernels, not graph replays); 3 of each kernel after warm-up.
    "$NCU" --kernel-name regex:'sparseflow_decode_.*_(none|bias_silu)_' --launch-skip 20 --launch-count 12 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
        --section SchedulerStats --section MemoryWorkloadAnalysis --csv \
        "$BIN" benchmark --shape 4096,4096 --shape 1024,4096 --m "$m" --dtype fp16 \
        --epilogue-overhead --skip cusparselt --samples 1 --sample-ms 0.2 --warmup-ms 1 \
        >"$OUT/ncu-m$m.csv" 2>"$OUT/ncu-m$m.txt" || rc=1
    echo "M=$m: $(grep -c . "$OUT/ncu-m$m.csv") csv lines"
done
exit $rc
