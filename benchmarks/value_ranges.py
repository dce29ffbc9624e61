#!/usr/bin/env python3
"""Sampled value ranges of every intermediate value of an ONNX model (ONNX Runtime, float32).

What a model's values actually reach, to set beside the global ranges zonocert's forward
analysis proves (`ZONOCERT_TRACE=1 zonocert certify --region global …` prints them per layer):
a sampled maximum is a lower bound on the true range over [0, 1]^784, so a proven range far
above it is the analysis's looseness (RESULTS § float32 semantics, the certified B0).

    python3 benchmarks/value_ranges.py models/efficientnet_b0_mnist_certified.onnx ../shared/data/mnist

Samples: the first 200 test images, 100 uniformly random byte images and 100 random
black-and-white images (seed 0). Prints the largest |value| of each kind, largest first.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))
from train import load_mnist  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("mnist")
    ap.add_argument("--top", type=int, default=12, help="how many values to print")
    args = ap.parse_args()
    model = onnx.load(args.model)
    names = [o for node in model.graph.node for o in node.output]
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    images, _ = load_mnist(args.mnist, "test")
    test = np.asarray(images[:200], dtype=np.float32).reshape(-1, 1, 28, 28) / 255.0
    rng = np.random.default_rng(0)
    noise = np.concatenate([rng.integers(0, 256, (100, 1, 28, 28)), 255 * rng.integers(0, 2, (100, 1, 28, 28))])
    noise = noise.astype(np.float32) / 255.0
    inp = sess.get_inputs()[0].name
    on_test = sess.run(names, {inp: test})
    on_noise = sess.run(names, {inp: noise})
    rows = [(float(np.abs(a).max()), float(np.abs(b).max()), n) for a, b, n in zip(on_test, on_noise, names)]
    rows.sort(key=lambda r: -max(r[0], r[1]))
    print("max |value|: 200 test images, 200 random and black-and-white images, value")
    for a, b, n in rows[: args.top]:
        print(f"{a:10.3e}  {b:10.3e}  {n}")


if __name__ == "__main__":
    main()
