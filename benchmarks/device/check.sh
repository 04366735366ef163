#!/usr/bin/env bash
# The device pack's entry point: bash benchmarks/device/check.sh [--dry-run] [--out DIR] [--seed N]
# Runs from any folder; uses the python on PATH that has torch (python3, else python) and this
# checkout's spherical_dists (no install needed). See benchmarks/device/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
for arg in "$@"; do
    if [ "$arg" = "--dry-run" ]; then
        export TRITON_INTERPRET=1  # before triton is imported: the kernel runs on CPU tensors
    fi
done
exec "$PYTHON" benchmarks/device/pack.py "$@"
