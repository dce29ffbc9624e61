#!/usr/bin/env bash
# Regenerates the measured tables of benchmarks/RESULTS.md. Each table sits between
#   <!-- generated: NAME -->   and   <!-- end generated -->
# and is replaced by the output of NAME's command below, in RESULTS.md and in
# papers/zonocert.md where the paper carries the same section; the prose around it is kept
# (read it again against the new numbers). A section is written into RESULTS.md as soon as it finishes,
# so an interrupted run keeps what it measured. Every section: about 4 hours on 2 cores, 2.5 of
# them for bench-b0-full, which resumes from out/bench-b0-full (delete it to measure afresh).
#   bash benchmarks/regenerate.sh [NAME ...]        (default: every section, in file order)
#   bash benchmarks/regenerate.sh --list
set -euo pipefail
cd "$(dirname "$0")/.."
mnist=${ZONOCERT_MNIST:-../shared/data/mnist}
results=benchmarks/RESULTS.md
paper=papers/zonocert.md
tiny=tests/vectors/tiny_effnet_tv.onnx
Z=target/release/zonocert

all=$(sed -n 's/^<!-- generated: \([a-z0-9-]*\) -->$/\1/p' "$results")
if [ "${1:-}" = "--list" ]; then
  echo "$all"
  exit 0
fi
names=${*:-$all}
for n in $names; do
  grep -qx "<!-- generated: $n -->" "$results" || { echo "no section '$n' in $results (known: $(echo $all))" >&2; exit 2; }
done
cargo build --release -q

section() { # NAME: prints the section's Markdown on stdout
  case $1 in
    point-exact) bash benchmarks/point_exact.sh 10 ;;
    curve)
      "$Z" curve --mnist "$mnist" --index 0 --pixels 0-783:8 \
        --eps 0,0.00392156862745098,0.00784313725490196 --attack-rounds 2 --quiet --out out/curve0 >/dev/null
      python3 - out/curve0/curve.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("| flipped bit | flip size | certified max (precise) | certified lower (precise) | worst pixel | time (s) |")
print("|---|---|---|---|---|---|")
for r in d["by_bit"]:
    print(f"| {r['bit']} | {2 ** r['bit']}/255 | {r['certified_max']:.4e} | {r['lower_max']:.4e} | {r['certified_pixel']} | {r['time_s']:.0f} |")
print()
print("| ε | method | certified max | lower max (search) | time (s) |")
print("|---|---|---|---|---|")
for r in d["by_eps"]:
    print(f"| {r['eps']:.5f} ({r['eps'] * 255:.0f}/255) | {r['method']} | {r['certified_max']:.4e} | {r['lower_max']:.4e} | {r['time_s']:.0f} |")
PY
      ;;
    performance) bash benchmarks/certify.sh models/efficientnet_b0_mnist.onnx "$mnist" 0-783:16 ;;
    bench-tiny)
      "$Z" bench --model "$tiny" --mnist "$mnist" --images 0,1 --pixels 0-783:97 --out out/bench-tiny >/dev/null
      cat out/bench-tiny/bench.md ;;
    auto-lirpa)
      bash benchmarks/auto_lirpa.sh "$tiny" "$mnist" --images 0,1 --eps 0.00784313725490196,0.00392156862745098 \
        --pixels 0-783:97 --batch 6 --method CROWN-IBP 2> out/regenerate/auto-lirpa.log ;;
    bounds-b0) bash benchmarks/bounds.sh ;;
    bounds-tiny) bash benchmarks/bounds.sh "$tiny" 20 0.00196078431372549,0.00392156862745098,0.00784313725490196,0.02 ;;
    refine) bash benchmarks/refine.sh ;;
    lp-global)
      "$Z" bench --model "$tiny" --mnist "$mnist" --images 0 --eps global --pixels 0-783:49 \
        --methods diff-zonotope,diff-zonotope+lp,diff-interval --attack-rounds 2 --out out/bench_lp_global >/dev/null
      cat out/bench_lp_global/bench.md ;;
    bench-b0)
      "$Z" bench --mnist "$mnist" --images 0,1,2,3,4 --eps 0.00392156862745098,0.00784313725490196,global \
        --pixels 0-783:98 --methods interval,twin-zonotope,diff-zonotope --attack-rounds 2 --out out/bench-b0 >/dev/null
      cat out/bench-b0/bench.md ;;
    bench-b0-full) bash benchmarks/bench_b0_full.sh ;;
    screening) bash benchmarks/screening.sh ;;
    screen-ratio)
      cargo build --release -q --example screen_ratio
      echo "| model | region | image | pixels | max full-pass bound | median ratio | min ratio | max ratio | screening pass s/pixel | full pass s/pixel |"
      echo "|---|---|---|---|---|---|---|---|---|---|"
      target/release/examples/screen_ratio "$tiny" "$mnist" 0,1,2,3,4 0.000392156862745098,0.00392156862745098,0.00784313725490196,0.0196078431372549,global 0-783:13
      target/release/examples/screen_ratio models/efficientnet_b0_mnist.onnx "$mnist" 0,1 0.00784313725490196,global 0-783:98 ;;
    executor) bash benchmarks/executor.sh ;;
    *) echo "section '$1' has no command in $0" >&2; return 2 ;;
  esac
}

mkdir -p out/regenerate
for n in $names; do
  echo "== $n" >&2
  start=$(date +%s)
  section "$n" > "out/regenerate/$n.md"
  python3 - "$n" "out/regenerate/$n.md" "$results" "$paper" <<'PY'
import os, sys
name, body, paths = sys.argv[1], open(sys.argv[2]).read().strip("\n"), sys.argv[3:]
begin, end = f"<!-- generated: {name} -->\n", "<!-- end generated -->"
for path in paths:  # RESULTS.md always; the paper where it carries the same section
    text = open(path).read()
    if begin not in text:
        continue
    i = text.index(begin) + len(begin)
    j = text.index(end, i)
    tmp = path + ".tmp"
    open(tmp, "w").write(text[:i] + body + "\n" + text[j:])
    os.replace(tmp, path)
PY
  echo "   $n: $(( $(date +%s) - start )) s" >&2
done
