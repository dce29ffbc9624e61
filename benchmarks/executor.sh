#!/usr/bin/env bash
# Concrete executor latency/throughput (f32 and f64, batch 1 and 256) next to ONNX Runtime,
# on the shipped model and MNIST, as a Markdown table (the ONNX Runtime rows need the Python
# package `onnxruntime`; they are left out, with a note, when it is missing).
#   bash benchmarks/executor.sh [MODEL] [MNIST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/efficientnet_b0_mnist.onnx}
MNIST=${2:-../shared/data/mnist}
cargo build --release -q
Z=target/release/zonocert
echo "| engine | precision | batch | images/s | latency per batch | accuracy |"
echo "|---|---|---|---|---|---|"
for prec in f32 f64; do
  for batch in 1 256; do
    limit=$([ "$batch" = 1 ] && echo "--limit 1000" || echo "")
    # shellcheck disable=SC2086
    "$Z" eval --model "$MODEL" --mnist "$MNIST" $limit --batch "$batch" --precision "$prec" --json | python3 -c "
import json, sys
d = json.load(sys.stdin)
print(f\"| zonocert | $prec | $batch | {d['images_per_s']:,.0f} | {d['latency_ms_per_batch']:.1f} ms | {d['correct']:,} / {d['n']:,} |\")"
  done
done
if python3 -c "import onnxruntime" 2>/dev/null; then
  python3 benchmarks/ort_baseline.py "$MODEL" "$MNIST" --threads 2 | python3 -c "
import json, sys
d = json.load(sys.stdin)
for b in (1, 256):
    r = d[f'batch{b}']
    acc = f\"{d['accuracy']:.2%} of 10,000\" if b == 256 else '–'
    print(f\"| ONNX Runtime 2 threads | f32 | {b} | {r['images_per_s']:,.0f} | {r['latency_ms_per_batch']:.1f} ms | {acc} |\")"
else
  echo
  echo "(ONNX Runtime rows left out: the Python package onnxruntime is not installed.)"
fi
