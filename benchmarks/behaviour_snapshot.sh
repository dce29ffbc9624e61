#!/bin/bash
# Writes the numbers of every CLI entry point on small inputs to DIR, with times, memory, the
# machine and the version stripped, so that two builds can be compared for bit-identical
# results (`diff -r A B`): the check behind behaviour-preserving refactors.
#
#     bash benchmarks/behaviour_snapshot.sh DIR [ZONOCERT]   # ~3 minutes on 2 cores
set -eu
out=$1 z=${2:-target/release/zonocert}
mnist=../shared/data/mnist
tiny=tests/vectors/tiny_effnet_tv.onnx
mkdir -p "$out"
strip() { python3 -c '
import json, sys
drop = {"time_s", "elapsed_s", "peak_rss_mib", "region_analysis_s", "machine", "version", "seconds", "wall_s", "time", "lp_time_s", "model", "out"}
def clean(v):
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items() if k not in drop and not k.endswith("_s")}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v
print(json.dumps(clean(json.load(sys.stdin)), indent=1, sort_keys=True))'; }
for m in interval twin-zonotope diff-zonotope diff-interval; do
    for r in "--region global" "--mnist $mnist --index 0 --eps 0.0078"; do
        tag=$(echo "$m $r" | tr -c 'a-z0-9' _)
        $z certify --model $tiny $r --method $m --pixels 0-783:61 --with-lower --out "$out/c_$tag" --quiet >/dev/null
        strip < "$out/c_$tag/report.json" > "$out/certify_$tag.json"
        cp "$out/c_$tag/bounds.csv" "$out/certify_$tag.csv"
        rm -r "$out/c_$tag"
    done
done
$z certify --model $tiny --mnist $mnist --index 1 --method precise --pixels 0-783:97 --out "$out/c_precise" --quiet >/dev/null
strip < "$out/c_precise/report.json" > "$out/certify_precise.json"; rm -r "$out/c_precise"
$z certify --model $tiny --mnist $mnist --index 0 --eps 0.0078 --refine lp --pixels 0-783:197 --out "$out/c_lp" --quiet >/dev/null
strip < "$out/c_lp/report.json" > "$out/certify_lp.json"; rm -r "$out/c_lp"
$z bench --model $tiny --mnist $mnist --images 0 --eps 0,0.0039,global --pixels 0-783:131 --out "$out/b" >/dev/null
strip < "$out/b/bench.json" > "$out/bench.json"; rm -r "$out/b"
$z curve --model $tiny --mnist $mnist --index 0 --bits 0,3 --eps 0,0.0039 --pixels 0-783:131 --out "$out/cv" >/dev/null
strip < "$out/cv/curve.json" > "$out/curve.json"; rm -r "$out/cv"
for m in interval zonotope; do
    $z bounds --model $tiny --mnist $mnist --index 0 --eps 0.01 --method $m --json | strip > "$out/bounds_$m.json"
done
$z attack --model $tiny --region global --pixels 0-783:197 --json | strip > "$out/attack.json"
echo "snapshot in $out"
