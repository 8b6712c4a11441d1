#!/usr/bin/env bash
# Runs the C ABI tests (tests/c/*.c) on the GPU machine: each program against a GPU context
# (device index, default 0) and against the CPU backend (-1), compiled with
# `cc -std=c99 -Wall -Wextra -Werror -DSPARSEFLOW_TEST_CUDA` against include/sparseflow.h.
# The CUDA variant reaches the driver through dlopen("libcuda.so.1"): no CUDA headers needed.
#
# Build here first (the library is the only carried file; the header and C sources are tracked):
#   cargo build --release -p sparseflow-capi && mkdir -p .carry/capi \
#     && cp target/release/libsparseflow.so .carry/capi/
# Then (device tool) run with carry [".carry"]:  bash scripts/device/capi_check.sh [device]
# Writes <program>-<device>.log and capi_check.json to $OUT; exits non-zero if any run failed.
set -uo pipefail
OUT=${OUT:-/tmp/sparseflow-capi}
LIB_DIR=${SPARSEFLOW_LIB_DIR:-.carry/capi}
DEVICE=${1:-0}
CC=${CC:-cc}
BIN=$(mktemp -d)  # programs stay out of $OUT: only logs and JSON come back
mkdir -p "$OUT"
if [ ! -f "$LIB_DIR/libsparseflow.so" ]; then
  echo "no $LIB_DIR/libsparseflow.so: build and carry it (see the top of this script)" >&2
  exit 2
fi
# NVRTC and the driver for the runtime; the kernel cache somewhere writable.
export LD_LIBRARY_PATH=$LIB_DIR:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SPARSEFLOW_CACHE_DIR=${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/nvidia-smi.txt" 2>&1 || true

failed=0
json="{\"device\": $DEVICE, \"results\": {"
sep=""
for prog in pipeline errors threads device_layout; do
  exe="$BIN/$prog"
  if ! "$CC" -std=c99 -Wall -Wextra -Werror -pedantic -O1 -DSPARSEFLOW_TEST_CUDA -I include \
      "tests/c/$prog.c" -o "$exe" -L"$LIB_DIR" -lsparseflow -lpthread -ldl -lm \
      > "$OUT/$prog-build.log" 2>&1; then
    echo "BUILD FAILED: $prog"; cat "$OUT/$prog-build.log"
    json+="$sep\"$prog\": \"build failed\""; sep=", "; failed=1
    continue
  fi
  for dev in "$DEVICE" -1; do
    start=$(date +%s%N)
    "$exe" "$dev" > "$OUT/$prog-$dev.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    tail -n 30 "$OUT/$prog-$dev.log"
    if [ $rc -eq 0 ]; then status=pass; else status="fail (exit $rc)"; failed=1; fi
    echo "== $prog on device $dev: $status (${ms} ms)"
    json+="$sep\"$prog:$dev\": {\"status\": \"$status\", \"ms\": $ms}"; sep=", "
  done
done
json+="}}"
echo "$json" > "$OUT/capi_check.json"
echo "$json"
exit $failed
