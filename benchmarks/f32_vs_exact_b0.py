#!/usr/bin/env python3
"""How far a B0 as it runs (ONNX Runtime, float32) is from the exact real-valued sensitivity
that `zonocert certify --method precise` encloses, at one MNIST test image (the report's).

For each pixel of `--pixels`, flips bit 0 and runs the image and its twin through ONNX Runtime
(CPU, one image per run, default optimisations), takes the float32 softmax, and prints
max_c |p_c(x') - p_c(x)| beside zonocert's precise enclosure of the exact value (read from
`--report`, a `certify --method precise` report.json for the same image and pixels).

    zonocert certify --mnist ../shared/data/mnist --index 0 --method precise --pixels 0-783:37 --out out/b0_exact
    python benchmarks/f32_vs_exact_b0.py --report out/b0_exact/report.json [--model M]
"""
import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def mnist_image(index):
    path = ROOT / ".." / "shared" / "data" / "mnist" / "t10k-images-idx3-ubyte.gz"
    with gzip.open(path) as f:
        data = f.read()
    return np.frombuffer(data, dtype=np.uint8, offset=16 + 784 * index, count=784).copy()


def softmax32(z):
    z = z.astype(np.float32)
    e = np.exp(z - z.max()).astype(np.float32)
    return e / e.sum(dtype=np.float32)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", required=True)
    p.add_argument("--model", default=str(ROOT / "models" / "efficientnet_b0_mnist.onnx"))
    args = p.parse_args()
    report = json.load(open(args.report))
    # "mnist test #I": the image the report certified.
    img = mnist_image(int(report["region"]["image"].rsplit("#", 1)[1]))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    run = lambda b: softmax32(sess.run(None, {name: (b.astype(np.float32) / np.float32(255)).reshape(1, 1, 28, 28)})[0][0])  # noqa: E731
    base = run(img)
    rows, outside = [], 0
    for entry in report["pixels"]:
        i = entry["pixel"]
        flipped = img.copy()
        flipped[i] ^= 1
        ort_change = float(np.abs(run(flipped).astype(np.float64) - base.astype(np.float64)).max())
        lo, hi = entry["lower"], entry["upper"]
        inside = lo <= ort_change <= hi
        outside += not inside
        rows.append((i, ort_change, lo, hi, ort_change / hi if hi > 0 else float("inf")))
    print("| pixel | ORT float32 |dp| | exact (precise) | ORT / exact |")
    print("|---|---|---|---|")
    for i, o, lo, hi, r in rows:
        print(f"| {i} | {o:.3e} | [{lo:.6e}, {hi:.6e}] | {r:.3g} |")
    ratios = sorted(r for *_, r in rows)
    print(f"\n{len(rows)} pixels; ORT outside the exact enclosure at {outside}; ORT/exact median {ratios[len(ratios) // 2]:.3g}, "
          f"min {ratios[0]:.3g}, max {ratios[-1]:.3g}; largest ORT change {max(o for _, o, *_ in rows):.3e}, "
          f"largest exact (upper) {max(hi for *_, hi, _ in rows):.3e}")


if __name__ == "__main__":
    main()
