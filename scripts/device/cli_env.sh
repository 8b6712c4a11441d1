# Sourced by the device scripts that run the carried `sparseflow` CLI (bench.sh, tune.sh,
# sm90_profile.sh): the binary, CUDA's libraries, cuSPARSELt from torch's environment (the
# benchmark's native 2:4 contender) and the kernel cache, seeded from .carry/kernel-cache
# (filled on the dev machine by build_carry.sh and `sparseflow tune --precompile-for sm_90a`).
BIN=${SPARSEFLOW_BIN:-.carry/bench/sparseflow}
# cuSPARSELt ships inside torch's environment on the GPU machine.
LT_DIR=$(python3 -c "import nvidia.cusparselt as m, os; print(os.path.join(list(m.__path__)[0], 'lib'))" 2>/dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LT_DIR:+:$LT_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [[ -n $LT_DIR ]]; then export SPARSEFLOW_CUSPARSELT=$LT_DIR; fi
export SPARSEFLOW_CACHE_DIR=${SPARSEFLOW_CACHE_DIR:-/tmp/sparseflow-cache}
mkdir -p "$SPARSEFLOW_CACHE_DIR"
if [[ -d .carry/kernel-cache ]]; then cp -r .carry/kernel-cache/. "$SPARSEFLOW_CACHE_DIR"/; fi
