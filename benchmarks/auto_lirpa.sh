#!/usr/bin/env bash
# The auto_LiRPA column: installs auto_LiRPA and onnx2torch into out/lirpa-venv (once), then runs
# benchmarks/auto_lirpa.py with the arguments given. auto_LiRPA's last PyPI release (0.3, 2022)
# requires torch < 1.13, which no longer installs on Python ≥ 3.11; the current auto_LiRPA that
# NeuralSAT 0.2.17 ships inside its wheel (src/abstractor/auto_LiRPA) is used instead, unmodified.
#   bash benchmarks/auto_lirpa.sh MODEL MNIST_DIR [--images …] [--eps …] [--pixels …] [--method CROWN]
set -euo pipefail
cd "$(dirname "$0")/.."
v=out/lirpa-venv
if [ ! -f "$v/ready" ]; then
  rm -rf "$v"
  python3 -m venv --system-site-packages "$v"
  "$v/bin/python" -c "import torch" 2> /dev/null || "$v/bin/pip" install -q torch
  "$v/bin/pip" install -q onnx onnx2torch appdirs gurobipy
  "$v/bin/pip" download -q --no-deps neuralsat==0.2.17 -d "$v/wheels"
  "$v/bin/python" -m zipfile -e "$v"/wheels/neuralsat-0.2.17-py3-none-any.whl "$v/neuralsat"
  touch "$v/ready"
fi
PYTHONPATH="$v/neuralsat/src/abstractor" "$v/bin/python" benchmarks/auto_lirpa.py "$@"
