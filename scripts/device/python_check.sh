#!/usr/bin/env bash
# GPU machine: the Python package with CUDA. Runs the whole pytest suite (CUDA tests included:
# kernels through the custom op, torch.compile, CUDA graphs), then the end-to-end decode
# benchmark (Llama-style, 8B-class layer shapes, batch 1 and 16, dense vs sparse, eager and
# CUDA graphs). Results land in $OUT: pytest.txt, junit.xml, decode.json, summary.json.
# --pytest-only: stop after pytest.
#
# Needs the abi3 wheel built on the dev machine and carried in .carry/:
#   maturin build --release && mkdir -p .carry && cp target/wheels/sparseflow-*.whl .carry/
# then: run(command="bash scripts/device/python_check.sh", carry=[".carry"])
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/sparseflow-out}"
mkdir -p "$OUT"
source scripts/device/install_wheel.sh
# The GPU machine has no network: pytest comes from .carry/pydeps when it is not installed
# (pip download --only-binary=:all: --python-version 3.12 -d .carry/pydeps pytest).
if ! python3 -c "import pytest" 2>/dev/null; then
  python3 -m pip install --no-index --find-links .carry/pydeps --target "$SITE" pytest >>"$OUT/pip.txt" 2>&1 || { cat "$OUT/pip.txt"; exit 2; }
fi
export TORCHINDUCTOR_COMPILE_THREADS="${TORCHINDUCTOR_COMPILE_THREADS:-16}"
export SPARSEFLOW_CACHE_DIR="${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch, sparseflow; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'sparseflow', sparseflow.__version__, sparseflow.__file__)" | tee "$OUT/versions.txt"

# -p no:cacheprovider: the work tree may be read-only-ish; results go to $OUT.
SPARSEFLOW_BIN="${SPARSEFLOW_BIN:-$PWD/.carry/bench/sparseflow}" timeout 200 python3 -m pytest python/tests -q -ra -p no:cacheprovider --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/pytest.txt"
pytest_rc=${PIPESTATUS[0]}
if [[ "${1:-}" == "--pytest-only" ]]; then
    exit "$pytest_rc"
fi

# PDL_AB=1 also runs the sparse model with programmatic dependent launch on (--pdl-ab).
timeout 330 python3 python/benchmarks/decode.py --layers "${LAYERS:-4}" --new-tokens "${NEW_TOKENS:-32}" \
  --budget-s "${BUDGET_S:-240}" ${PDL_AB:+--pdl-ab} --out "$OUT/decode.json" 2>&1 | tail -60 | tee "$OUT/decode.txt"
bench_rc=${PIPESTATUS[0]}

python3 - "$OUT" "$pytest_rc" "$bench_rc" <<'PY'
import json, sys, pathlib
out, pytest_rc, bench_rc = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
summary = {"pytest_rc": pytest_rc, "bench_rc": bench_rc}
tail = (out / "pytest.txt").read_text().strip().splitlines()[-1:] if (out / "pytest.txt").exists() else []
summary["pytest"] = tail[0] if tail else None
if (out / "decode.json").exists():
    d = json.loads((out / "decode.json").read_text())
    summary["sparse_over_dense"] = d.get("sparse_over_dense")
    summary["tokens_per_s"] = {k: v.get("tokens_per_s", v.get("error")) for k, v in d.get("results", {}).items()}
    summary["logits_rel_error"] = d.get("logits_rel_error")
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
PY
exit $(( pytest_rc != 0 || bench_rc != 0 ))
