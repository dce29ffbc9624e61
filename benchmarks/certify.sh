#!/usr/bin/env bash
# Certification workloads on the shipped model against the floor: 785 concrete forward passes
# (the image and its 784 single-pixel flips) with zonocert's own executor. Prints each
# workload's wall time, peak memory and ratio to the floor, as a Markdown table.
#   bash benchmarks/certify.sh [MODEL] [MNIST_DIR] [PIXELS]
# PIXELS defaults to all; the abstract workloads on B0 take minutes per pixel batch, so a
# subset such as 0-783:16 gives a quick reading: the one-off part (model load and region
# analysis) is then counted once and the per-pixel rest scaled to 784 pixels.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/efficientnet_b0_mnist.onnx}
MNIST=${2:-../shared/data/mnist}
PIXELS=${3:-all}
cargo build --release -q
Z=target/release/zonocert
OUT=$(mktemp -d)
peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }
run() { # label, args...
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v "$Z" "$@" --quiet --out "$OUT/w" > "$OUT/w.stdout" 2> "$OUT/w.time"
  t1=$(date +%s.%N)
  python3 - "$OUT/w/report.json" "$(python3 -c "print($t1-$t0)")" "$FLOOR" "$(peak "$OUT/w.time")" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
secs, floor, peak, name = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
n = len(r["pixels"])
once = secs - r["time_s"] + r["region_analysis_s"]  # model load and region analysis
full = once + (secs - once) / n * 784
print(f"| {name} | {n} | {secs:,.1f} s | {full:,.0f} s | {peak} MiB | {full / floor:,.0f}× |")
PY
  rm -rf "$OUT/w"
}
# The floor: 785 forward passes, batched, f64 (the precision of the reference evaluations).
t0=$(date +%s.%N)
"$Z" eval --model "$MODEL" --mnist "$MNIST" --limit 785 --batch 785 --precision f64 --json > "$OUT/floor.json"
t1=$(date +%s.%N)
FLOOR=$(python3 -c "print($t1-$t0)")
echo "The floor: 785 forward passes of the model with zonocert's own executor (f64, batch 785, including the model load): $(python3 -c "print(f'{$FLOOR:.2f}')") s."
echo
echo "| workload | pixels | time | for 784 pixels | peak RSS | ratio to floor |"
echo "|---|---|---|---|---|---|"
run "ε = 0, \`precise\` (exact enclosure)" certify --model "$MODEL" --mnist "$MNIST" --index 0 --method precise --pixels "$PIXELS"
run "ε = 0, \`diff-zonotope\`" certify --model "$MODEL" --mnist "$MNIST" --index 0 --method diff-zonotope --pixels "$PIXELS"
run "ε = 2/255, \`diff-zonotope\` (default: screening)" certify --model "$MODEL" --mnist "$MNIST" --index 0 --eps 0.00784313725490196 --method diff-zonotope --pixels "$PIXELS"
run "ε = 2/255, \`diff-zonotope --no-screen\`" certify --model "$MODEL" --mnist "$MNIST" --index 0 --eps 0.00784313725490196 --method diff-zonotope --no-screen --pixels "$PIXELS"
run "global, \`diff-zonotope\` (default: screening)" certify --model "$MODEL" --region global --method diff-zonotope --pixels "$PIXELS"
run "global, \`diff-zonotope --no-screen\`" certify --model "$MODEL" --region global --method diff-zonotope --no-screen --pixels "$PIXELS"
rm -rf "$OUT"
