#!/usr/bin/env bash
# The GPU checks of the GPU path in one go (~10 minutes on one H200): see bench/gpu_check.py.
#
#   bash bench/gpu_check.sh [--quick] [--only tests,scaling_bf16,...]
#
# Results: bench/results/gpu_check.json (all steps, test outcomes, every figure) and the steps'
# bench/results/gpu_*.json; copied to $OUT when set. The package needs the lmdb module; where the
# machine lacks it, carry a wheel: here, in the repo root, `echo /.whl/ >> .git/info/exclude` and
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl lmdb==1.6.2
# then name .whl in the device call's carry. This script installs it into /tmp/site.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import lmdb" 2>/dev/null && ls .whl/lmdb-*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/lmdb-*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
exec "$PY" -m bench.gpu_check "$@"
