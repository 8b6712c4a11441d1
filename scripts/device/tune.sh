#!/usr/bin/env bash
# GPU machine: `sparseflow tune` (issue 24 point 2) — times the cost model's top-k
# configurations of every family per (shape, M bucket, dtype, epilogue class) and appends the
# winners to the tuning table. Resumable: it starts from the checked-in table
# (crates/ir/tuning/h200.json, carried with the work tree), skips measured cases, and stops
# starting cases after BUDGET_S. Writes $OUT/h200.json (copy it over crates/ir/tuning/h200.json
# and commit: the library embeds it) and $OUT/tune.log.
#
# Build here first: bash scripts/device/build_carry.sh --no-cache (or only .carry/bench), then
#   run(command="bash scripts/device/tune.sh", carry=[".carry"])
# EPILOGUES defaults to both classes, plain and fused (silu stands for every fused epilogue):
# a table with the plain class only leaves fused epilogues to the cost model (measured on the
# H200 end to end: the fused-SiLU gate projection at batch 64 fell to the sm80 family, 2.0 ms per
# step). MODEL (or SHAPES, e.g. 28672x8192), MS, DTYPES, EPILOGUES, TOP_K, FAMILIES (e.g. sm90,sm90a), BUDGET_S narrow or widen a
# visit; FRESH=1 starts from an
# empty table (after a kernel change that makes the checked-in timings stale), START=FILE from
# another table (an earlier visit's output).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sparseflow-tune}
mkdir -p "$OUT"
source scripts/device/cli_env.sh
export SPARSEFLOW_BUILD="$(tr '\n' ' ' <.carry/BUILT_FROM 2>/dev/null || git rev-parse --short HEAD 2>/dev/null)"
table=$OUT/h200.json
if [[ "${FRESH:-0}" == 1 ]]; then rm -f "$table"; else cp "${START:-crates/ir/tuning/h200.json}" "$table"; fi
# The table being written must not steer the candidates' own planning mid-run. A kernel that
# hangs makes tune exit (its watchdog: code 75 after 90 s on one configuration; `timeout` is the
# backstop) with the configuration named in $table.inflight, so the next attempt records it as
# failed and goes on (at most 3 attempts, within the budget).
layers=(--model "${MODEL:-llama3-8b}")
if [[ -n ${SHAPES:-} ]]; then layers=(--shapes "$SHAPES"); fi
budget=${BUDGET_S:-240}
deadline=$((SECONDS + budget))
for attempt in 1 2 3; do
    left=$((deadline - SECONDS))
    [[ $left -gt 10 ]] || break
    SPARSEFLOW_TUNING=off timeout $((left + 90)) "$BIN" tune "${layers[@]}" \
        --m "${MS:-16,32,64,128,256,512,1024,2048,4096,8192}" --dtype "${DTYPES:-fp16}" \
        --epilogue "${EPILOGUES:-none,silu}" --top-k "${TOP_K:-8}" ${FAMILIES:+--families "$FAMILIES"} \
        --graph --budget-s "$left" \
        --out "$table" 2>&1 | tee -a "$OUT/tune.log"
    rc=${PIPESTATUS[0]}
    [[ ( $rc -eq 75 || $rc -eq 124 ) && -f $table.inflight ]] || break
    echo "attempt $attempt stopped in $(cat "$table.inflight"); resuming without it" | tee -a "$OUT/tune.log"
done
echo "tune exit code: $rc"
exit $rc
