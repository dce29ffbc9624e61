#!/usr/bin/env python3
"""Measures how far the float32 sigmoid and exp of ONNX Runtime (CPU) and PyTorch (CPU) are
from the exact functions, to choose the default of `zonocert --ulp K` (--semantics f32).

Reports, over 9·10^5 float32 arguments (uniform on [-20, 20], [-100, 100] and [-88, 88],
normal with sigma 2; seed 0):
  * sigmoid: the largest absolute error in units of 2^-23 (zonocert's model: |s^ - s| <= K·2^-23),
    and, for reference, the largest error in ulps of the result;
  * exp (arguments clipped to [-87, 88]): the largest error in ulps of the result
    (zonocert's model: K ulps).
A measurement, not a proof: zonocert's default K = 4 is about twice the worst seen.

    python benchmarks/f32_ulp.py
"""
import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

rng = np.random.default_rng(0)
xs = np.concatenate([rng.uniform(-20, 20, 400000), rng.uniform(-100, 100, 100000),
                     rng.normal(0, 2, 300000), rng.uniform(-88, 88, 100000)]).astype(np.float32)
x64 = xs.astype(np.float64)
sig = 1 / (1 + np.exp(-x64))
xe = np.clip(xs, -87, 88).astype(np.float32)
ex = np.exp(xe.astype(np.float64))
ULP1 = 2.0 ** -23


def ulps(got, ref):
    r32 = np.abs(ref).astype(np.float32)
    ulp = np.spacing(np.maximum(r32, np.float32(1.17549435e-38))).astype(np.float64)
    return np.abs(got.astype(np.float64) - ref) / ulp


def ort_unary(op, x):
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


print(f"onnxruntime {ort.__version__}, torch {torch.__version__}, {len(xs)} arguments")
for name, s_got, e_got in [
    ("onnxruntime", ort_unary("Sigmoid", xs), ort_unary("Exp", xe)),
    ("pytorch", torch.sigmoid(torch.from_numpy(xs)).numpy(), torch.exp(torch.from_numpy(xe)).numpy()),
]:
    abs_units = np.abs(s_got.astype(np.float64) - sig).max() / ULP1
    print(f"{name:12s} sigmoid: max |err| = {abs_units:.3f} x 2^-23 (max {ulps(s_got, sig).max():.3g} ulps of the result); "
          f"exp: max {ulps(e_got, ex).max():.3f} ulps")
