#!/usr/bin/env bash
# GPU machine: Nsight Compute on the sm90 family's large-M kernel beside cuSPARSELt's and
# cuBLAS's at the same shape (issue 24: what limits prefill — shared memory, L2, the tensor
# pipe, or the overlap of loads and MMAs). One kernel launch each, SM clocks left alone
# (--clock-control none, as the benchmarks run). Writes $OUT/ncu-<who>.csv (every metric of the
# sections below) and $OUT/summary.txt (the few that decide).
#
# Build here first: python3 scripts/device/sm90_dev.py build .carry/sm90k --configs 256x128x64x4,128x128x128x4
# then: run(command="bash scripts/device/sm90_profile.sh", carry=[".carry"])
# SHAPE="N K M" (default 4096 14336 8192, down_proj at a long prompt), CONFIG (default the
# 256x128x64x4 fp16 kernel).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sm90-profile}
mkdir -p "$OUT"
read -r N K M <<<"${SHAPE:-4096 14336 8192}"
KERNEL=${CONFIG:-sf_sm90_f16_none_m256n128k64s4g8i1sk1}
SECTIONS=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables
          --section ComputeWorkloadAnalysis --section WarpStateStats --section SchedulerStats --section Occupancy)
# Named metrics for the summary (Hopper): tensor pipe, shared memory, L2, DRAM.
METRICS=sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,l1tex__throughput.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed,gpu__time_duration.sum

profile() {  # profile WHO KERNEL_REGEX COMMAND...
    local who=$1 regex=$2
    shift 2
    timeout 150 ncu --clock-control none --target-processes all -k "regex:$regex" -c 1 --launch-skip 1 \
        "${SECTIONS[@]}" --metrics "$METRICS" --csv --page details "$@" >"$OUT/ncu-$who.csv" 2>"$OUT/ncu-$who.err"
    echo "$who: exit $? ($(wc -l <"$OUT/ncu-$who.csv") csv lines)"
}

# SparseFlow's kernel straight from its cubin (sm90_dev.py launches it 3 times).
profile sparseflow "sf_sm90" python3 scripts/device/sm90_dev.py profile .carry/sm90k "$KERNEL" "$N" "$K" "$M"

# cuSPARSELt (torch's build) and cuBLAS on the same shape, through torch.
cat >/tmp/sm90_profile_peers.py <<'PY'
import sys, torch
N, K, M, who = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
w = torch.randn(N, K, device="cuda", dtype=torch.float16)
mask = torch.tensor([1, 1, 0, 0], device="cuda", dtype=torch.bool).repeat(N, K // 4)
w = w * mask
x = torch.randn(K, M, device="cuda", dtype=torch.float16)
if who == "cusparselt":
    c = torch._cslt_compress(w)
    run = lambda: torch._cslt_sparse_mm(c, x)
else:
    run = lambda: torch.mm(w, x)
for _ in range(3):
    run()
torch.cuda.synchronize()
PY
profile cusparselt "sm90|sparse|xmma|cutlass|gemm" python3 /tmp/sm90_profile_peers.py "$N" "$K" "$M" cusparselt
profile cublas "sm90|gemm|xmma|cutlass|nvjet" python3 /tmp/sm90_profile_peers.py "$N" "$K" "$M" cublas

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import csv, sys, pathlib
out = pathlib.Path(sys.argv[1])
keys = ["gpu__time_duration.sum", "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed",
        "l1tex__throughput.avg.pct_of_peak_sustained_elapsed", "lts__throughput.avg.pct_of_peak_sustained_elapsed",
        "dram__throughput.avg.pct_of_peak_sustained_elapsed", "sm__throughput.avg.pct_of_peak_sustained_elapsed"]
for who in ("sparseflow", "cusparselt", "cublas"):
    path = out / f"ncu-{who}.csv"
    rows = list(csv.DictReader(l for l in path.read_text().splitlines() if l.startswith('"'))) if path.exists() else []
    if not rows:
        print(who, "no rows (see", path.with_suffix(".err").name + ")")
        continue
    print(who, rows[0].get("Kernel Name", "")[:90])
    for r in rows:
        if r.get("Metric Name") in keys or r.get("Section Name") in ("GPU Speed Of Light Throughput",):
            print(f"  {r.get('Section Name', '')[:28]:28} {r.get('Metric Name', '')[:70]:70} {r.get('Metric Value', '')} {r.get('Metric Unit', '')}")
PY
