#!/usr/bin/env python3
"""ONNX Runtime's own float32 outputs for sampled image pairs, the reference of the
end-to-end `--semantics f32` test (crates/transform/tests/float32_soundness.rs,
`onnx_runtime_pairs_are_inside_the_f32_bounds`).

For tests/vectors/tiny_effnet_tv.onnx and 12 seeded MNIST-like byte images, at pixels 405, 100
and 600 with bits 0 and 7, runs each image and its flipped twin through ONNX Runtime (CPU, one
thread) with graph optimisations off and fully on, and writes the logits and the float32
softmax (overflow-safe form, computed in numpy float32) to tests/vectors/f32_pairs.json.

    python tests/vectors/f32_pairs.py
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
MODEL = HERE / "tiny_effnet_tv.onnx"
rng = np.random.default_rng(20261130)


def images(n):
    out = []
    for _ in range(n):
        x = rng.integers(0, 256, 784)
        mask = rng.random(784) < 0.3
        out.append(np.where(mask, x, 0).astype(np.uint8))
    return out


def softmax32(z):
    z = z.astype(np.float32)
    e = np.exp(z - z.max()).astype(np.float32)
    return (e / e.sum(dtype=np.float32)).astype(np.float32)


cases = []
sessions = {}
for level, name in [(ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "none"), (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "all")]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = level
    opts.intra_op_num_threads = 1
    sessions[name] = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
imgs = images(12)
for k, img in enumerate(imgs):
    for pixel in [405, 100, 600]:
        for bit in [0, 7]:
            flipped = img.copy()
            flipped[pixel] ^= 1 << bit
            for name, sess in sessions.items():
                x = np.stack([img, flipped]).astype(np.float32).reshape(2, 1, 28, 28) / np.float32(255.0)
                # One image per run, as a deployed model sees them.
                z = [sess.run(None, {sess.get_inputs()[0].name: x[i:i + 1]})[0][0] for i in range(2)]
                cases.append({
                    "optimisation": name, "pixel": pixel, "bit": bit, "image": k,
                    "logits": [float(v) for v in z[0]], "logits_flipped": [float(v) for v in z[1]],
                    "p": [float(v) for v in softmax32(z[0])], "p_flipped": [float(v) for v in softmax32(z[1])],
                })
with open(HERE / "f32_pairs.json", "w") as f:
    json.dump({"model": MODEL.name, "onnxruntime": ort.__version__, "images": [i.tolist() for i in imgs], "cases": cases}, f)
print(f"{len(cases)} cases written; largest |dp| {max(max(abs(a - b) for a, b in zip(c['p'], c['p_flipped'])) for c in cases):.3e}")
