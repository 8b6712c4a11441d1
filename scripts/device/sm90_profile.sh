#!/usr/bin/env bash
# GPU machine: Nsight Compute on the kernels `sparseflow benchmark` times at one large-M shape —
# SparseFlow's (as the runtime plans it, tuning table included) and cuSPARSELt's — to see what
# limits prefill (issue 24): the tensor pipe, shared memory, L2, DRAM, or stalls. SM clocks are
# left alone (--clock-control none, as the benchmarks run). Writes $OUT/ncu-<who>.csv (every
# metric of the sections below), $OUT/summary.txt (the few that decide) and
# $OUT/tensor-metrics.txt (the tensor-pipe metric names this ncu knows), $OUT/sparseflow.ncu-rep
# and $OUT/source-sparseflow.csv (warp stall samples per SASS instruction of SparseFlow's kernel).
#
# Build here first: bash scripts/device/build_carry.sh --no-cache (or only .carry/bench), then
#   run(command="bash scripts/device/sm90_profile.sh", carry=[".carry"])
# SHAPE="N,K" (default 14336,4096: gate/up), M (default 8192), DTYPE (fp16), NCU_TIMEOUT (150 s
# per kernel); NO_CUSPARSELT=1 profiles SparseFlow's kernel alone (e.g. a second configuration
# chosen through SPARSEFLOW_TUNING).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sm90-profile}
mkdir -p "$OUT"
source scripts/device/cli_env.sh
SECTIONS=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis
          --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats)
# Named metrics for the summary (Hopper): tensor pipe, shared memory, L2, DRAM, L2 traffic.
METRICS=sm__inst_executed_pipe_tensor_op_gmma.sum,sm__pipe_tensor_cycles_active_realtime.avg.pct_of_peak_sustained_elapsed,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second

# One sample of each contender at the shape: ncu replays the launch it profiles once per pass.
BENCH=("$BIN" benchmark --shape "${SHAPE:-14336,4096}" --m "${M:-8192}" --dtype "${DTYPE:-fp16}"
       --samples 1 --sample-ms 0.01 --warmup-ms 0)

profile() {  # profile WHO KERNEL_REGEX: the first launch of a matching kernel, eager, no graph
    local who=$1 regex=$2
    timeout "${NCU_TIMEOUT:-150}" ncu --clock-control none -k "regex:$regex" -c 1 \
        "${SECTIONS[@]}" --metrics "$METRICS" --csv --page details \
        "${BENCH[@]}" >"$OUT/ncu-$who.csv" 2>"$OUT/ncu-$who.err"
    echo "$who: exit $? ($(wc -l <"$OUT/ncu-$who.csv") csv lines)"
}
# cuBLAS is left out: the benchmark's dense-peak calibration GEMM (another shape) runs first
# and would be the kernel caught; cuSPARSELt's compression kernel is skipped by name.
profile sparseflow '^sparseflow_'
[[ ${NO_CUSPARSELT:-0} == 1 ]] || profile cusparselt '^(?!sparseflow_)(?!.*compress).*(sparse|sp_gemm|spgemm)'
# Where SparseFlow's warps stall, per SASS instruction (PC sampling of one launch).
timeout "${NCU_TIMEOUT:-150}" ncu --clock-control none -k "regex:^sparseflow_" -c 1 --section SourceCounters \
    --section WarpStateStats -o "$OUT/sparseflow" -f "${BENCH[@]}" >"$OUT/ncu-source.log" 2>&1 &&
    ncu -i "$OUT/sparseflow.ncu-rep" --page source --csv --print-source sass >"$OUT/source-sparseflow.csv" 2>>"$OUT/ncu-source.log"
echo "source page: exit $? ($(wc -l <"$OUT/source-sparseflow.csv" 2>/dev/null || echo 0) lines)"
ncu --query-metrics --chip gh100 2>/dev/null | grep -i -E "tensor|gmma" >"$OUT/tensor-metrics.txt" || true

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import csv, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = []
for path in sorted(out.glob("ncu-*.csv")):
    text = path.read_text(errors="replace").splitlines()
    rows += [dict(r, ID=f"{path.stem}:{r.get('ID')}") for r in csv.DictReader(l for l in text if l.startswith('"'))]
keys = {"gpu__time_duration.sum": "time", "sm__pipe_tensor_cycles_active_realtime.avg.pct_of_peak_sustained_elapsed": "tensor pipe %",
        "sm__inst_executed_pipe_tensor_op_gmma.sum": "gmma insts",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed": "smem lsu %",
        "lts__throughput.avg.pct_of_peak_sustained_elapsed": "L2 %", "lts__t_bytes.sum": "L2 bytes",
        "lts__t_sector_hit_rate.pct": "L2 hit %", "dram__throughput.avg.pct_of_peak_sustained_elapsed": "DRAM %",
        "dram__bytes_read.sum": "DRAM read", "sm__cycles_elapsed.avg.per_second": "SM clock"}
by_launch = {}
for r in rows:
    by_launch.setdefault(r.get("ID"), []).append(r)
if not by_launch:
    print("no kernels profiled: see ncu-*.err")
for launch, rs in by_launch.items():
    name = rs[0].get("Kernel Name", "")
    print(f"[{launch}] {name[:150]}")
    print(f"  grid {rs[0].get('Grid Size', '')} block {rs[0].get('Block Size', '')}")
    for r in rs:
        m = r.get("Metric Name", "")
        if m in keys:
            print(f"  {keys[m]:14} {r.get('Metric Value', '')} {r.get('Metric Unit', '')}")
        elif r.get("Section Name", "").startswith(("GPU Speed Of Light", "Memory Workload", "Warp State", "Compute Workload")) or m in (
                "Registers Per Thread", "Dynamic Shared Memory Per Block", "Achieved Occupancy",
                "Issue Slots Busy", "Warp Cycles Per Issued Instruction"):
            print(f"  {m[:60]:60} {r.get('Metric Value', '')} {r.get('Metric Unit', '')}")
PY
