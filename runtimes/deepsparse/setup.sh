#!/usr/bin/env bash
# The isolated environment onnxobc drives DeepSparse through: deepsparse 1.8.0 (end of life
# 2025-06) pins onnx<1.15 and numpy<2, so it cannot share onnxobc's environment. Needs Python 3.11
# (deepsparse 1.8.0 has a cp311 wheel) and x86-64 Linux. Usage: runtimes/deepsparse/setup.sh [PYTHON]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${1:-python3.11}"
"$python" -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q "deepsparse==1.8.0" "onnx<1.15" "numpy<2"
NM_DISABLE_ANALYTICS=1 "$here/.venv/bin/python" -c "import deepsparse; print('deepsparse', deepsparse.__version__)"
