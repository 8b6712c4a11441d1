#!/usr/bin/env bash
# One GPU-machine visit for a release: runs the device scripts of one group and packs each
# script's output folder into $OUT/<step>.tgz (the device tool brings back at most 8 files).
#
#   correctness  verify.sh (the GPU correctness matrix) + capi_check.sh (C programs on cuda:0)
#   perf         bench.sh: the docs/PERFORMANCE.md command, then the default issue-7 decode
#                sweeps (M 1-16, CUDA graphs: 8B fp16 and bf16, 70B-tp8 fp16)
#   decode       verify --quick, then the issue-7 decode sweeps (8B and 70B-tp8, fp16 and bf16;
#                8B fp16 with --epilogue-overhead), then fp16 8B and 70B-tp8 again with
#                programmatic dependent launch (--pdl)
#   python       python_check.sh (pytest with CUDA, torch.compile, CUDA graphs, decode e2e)
#   baseline     the four decode sweeps (8B and 70B-tp8, fp16 and bf16; 8B fp16 with
#                --epilogue-overhead) against the best dense path (about 7 minutes)
#   linear       a plain 8B fp16 decode sweep, then linear_check.sh on it and on every
#                .carry/bench-json/*/bench.json (F.linear vs SparseLinear vs its kernel;
#                before/after with .carry/old/), then pytest with CUDA
#   allm         the all-M llama3-8b fp16 command of docs/PERFORMANCE.md, CUDA graphs
#   sm90         scripts/device/sm90_dev.py run on the cubins in .carry/sm90k (Hopper family)
#   soak         sm90_dev.py soak: cuBLAS and the .carry/sm90k kernels named in SOAK_KERNELS
#                (comma-separated) for SOAK_S (6) seconds each at SOAK_SHAPE (14336,4096,8192),
#                with nvidia-smi sampling clock, power and clock-event reasons
#   acceptance   verify.sh (full matrix), then the 8B fp16 decode sweep of this build and of
#                e53226d (.carry/old-e53226d/sparseflow) back to back
#   pytest       python_check.sh --pytest-only (the Python suite with CUDA)
#   memory       memory_check.sh (issue 23's memory table: layer set and full-depth model)
#   tp           tp_check.sh (issue 28; needs two GPUs: kind nvidia-h200-x2)
#   tune         tune.sh: `sparseflow tune` from the checked-in H200 table (resumable)
#   prefill      the llama3-8b fp16 sweep M 32-16384, CUDA graphs, planned from the table that
#                `tune` wrote earlier in the same visit (SPARSEFLOW_TUNING) when there is one
#   verify-llama the correctness matrix on the four Llama-3-8B shapes at every tuned M bucket
#                (16-8192), every epilogue, fp16 and bf16: each winner of the tuning table (the
#                one `tune` wrote in this visit when there is one) as the runtime plans it
#   profile      sm90_profile.sh: Nsight Compute on the kernels `sparseflow benchmark` times
#                (SparseFlow as planned, cuBLAS, cuSPARSELt) at one large-M shape
#   verify-tuned the correctness matrix at M 100, 256, 513 on 1024x4096 and 4096x4096 (the
#                few-tile cases split-K serves), planned from that table as well
#
# Several groups run in order in one visit: `release_check.sh acceptance pytest`.
#
# Build and carry first: `bash scripts/device/build_carry.sh` (.carry/{verify,runtime-gpu-tests,
# kernel-cache,capi,bench,sparseflow-*.whl}; pydeps as python_check.sh says); then run with
# carry [".carry"]:
#   bash scripts/device/release_check.sh GROUP [GROUP...]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sparseflow-release}
WORK=$(mktemp -d)
mkdir -p "$OUT"
# One kernel cache for every step (verify.sh seeds it from .carry/kernel-cache).
export SPARSEFLOW_CACHE_DIR=/tmp/sparseflow-kernel-cache
mkdir -p "$SPARSEFLOW_CACHE_DIR"
if [[ -d .carry/kernel-cache ]]; then cp -r .carry/kernel-cache/. "$SPARSEFLOW_CACHE_DIR"/; fi
declare -A RC

step() {  # step NAME COMMAND...: run with its own OUT folder, record the exit code, pack it
    local name=$1; shift
    mkdir -p "$WORK/$name"
    echo "=== $name: $*"
    local t0=$SECONDS
    OUT="$WORK/$name" "$@"
    RC[$name]=$?
    echo "=== $name: exit ${RC[$name]} after $((SECONDS - t0)) s"
    tar czf "$OUT/$name.tgz" -C "$WORK" "$name"
}

sweep() {  # sweep NAME MODEL DTYPE [benchmark args...]: the issue-7 decode sweep, M 1-16, graphs
    local name=$1 model=$2 dtype=$3
    shift 3
    step "$name" bash scripts/device/bench.sh --model "$model" --m 1,2,4,8,16 --dtype "$dtype" \
        --graph "$@"
}

default_decode_sweeps() {  # the sweeps both `perf` and `decode` run, default launches
    sweep decode-8b-fp16 llama3-8b fp16 --epilogue-overhead
    sweep decode-8b-bf16 llama3-8b bf16
    sweep decode-70b-fp16 llama3-70b-tp8 fp16
}

run_group() {
case "$1" in
  correctness)
    step verify bash scripts/device/verify.sh
    step capi bash scripts/device/capi_check.sh
    ;;
  perf)
    step bench-llama3-8b bash scripts/device/bench.sh
    default_decode_sweeps
    ;;
  decode)
    step verify-quick bash scripts/device/verify.sh --quick
    default_decode_sweeps
    sweep decode-70b-bf16 llama3-70b-tp8 bf16
    sweep decode-8b-fp16-pdl llama3-8b fp16 --pdl
    sweep decode-70b-fp16-pdl llama3-70b-tp8 fp16 --pdl
    ;;
  python)
    step python bash scripts/device/python_check.sh
    ;;
  baseline)
    default_decode_sweeps
    sweep decode-70b-bf16 llama3-70b-tp8 bf16
    ;;
  linear)
    sweep decode-8b-fp16-plain llama3-8b fp16
    step linear bash scripts/device/linear_check.sh "$WORK/decode-8b-fp16-plain/bench.json" \
        .carry/bench-json/*/bench.json
    step pytest bash scripts/device/python_check.sh --pytest-only
    ;;
  allm)
    step bench-allm-8b-fp16 bash scripts/device/bench.sh --model llama3-8b \
        --m 1,16,64,256,1024,4096,16384 --dtype fp16 --graph
    ;;
  acceptance)
    # Issue 22/23's one-visit check: the full correctness matrix, then the fp16 8B decode sweep
    # of this build and of e53226d back to back (.carry/old-e53226d/sparseflow, built from that
    # commit on the dev machine; each case within 3% is the criterion).
    step verify bash scripts/device/verify.sh
    sweep decode-8b-fp16 llama3-8b fp16
    if [[ -x .carry/old-e53226d/sparseflow ]]; then
        SPARSEFLOW_BIN=.carry/old-e53226d/sparseflow sweep decode-8b-fp16-e53226d llama3-8b fp16
    else
        echo "=== no .carry/old-e53226d/sparseflow: the baseline sweep is skipped" >&2
    fi
    ;;
  sm90)
    # The Hopper family straight from its cubins (build them here first:
    # python3 scripts/device/sm90_dev.py build .carry/sm90k --configs ...): float64 checks of
    # every built variant, then timings against cuBLAS at M 128-8192; SM90_TIMEOUT (300 s)
    # bounds it. For the SF_ASYNC_MAINLOOP A/B build the cubins with --no-hang-guard and
    # config field 9 (sm90_dev.py's docstring).
    step sm90-dev bash -c 'timeout "${SM90_TIMEOUT:-300}" python3 scripts/device/sm90_dev.py run .carry/sm90k "$OUT/sm90.json"'
    ;;
  pytest)
    step pytest bash scripts/device/python_check.sh --pytest-only
    ;;
  soak)
    step soak bash -c 'IFS=, read -r n k m <<<"${SOAK_SHAPE:-14336,4096,8192}"; python3 scripts/device/sm90_dev.py soak .carry/sm90k "$n" "$k" "$m" "${SOAK_S:-6}" "$OUT/soak.json" ${SOAK_KERNELS//,/ }'
    ;;
  memory)
    step memory bash scripts/device/memory_check.sh
    ;;
  tp)
    step tp bash scripts/device/tp_check.sh
    ;;
  tune)
    step tune bash scripts/device/tune.sh
    ;;
  profile)
    step sm90-profile bash scripts/device/sm90_profile.sh
    ;;
  prefill|verify-tuned|verify-llama)
    if [[ -f $WORK/tune/h200.json ]]; then export SPARSEFLOW_TUNING=$WORK/tune/h200.json; fi
    ;;&
  verify-tuned)
    step verify-tuned bash scripts/device/verify.sh --ms 100,256,513 --shapes 1024x4096,4096x4096
    ;;
  verify-llama)
    step verify-llama bash scripts/device/verify.sh --ms 16,32,64,128,256,512,1024,2048,4096,8192 \
        --shapes 4096x4096,1024x4096,14336x4096,4096x14336
    ;;
  prefill)
    step prefill-8b-fp16 bash scripts/device/bench.sh --model llama3-8b \
        --m 32,64,128,256,512,1024,2048,4096,8192,16384 --dtype fp16 --graph
    ;;
  *)
    echo "usage: $0 GROUP [GROUP...]; groups: $ALL_GROUPS" >&2
    exit 2
    ;;
esac
}

ALL_GROUPS="correctness perf decode python baseline linear allm sm90 soak acceptance pytest memory tp tune prefill verify-tuned verify-llama profile"
[[ $# -gt 0 ]] || { echo "usage: $0 GROUP [GROUP...]; groups: $ALL_GROUPS" >&2; exit 2; }
for group in "$@"; do  # unknown names fail before any GPU time is spent
    [[ " $ALL_GROUPS " == *" $group "* ]] || { echo "unknown group $group; groups: $ALL_GROUPS" >&2; exit 2; }
done
for group in "$@"; do run_group "$group"; done
rc=0
for name in "${!RC[@]}"; do
    echo "$name: exit ${RC[$name]}"
    [[ ${RC[$name]} -ne 0 ]] && rc=1
done
exit $rc
