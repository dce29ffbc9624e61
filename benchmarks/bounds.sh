#!/usr/bin/env bash
# L∞ robustness bounds (`zonocert bounds`): zonotope against interval, per radius, over the first
# N test images: median logit width of each, the median per-logit width ratio zonotope/interval,
# the fraction verified by each, and the mean time per image.
#   bash benchmarks/bounds.sh [MODEL] [IMAGES] [EPS,EPS,...] [EXTRA...]
# defaults: the shipped B0, 20 (test images 0..19), 0.5/255, 1/255, 2/255.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/efficientnet_b0_mnist.onnx}
images=${2:-20}
epss=${3:-0.00196078431372549,0.00392156862745098,0.00784313725490196}
shift $(( $# < 3 ? $# : 3 ))
mnist=${ZONOCERT_MNIST:-../shared/data/mnist}
cargo build --release -q
out=out/bounds_bench
mkdir -p "$out"
echo "| ε | images | median logit width (interval) | median logit width (zonotope) | median width ratio z/i | max width ratio z/i | verified (interval) | verified (zonotope) | s/image (interval) | s/image (zonotope) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for eps in ${epss//,/ }; do
  for ((i = 0; i < images; i++)); do
    for m in interval zonotope; do
      target/release/zonocert bounds --model "$model" --mnist "$mnist" --index "$i" --eps "$eps" --method "$m" --json "$@" >"$out/${m}_${eps}_$i.json"
    done
  done
  python3 - "$out" "$eps" "$images" <<'PY'
import json, statistics, sys
out, eps, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
load = lambda m, i: json.load(open(f"{out}/{m}_{eps}_{i}.json"))
wi, wz, ratios, per_image, ver, t = [], [], [], [], {"interval": 0, "zonotope": 0}, {"interval": 0.0, "zonotope": 0.0}
for i in range(n):
    a, b = load("interval", i), load("zonotope", i)
    w = lambda d: [u - l for l, u in zip(d["logits"]["lower"], d["logits"]["upper"])]
    x, y = w(a), w(b)
    # Sampled logits lie in both: a zonotope logit wider than the interval one is a bug.
    assert all(yz <= xi * (1 + 1e-9) for xi, yz in zip(x, y)), f"image {i}: zonotope wider than interval"
    wi += x; wz += y
    r = [yz / xi for xi, yz in zip(x, y)]
    ratios += r; per_image.append(statistics.median(r))
    for m, d in (("interval", a), ("zonotope", b)):
        ver[m] += d["verified"]; t[m] += d["time_s"]
print(f"| {float(eps) * 255:g}/255 | {n} | {statistics.median(wi):.3e} | {statistics.median(wz):.3e} | {statistics.median(ratios):.3e} | {max(ratios):.3e} | {ver['interval']}/{n} | {ver['zonotope']}/{n} | {t['interval'] / n:.2f} | {t['zonotope'] / n:.2f} |")
PY
done
