#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests (bench models, bad input, the ONNX backend
# suite) and the Python module's tests. Installs what it needs on first use: a venv in .venv with
# the pinned onnx (scripts/setup-venv.sh), the backend test data in .cache/onnx-backend, and the
# runnx Python module built into that venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "Python venv (.venv) with the pinned onnx, onnxruntime and maturin"
bash scripts/setup-venv.sh
py=.venv/bin/python

step "ONNX backend test data (.cache/onnx-backend, generated once)"
"$py" scripts/gen_backend_data.py

step "Rust tests"
cargo test --release --no-fail-fast

step "Python module (maturin develop --release into .venv)"
VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" .venv/bin/maturin develop --release --quiet

step "Python tests"
.venv/bin/python -m pytest -q python/tests

if [ -f ../shared/examples/seed_inference.py ]; then
    step "../shared/examples/seed_inference.py"
    .venv/bin/python ../shared/examples/seed_inference.py
else
    echo "!!!!!!!! SKIPPED seed_inference.py: ../shared/examples is not beside the repository !!!!!!!!"
fi
