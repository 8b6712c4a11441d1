#!/usr/bin/env bash
# GPU machine: Nsight Compute on the kernels `sparseflow benchmark` times at one large-M shape —
# SparseFlow's (as the runtime plans it, tuning table included), cuBLAS's and cuSPARSELt's — to
# see what limits prefill (issue 24): the tensor pipe, shared memory, L2, DRAM, or stalls. SM
# clocks are left alone (--clock-control none, as the benchmarks run). Writes $OUT/ncu.csv (every
# metric of the sections below, one block per kernel launch) and $OUT/summary.txt (the few that
# decide, per kernel).
#
# Build here first: bash scripts/device/build_carry.sh --no-cache (or only .carry/bench), then
#   run(command="bash scripts/device/sm90_profile.sh", carry=[".carry"])
# SHAPE="N,K" (default 14336,4096: gate/up), M (default 8192), DTYPE (fp16), NCU_TIMEOUT (420 s), LAUNCHES (kernels
# profiled, default 40: enough to reach every contender; the summary keeps the first launch of
# each kernel; helper kernels are skipped by name).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/sm90-profile}
mkdir -p "$OUT"
BIN=${SPARSEFLOW_BIN:-.carry/bench/sparseflow}
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export SPARSEFLOW_CACHE_DIR=${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}
SECTIONS=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis
          --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats)
# Named metrics for the summary (Hopper): tensor pipe, shared memory, L2, DRAM, L2 traffic.
METRICS=sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed,l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed,lts__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,lts__t_sector_hit_rate.pct,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,gpu__time_duration.sum,sm__cycles_elapsed.avg.per_second

# The GEMM kernels of every contender; not the benchmark's weight-rotation copies or fills.
# Eager launches, no graph: ncu replays each profiled launch once per pass.
timeout "${NCU_TIMEOUT:-420}" ncu --clock-control none -k "regex:sf_|gemm|nvjet|xmma|sparse|cutlass" -c "${LAUNCHES:-40}" \
    "${SECTIONS[@]}" --metrics "$METRICS" --csv --page details \
    "$BIN" benchmark --shape "${SHAPE:-14336,4096}" --m "${M:-8192}" --dtype "${DTYPE:-fp16}" \
    --samples 1 --sample-ms 0.01 --warmup-ms 0 >"$OUT/ncu.csv" 2>"$OUT/ncu.err"
echo "ncu: exit $? ($(wc -l <"$OUT/ncu.csv") csv lines)"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import csv, sys, pathlib
out = pathlib.Path(sys.argv[1])
text = (out / "ncu.csv").read_text(errors="replace").splitlines()
rows = list(csv.DictReader(l for l in text if l.startswith('"')))
keys = {"gpu__time_duration.sum": "time", "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_elapsed": "tensor pipe %",
        "l1tex__data_pipe_lsu_wavefronts_mem_shared.avg.pct_of_peak_sustained_elapsed": "smem lsu %",
        "lts__throughput.avg.pct_of_peak_sustained_elapsed": "L2 %", "lts__t_bytes.sum": "L2 bytes",
        "lts__t_sector_hit_rate.pct": "L2 hit %", "dram__throughput.avg.pct_of_peak_sustained_elapsed": "DRAM %",
        "dram__bytes_read.sum": "DRAM read", "sm__cycles_elapsed.avg.per_second": "SM clock"}
stall_prefix = "smsp__pcsamp_warps_issue_stalled_"
by_launch = {}
for r in rows:
    by_launch.setdefault(r.get("ID"), []).append(r)
if not by_launch:
    print("no kernels profiled: see ncu.err")
seen = set()
for launch, rs in by_launch.items():
    name = rs[0].get("Kernel Name", "")
    if name in seen:  # the first launch of each kernel is enough
        continue
    seen.add(name)
    print(f"[{launch}] {name[:150]}")
    print(f"  grid {rs[0].get('Grid Size', '')} block {rs[0].get('Block Size', '')}")
    for r in rs:
        m = r.get("Metric Name", "")
        if m in keys:
            print(f"  {keys[m]:14} {r.get('Metric Value', '')} {r.get('Metric Unit', '')}")
        elif r.get("Section Name", "").startswith("GPU Speed Of Light") or m in (
                "Registers Per Thread", "Dynamic Shared Memory Per Block", "Achieved Occupancy",
                "Issue Slots Busy", "Warp Cycles Per Issued Instruction"):
            print(f"  {m[:60]:60} {r.get('Metric Value', '')} {r.get('Metric Unit', '')}")
PY
