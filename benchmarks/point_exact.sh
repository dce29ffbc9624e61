#!/usr/bin/env bash
# Single-image certificates on the shipped model with the precise method, all 784 pixels of the
# first N MNIST test images, each beside the f64 reference value; prints a Markdown table.
#   bash benchmarks/point_exact.sh [N] [MODEL] [MNIST_DIR] [PIXELS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
MODEL=${2:-models/efficientnet_b0_mnist.onnx}
MNIST=${3:-../shared/data/mnist}
PIXELS=${4:-all}
cargo build --release -q
OUT=out/point_exact
mkdir -p "$OUT"
for ((i = 0; i < N; i++)); do
  target/release/zonocert certify --model "$MODEL" --mnist "$MNIST" --index "$i" --method precise \
    --with-exact --pixels "$PIXELS" --quiet --out "$OUT/img$i" > /dev/null
done
python3 - "$OUT" "$N" <<'PY'
import json, sys, statistics
out, n = sys.argv[1], int(sys.argv[2])
print("| image | label | pixels | max certified | median certified | max (upper−lower)/upper | min upper − f64 exact | max upper/exact − 1 | time (s) | peak RSS (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|")
worst = 0.0
for i in range(n):
    r = json.load(open(f"{out}/img{i}/report.json"))
    px = r["pixels"]
    up = [p["upper"] for p in px]
    width = max((p["upper"] - p["lower"]) / p["upper"] for p in px if p["upper"] > 0)
    gap = min(p["upper"] - p["exact"] for p in px)
    rel = max(p["upper"] / p["exact"] - 1 for p in px if p["exact"] > 0)
    worst = max(worst, rel)
    print(f"| {i} | {r['region']['label']} | {len(px)} | {max(up):.4e} | {statistics.median(up):.4e} | {width:.1e} | {gap:.1e} | {rel:.1e} | {r['time_s']:.1f} | {r['peak_rss_mib']:.0f} |")
print(f"\nTightness target upper ≤ exact·(1 + 10⁻³) + 10⁻⁹: worst upper/exact − 1 = {worst:.1e}")
PY
