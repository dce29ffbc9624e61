#!/usr/bin/env bash
# Certification workloads on the shipped model against the floor: 785 concrete forward passes
# (the image and its 784 single-pixel flips) with zonocert's own executor. Prints each
# workload's wall time, peak memory and ratio to the floor.
#   bash benchmarks/certify.sh [MODEL] [MNIST_DIR] [PIXELS]
# PIXELS defaults to all; the abstract workloads on B0 take minutes per pixel batch, so a
# subset such as 0-783:16 gives a quick reading (times are then per pixel x 784).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/efficientnet_b0_mnist.onnx}
MNIST=${2:-../shared/data/mnist}
PIXELS=${3:-all}
cargo build --release -q
Z=target/release/zonocert
OUT=$(mktemp -d)
peak() { awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$1"; }
run() { # name, args...
  local name=$1; shift
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v "$Z" "$@" --quiet --out "$OUT/$name" > "$OUT/$name.stdout" 2> "$OUT/$name.time"
  t1=$(date +%s.%N)
  local n secs
  n=$(python3 -c "import json;print(len(json.load(open('$OUT/$name/report.json'))['pixels']))")
  secs=$(python3 -c "print($t1-$t0)")
  python3 -c "
n=$n; s=$secs; floor=$FLOOR
full = s/n*784
print(f'{\"$name\":<28} {n:>4} px  {s:8.1f} s  ({full:8.1f} s for 784 px)  peak {$(peak "$OUT/$name.time")} MiB  ratio to floor {full/floor:8.1f}')"
}
# The floor: 785 forward passes, batched, f64 (the precision of the reference evaluations).
t0=$(date +%s.%N)
"$Z" eval --model "$MODEL" --mnist "$MNIST" --limit 785 --batch 785 --precision f64 --json > "$OUT/floor.json"
t1=$(date +%s.%N)
FLOOR=$(python3 -c "print($t1-$t0)")
echo "floor: 785 forward passes (f64, batch 785, incl. model load) = ${FLOOR} s"
run precise-eps0      certify --model "$MODEL" --mnist "$MNIST" --index 0 --method precise --pixels "$PIXELS"
run diffzono-eps0     certify --model "$MODEL" --mnist "$MNIST" --index 0 --method diff-zonotope --pixels "$PIXELS"
run diffzono-eps2     certify --model "$MODEL" --mnist "$MNIST" --index 0 --eps 0.00784313725490196 --method diff-zonotope --pixels "$PIXELS"
run diffzono-global   certify --model "$MODEL" --region global --method diff-zonotope --pixels "$PIXELS"
rm -rf "$OUT"
