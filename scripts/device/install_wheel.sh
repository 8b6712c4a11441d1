# Sourced by the device scripts that run the Python package (python_check.sh, memory_check.sh):
# installs the newest abi3 wheel carried in .carry/ into a fresh site directory and puts it on
# PYTHONPATH. Expects the repository root as the working directory and $OUT set; exits 2 with a
# message when no wheel was carried or pip fails (its log stays in $OUT/pip.txt).
SITE=/tmp/sparseflow-site
rm -rf "$SITE"
wheel=$(ls -t .carry/sparseflow-*.whl 2>/dev/null | head -1)
if [ -z "$wheel" ]; then
  echo "no wheel in .carry/: run scripts/device/build_carry.sh and carry .carry" >&2
  exit 2
fi
python3 -m pip install --no-deps --no-index --target "$SITE" "$wheel" >"$OUT/pip.txt" 2>&1 || { cat "$OUT/pip.txt"; exit 2; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
