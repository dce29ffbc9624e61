#!/usr/bin/env bash
# The full tightness table on the shipped B0: MNIST test images 0–4 at ε = 0, 1/255 and 2/255,
# and the global region. All 784 pixels for every method except `twin-zonotope` over balls and
# globally, which runs on every 16th pixel (it runs a whole forward zonotope analysis per pixel:
# about 0.9 s per pixel, 2 h for every pixel of those 11 workloads on 2 cores). At ε = 0 the
# methods are interval, twin-zonotope and diff-zonotope, beside the f64 exact value (`precise`
# there: benchmarks/point_exact.sh). Lower bounds from the coordinate-ascent search (2 rounds).
# `diff-zonotope` runs its full pass on every pixel (`--no-screen`): the table measures that
# pass; with screening the B0's ball and global workloads take about 22 s each
# (benchmarks/screening.sh).
# About 2.5 hours on 2 cores. Resumable: each workload's bench.json is kept under
# $OUT_DIR (default out/bench-b0-full) with the machine it ran on, and a method that already has
# a row there for the same region and image (in any */bench.json, or */rows.json: rows imported
# from another machine, each naming its machine) is not rerun.
#   bash benchmarks/bench_b0_full.sh          (runs what is missing, then prints the Markdown table)
#   bash benchmarks/bench_b0_full.sh --table  (only prints the table)
set -euo pipefail
cd "$(dirname "$0")/.."
mnist=${ZONOCERT_MNIST:-../shared/data/mnist}
o=${OUT_DIR:-out/bench-b0-full}
Z=target/release/zonocert
e1=0.00392156862745098
e2=0.00784313725490196

missing() { # EPS IMAGE METHODS: the methods without a row yet, comma separated
  python3 - "$o" "$@" <<'PY'
import glob, json, sys
o, eps, image, methods = sys.argv[1:]
eps = "global" if eps == "global" else f"{float(eps):.6f}"
have = set()
for path in glob.glob(f"{o}/*/bench.json") + glob.glob(f"{o}/*/rows.json"):
    for r in json.load(open(path))["rows"]:
        if r["eps"] == eps and (eps == "global" or str(r["image"]) == image):
            have.add(r["method"])
print(",".join(m for m in methods.split(",") if m not in have))
PY
}

run() { # NAME EPS IMAGE PIXELS METHODS
  local d methods
  methods=$(missing "$2" "$3" "$5")
  [ -n "$methods" ] || return 0
  d="$o/$1-${methods//,/+}"  # named by what it runs, so a later run for other methods never collides
  rm -rf "$d.tmp"
  echo "$1: $methods" >&2
  "$Z" bench --mnist "$mnist" --images "$3" --eps "$2" --pixels "$4" --methods "$methods" \
    --attack-rounds 2 --no-screen --out "$d.tmp" > /dev/null 2> "$d.log"
  echo "$(nproc) threads, $(lscpu | sed -n 's/^Model name: *//p' | head -1)" > "$d.tmp/machine.txt"
  mv "$d.tmp" "$d"
}

if [ "${1:-}" != "--table" ]; then
  cargo build --release -q
  mkdir -p "$o"
  for eps in $e1 $e2; do
    for i in 0 1 2 3 4; do
      run "full_${eps}_$i" "$eps" "$i" all interval,diff-zonotope
    done
  done
  run full_global global 0 all interval,diff-zonotope
  for eps in $e1 $e2; do
    for i in 0 1 2 3 4; do
      run "twin_${eps}_$i" "$eps" "$i" 0-783:16 twin-zonotope
    done
  done
  run twin_global global 0 0-783:16 twin-zonotope
  for i in 0 1 2 3 4; do
    run "point_$i" 0 "$i" all interval,twin-zonotope,diff-zonotope
  done
fi

python3 - "$o" <<'PY'
import glob, json, os, sys
o = sys.argv[1]
rows = []
for path in sorted(glob.glob(f"{o}/*/bench.json") + glob.glob(f"{o}/*/rows.json")):
    d = os.path.dirname(path)
    machine = open(f"{d}/machine.txt").read().strip() if os.path.exists(f"{d}/machine.txt") else "?"
    b = json.load(open(path))
    if b["soundness_failures"]:
        sys.exit(f"{path}: soundness failures {b['soundness_failures']}")
    for r in b["rows"]:
        r.setdefault("machine", machine)
        rows.append(r)
order = {"interval": 0, "twin-zonotope": 1, "diff-zonotope": 2, "precise": 3}
key = lambda r: (r["eps"] == "global", r["eps"], str(r["image"]), order.get(r["method"], 9))
machines = sorted({r["machine"] for r in rows}, key=lambda m: (int(m.split()[0]) if m.split()[0].isdigit() else 0, m))
mark = {m: "" if i == 0 else "†" * i for i, m in enumerate(machines)}
print("| region | image | method | pixels | median upper | max upper | max lower | max exact | median upper/lower | time/pixel (s) | time (s) | peak RSS (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in sorted(rows, key=key):
    region = "global" if r["eps"] == "global" else "ε = 0" if float(r["eps"]) == 0 else f"ε = {float(r['eps']) * 255:.0f}/255"
    image = "all" if r["eps"] == "global" else r["image"]
    exact = "–" if r.get("max_exact") is None else f"{r['max_exact']:.3e}"
    print(f"| {region} | {image} | {r['method']} | {r['pixels']} | {r['median_upper']:.3e} | {r['max_upper']:.3e} "
          f"| {r['max_lower']:.3e} | {exact} | {r['median_ratio_upper_over_lower']:.2e} | {r['time_per_pixel_s']:.3f}{mark[r['machine']]} | {r['time_s']:.0f} "
          f"| {r['peak_rss_mib']:.0f} |")
print()
for m in machines:
    print(f"{mark[m] or 'unmarked'}: {m}.  ", end="")
print()
PY
