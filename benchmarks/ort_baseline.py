#!/usr/bin/env python3
"""ONNX Runtime latency and throughput on MNIST test images, the reference for zonocert's
executor. Usage: python3 benchmarks/ort_baseline.py MODEL MNIST_DIR [--threads 2]"""
import argparse, gzip, json, os, time
import numpy as np
import onnxruntime as ort


def images(d, n):
    with gzip.open(os.path.join(d, "t10k-images-idx3-ubyte.gz")) as f:
        data = f.read()
    x = np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28)[:n]
    with gzip.open(os.path.join(d, "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return x.astype(np.float32) / 255.0, y


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model"); p.add_argument("mnist")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=10000)
    a = p.parse_args()
    so = ort.SessionOptions(); so.intra_op_num_threads = a.threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    x, y = images(a.mnist, a.n)
    name = s.get_inputs()[0].name
    out = {}
    for batch in (1, 256):
        m = a.n if batch == 256 else min(a.n, 1000)
        t = time.perf_counter(); pred = []
        for i in range(0, m, batch):
            pred.append(s.run(None, {name: x[i:i + batch]})[0].argmax(1))
        dt = time.perf_counter() - t
        out[f"batch{batch}"] = {"n": m, "images_per_s": m / dt, "latency_ms_per_batch": 1e3 * dt / ((m + batch - 1) // batch)}
        if batch == 256:
            out["accuracy"] = float((np.concatenate(pred) == y[:m]).mean())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
