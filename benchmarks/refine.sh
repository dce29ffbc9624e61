#!/usr/bin/env bash
# LP refinement against the unrefined differential zonotope, per image: median and max of the
# certified pixel bounds, LP count and time.
#   bash benchmarks/refine.sh [MODEL] [IMAGES] [PIXELS] [EPS] [EXTRA...]
# defaults: tests/vectors/tiny_effnet_tv.onnx, 5 (test images 0..4), 0-783:4, 2/255.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tests/vectors/tiny_effnet_tv.onnx}
images=${2:-5}
pixels=${3:-0-783:4}
eps=${4:-0.00784313725490196}
shift $(( $# < 4 ? $# : 4 ))
mnist=${ZONOCERT_MNIST:-../shared/data/mnist}
cargo build --release -q
out=out/refine_bench
mkdir -p "$out"
echo "| image | pixels | median plain | median +LP | median gain | max plain | max +LP | LPs | LP s | plain s | +LP s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for ((i = 0; i < images; i++)); do
  target/release/zonocert certify --model "$model" --mnist "$mnist" --index "$i" --eps "$eps" --pixels "$pixels" --quiet --out "$out/plain_$i" >/dev/null
  target/release/zonocert certify --model "$model" --mnist "$mnist" --index "$i" --eps "$eps" --pixels "$pixels" --quiet --refine lp "$@" --out "$out/lp_$i" >/dev/null
  python3 - "$out/plain_$i/report.json" "$out/lp_$i/report.json" "$i" <<'PY'
import json, statistics, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ua = [p["upper"] for p in a["pixels"]]
ub = [p["upper"] for p in b["pixels"]]
assert all(y <= x for x, y in zip(ua, ub)), "refined bound above unrefined"
ma, mb = statistics.median(ua), statistics.median(ub)
r = b["refinement"]
print(f"| {sys.argv[3]} | {len(ua)} | {ma:.3e} | {mb:.3e} | {100 * (1 - mb / ma):.1f} % | {max(ua):.3e} | {max(ub):.3e} | {r['lps']} | {r['seconds']:.1f} | {a['time_s']:.1f} | {b['time_s']:.1f} |")
PY
done
