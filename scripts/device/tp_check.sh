#!/usr/bin/env bash
# GPU machine, two GPUs (nvidia-h200-x2): tensor parallelism of issue 28, point 5
# (python/benchmarks/tp.py under torchrun, one process per GPU): correctness of
# sf.sparsify(model, tp_group=...) against the single-process sparse model (eager and CUDA graph),
# then a Llama-3-70B-shaped decoder stack at TP = 2 (80 layers by default; LAYERS=n narrows it),
# dense vs 2:4 sparse, decode at batch 1 and 16 and prefill of 2048 tokens under CUDA graphs:
# step time and linear-weight memory per GPU. Writes $OUT/tp.json (with the NCCL version and
# `nvidia-smi topo -m`), $OUT/tp.txt (the log), $OUT/topo.txt and $OUT/gpu.txt.
#
# NVLink multicast stays off in every process (exported here, inherited by torchrun's workers,
# and set again by tp.py itself before torch.distributed starts); nothing calls cuMulticastCreate.
#
# Needs the abi3 wheel in .carry/ (bash scripts/device/build_carry.sh --no-cache), then:
#   run(command="bash scripts/device/tp_check.sh", carry=[".carry"], kind="nvidia-h200-x2")
# CPU dry run on any machine (2 gloo processes, tiny shapes, the installed package; seconds):
#   bash scripts/device/tp_check.sh --dry-run
set -uo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
OUT="${OUT:-/tmp/sparseflow-out}"
mkdir -p "$OUT"

if [[ "${1:-}" == "--dry-run" ]]; then
  PYTHON="${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}"
  timeout 300 "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node 2 \
    python/benchmarks/tp.py --dry-run --out "$OUT/tp-dry.json" 2>&1 | tee "$OUT/tp-dry.txt"
  exit "${PIPESTATUS[0]}"
fi

gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [[ "$gpus" -lt 2 ]]; then
  echo "tp_check.sh needs two GPUs (nvidia-h200-x2), found $gpus" >&2
  exit 2
fi
source scripts/device/install_wheel.sh
export SPARSEFLOW_CACHE_DIR="${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
nvidia-smi topo -m >"$OUT/topo.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "nccl", torch.cuda.nccl.version())' >>"$OUT/gpu.txt" 2>&1
timeout 580 python3 -m torch.distributed.run --standalone --nproc_per_node 2 python/benchmarks/tp.py \
  --layers "${LAYERS:-80}" --dtype "${DTYPE:-fp16}" --out "$OUT/tp.json" 2>&1 | tee "$OUT/tp.txt"
exit "${PIPESTATUS[0]}"
