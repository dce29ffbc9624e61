#!/usr/bin/env bash
# Concrete executor latency/throughput (f32 and f64, batch 1 and 256) next to ONNX Runtime,
# on the shipped model and MNIST. Usage: bash benchmarks/executor.sh [MODEL] [MNIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/efficientnet_b0_mnist.onnx}
MNIST=${2:-../shared/data/mnist}
cargo build --release -q
Z=target/release/zonocert
for prec in f32 f64; do
  echo "zonocert $prec batch 1:   $($Z eval --model "$MODEL" --mnist "$MNIST" --limit 1000 --batch 1 --precision $prec --json)"
  echo "zonocert $prec batch 256: $($Z eval --model "$MODEL" --mnist "$MNIST" --batch 256 --precision $prec --json)"
done
echo "onnxruntime (2 threads):  $(python3 benchmarks/ort_baseline.py "$MODEL" "$MNIST" --threads 2)"
