#!/usr/bin/env bash
# Nsight Compute profile of the decode kernels the benchmark picks, plain vs fused bias_silu,
# on the shapes where issue 7's epilogue target is missed (4096x4096 and 1024x4096 at M = 8
# and 16). Runs on the GPU machine; build and carry the benchmark binary first:
#   cargo build --release -p sparseflow-cli && mkdir -p .carry/bench \
#     && strip -o .carry/bench/sparseflow target/release/sparseflow
# then (device tool, carry [".carry/bench"]): bash scripts/device/profile_decode.sh [M...]
# SHAPES="N,K ..." and EPILOGUES="none bias_silu" override the shapes and epilogues profiled.
# Writes $OUT/profile.tgz: ncu-<M>-<shape>-<epilogue>.csv (one row per kernel and metric) + .log. ncu locks clocks, so
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
    for shape in ${SHAPES:-4096,4096 1024,4096}; do
        for epi in ${EPILOGUES:-none bias_silu}; do
            # Eager launches (ncu profiles kernels, not graph replays): 3 launches of the kernel
            # after 5 warm-up ones. The plain kernel runs in the main sweep, the fused one in
            # the --epilogue-overhead section.
            tag="m$m-${shape/,/x}-$epi"
            "$NCU" --kernel-name regex:"sparseflow_decode_f16_${epi}_" --launch-skip 5 --launch-count 3 \
                --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
                --section SchedulerStats --section MemoryWorkloadAnalysis --csv \
                "$BIN" benchmark --shape "$shape" --m "$m" --dtype fp16 --epilogue-overhead \
                --skip cusparselt --samples 1 --sample-ms 0.2 --warmup-ms 1 \
                >"$OUT/ncu-$tag.csv" 2>"$OUT/ncu-$tag.log" || rc=1
            echo "$tag: $(grep -c . "$OUT/ncu-$tag.csv") csv lines"
        done
    done
done
# The device tool brings back at most 8 files: pack them.
tar czf "$OUT/profile.tgz" -C "$OUT" $(cd "$OUT" && ls ncu-*) && rm -f "$OUT"/ncu-*
exit $rc
