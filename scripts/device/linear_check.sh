#!/usr/bin/env bash
# GPU machine: one linear layer through the Python API (python/benchmarks/linear.py): F.linear vs
# SparseLinear (the custom op) vs its kernel handle, CUDA graphs and eager, on the shapes, M and
# dtype of each `sparseflow benchmark` JSON given, whose raw-kernel time joins every row.
# With .carry/old/sparseflow-*.whl present (a wheel of an earlier build), that build is timed
# too, first, as linear-before-<name>.json: the op-overhead table before and after a change.
#
#   bash scripts/device/linear_check.sh $WORK/decode-8b-fp16/bench.json ...
# Writes $OUT/linear-<name>.json and .md per input (name = the JSON's folder name).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/sparseflow-linear}"
mkdir -p "$OUT"
export SPARSEFLOW_CACHE_DIR="${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}"
rc=0
run_with() {  # run_with WHEEL PREFIX: install WHEEL privately, time every input
    local wheel=$1 prefix=$2 site
    site=$(mktemp -d)
    python3 -m pip install -q --no-deps --no-index --target "$site" "$wheel" || { rc=2; return; }
    for json in "${INPUTS[@]}"; do
        [ -f "$json" ] || continue  # an unmatched glob
        local name
        name=$(basename "$(dirname "$json")")
        PYTHONPATH="$site" timeout 240 python3 python/benchmarks/linear.py --bench-json "$json" \
            --out "$OUT/$prefix-$name.json" --markdown "$OUT/$prefix-$name.md" 2>&1 | tail -30 || rc=1
    done
}
INPUTS=("$@")
if [ ${#INPUTS[@]} -eq 0 ]; then
    echo "usage: $0 BENCH_JSON..." >&2
    exit 2
fi
old=$(ls -t .carry/old/sparseflow-*.whl 2>/dev/null | head -1)
if [ -n "$old" ]; then  # before: the first input only (the one measured in this visit)
    echo "=== before: $(cat .carry/old/BUILT_FROM 2>/dev/null || echo "$old")"
    ALL=("${INPUTS[@]}")
    INPUTS=("${ALL[0]}")
    run_with "$old" linear-before
    INPUTS=("${ALL[@]}")
fi
new=$(ls -t .carry/sparseflow-*.whl 2>/dev/null | head -1)
echo "=== after: $(cat .carry/BUILT_FROM 2>/dev/null || echo "$new")"
run_with "$new" linear
exit $rc
