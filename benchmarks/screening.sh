#!/usr/bin/env bash
# The default `certify` (diff-zonotope with its screening pass) on every pixel of the shipped
# model: test images 0-4 at eps 1/255 and 2/255, and the global region. One row per run: wall
# time for all pixels (model load and region analysis included), how many pixels the
# screening pass decided, the largest bound, the median unclamped mean-value bound (how far
# from informative), peak memory. Prints a Markdown table; exits
# non-zero if a run fails.
#   bash benchmarks/screening.sh [MODEL] [MNIST_DIR] [IMAGES] [PIXELS]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/efficientnet_b0_mnist.onnx}
MNIST=${2:-../shared/data/mnist}
IMAGES=${3:-0,1,2,3,4}
PIXELS=${4:-all}
cargo build --release -q
Z=target/release/zonocert
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)); \`$Z certify --model $MODEL … --pixels $PIXELS\`, default settings."
echo
echo "| region | image | pixels | screened | max upper | median mean-value bound | wall time (s) | region analysis (s) | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|---|---|"
row() { # label image args...
  local label=$1 image=$2; shift 2
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -v "$Z" certify --model "$MODEL" "$@" --pixels "$PIXELS" --quiet --out "$OUT/w" > "$OUT/w.stdout" 2> "$OUT/w.time"
  t1=$(date +%s.%N)
  python3 - "$OUT/w/report.json" "$(python3 -c "print($t1-$t0)")" "$(awk '/Maximum resident/ {printf "%.0f", $6/1024}' "$OUT/w.time")" "$label" "$image" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
secs, peak, label, image = float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
mv = sorted(p.get("mean_value_bound") or float("inf") for p in r["pixels"])
print(f"| {label} | {image} | {len(r['pixels'])} | {r['screened_pixels']} | {r['max_upper']:.3g} | {mv[len(mv) // 2]:.2e} | {secs:.1f} | {r['region_analysis_s']:.1f} | {peak} |")
PY
  rm -rf "$OUT/w"
}
for eps in 0.00392156862745098 0.00784313725490196; do
  label=$(python3 -c "print(f'ε = {round($eps * 255)}/255')")
  for i in ${IMAGES//,/ }; do
    row "$label" "$i" --mnist "$MNIST" --index "$i" --eps "$eps"
  done
done
row "global" "–" --region global
