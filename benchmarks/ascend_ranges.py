#!/usr/bin/env python3
"""Lower bounds on the global value ranges of an ONNX model by gradient ascent over [0, 1]^784.

A sampled maximum (`value_ranges.py`) is a weak lower bound on how large a value can get over
every image; this searches for large values directly. For each chosen value it takes the
`--neurons` neurons with the largest |value| on 64 random black-and-white images and, for
each of them and each sign, runs `--steps` steps of signed-gradient ascent on the image
(projected onto [0, 1]^784, step size decaying from 0.5), starting from a random
black-and-white image (seed 1). It prints the sampled and the ascended maximum |value| beside
the value's name. Every number is what one concrete image reaches (a float64 evaluation of
the graph), so it is a lower bound on the true range; zonocert's proven ranges
(`ZONOCERT_TRACE=1 zonocert certify --region global …`) are upper bounds.

    python3 benchmarks/ascend_ranges.py models/efficientnet_b0_mnist_certified.onnx --steps 100

With `--f32-error MNIST_DIR` it instead evaluates the graph in float32 and in float64 on the first
100 test images and prints, per chosen value, the largest |f32 − f64| and the largest |value|;
and, for the first chosen value when it is a convolution, the largest Σ|w·x| of its dot products
beside the largest |Σ w·x| (how much the sums cancel, which is what the rounding model's
`γₙ·Σ|w|·|x|` pays for).

The graph is evaluated by a small float64 interpreter of the ops the exported EfficientNets
use (Conv, Sigmoid, Mul, Add, Sub, Div, Identity, GlobalAveragePool, Flatten, Gemm), checked
against ONNX Runtime on random images before anything else runs.
"""
import argparse
import re
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from onnx import numpy_helper

# The last convolution of each stage's first block, the stage-7 expansion, the head conv.
DEFAULT_VALUES = [
    r"features\.1\.0/block/block\.2/block\.2\.0/Conv",
    r"features\.2\.0/block/block\.0/block\.0\.0/Conv",
    r"features\.2\.0/block/block\.3/",
    r"features\.3\.0/block/block\.3/",
    r"features\.4\.0/block/block\.3/",
    r"features\.5\.0/block/block\.3/",
    r"features\.6\.0/block/block\.3/",
    r"features\.7\.0/block/block\.0/",
    r"features\.7\.0/block/block\.3/",
    r"features\.8\.0/Conv",
]


class Graph:
    """The ONNX graph evaluated with torch (differentiable), in float64 unless told otherwise."""

    def __init__(self, path, dtype=torch.float64):
        model = onnx.load(path)
        self.init = {t.name: torch.tensor(numpy_helper.to_array(t).astype(np.float64)).to(dtype) for t in model.graph.initializer}
        self.nodes = list(model.graph.node)
        self.input = model.graph.input[0].name
        self.output = model.graph.output[0].name

    def run(self, x, until=None):
        env = dict(self.init)
        env[self.input] = x
        for node in self.nodes:
            if until is not None and until in env:
                break
            a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
            i = [env[k] if k else None for k in node.input]
            op = node.op_type
            if op == "Conv":
                p = a.get("pads", [0, 0, 0, 0])
                xx = F.pad(i[0], (p[1], p[3], p[0], p[2]))
                bias = i[2] if len(i) > 2 else None
                y = F.conv2d(xx, i[1], bias, stride=a.get("strides", 1), dilation=a.get("dilations", 1), groups=a.get("group", 1))
            elif op == "Sigmoid":
                y = torch.sigmoid(i[0])
            elif op == "Mul":
                y = i[0] * i[1]
            elif op == "Add":
                y = i[0] + i[1]
            elif op == "Sub":
                y = i[0] - i[1]
            elif op == "Div":
                y = i[0] / i[1]
            elif op == "Identity":
                y = i[0]
            elif op == "GlobalAveragePool":
                y = i[0].mean(dim=(2, 3), keepdim=True)
            elif op == "Flatten":
                y = i[0].flatten(1)
            elif op == "Gemm":
                w = i[1].T if a.get("transB", 0) else i[1]
                y = a.get("alpha", 1.0) * (i[0] @ w) + a.get("beta", 1.0) * i[2]
            else:
                raise SystemExit(f"unsupported op {op} (node {node.name})")
            env[node.output[0]] = y
        return env


def ascend(graph, name, neurons, steps, seed):
    """The largest sign·value reached per (neuron, sign), by signed-gradient ascent."""
    gen = torch.Generator().manual_seed(seed)
    b = len(neurons)
    x = (torch.rand(b, 1, 28, 28, generator=gen, dtype=torch.float64) > 0.5).double()
    idx = torch.tensor([n for n, _ in neurons])
    sign = torch.tensor([s for _, s in neurons], dtype=torch.float64)
    best = torch.full((b,), -float("inf"), dtype=torch.float64)
    for k in range(steps):
        x.requires_grad_(True)
        v = graph.run(x, name)[name].flatten(1)
        obj = sign * v[torch.arange(b), idx]
        best = torch.maximum(best, obj.detach())
        obj.sum().backward()
        step = 0.5 * (1 - k / steps) + 0.01
        with torch.no_grad():
            x = (x + step * x.grad.sign()).clamp(0, 1)
    return best


def f32_error(path, graph, names, mnist):
    """Largest |f32 − f64| and |value| per value on 100 test images, and the first value's cancellation."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "training"))
    from train import load_mnist

    images, _ = load_mnist(mnist, "test")
    x = torch.tensor(np.asarray(images[:100], dtype=np.float64).reshape(-1, 1, 28, 28) / 255.0)
    with torch.no_grad():
        e64 = graph.run(x)
        e32 = Graph(path, torch.float32).run(x.float())
        print("largest |f32 - f64|  largest |value|  value (100 test images)")
        for name in [n for n in names if n is not None]:
            a, b = e64[name], e32[name].double()
            print(f"{(a - b).abs().max().item():10.3e}  {a.abs().max().item():10.3e}  {name}")
        node = next(n for n in graph.nodes if n.output[0] == names[0])
        if node.op_type == "Conv":
            a = {at.name: onnx.helper.get_attribute_value(at) for at in node.attribute}
            p = a.get("pads", [0, 0, 0, 0])
            xin = F.pad(e64[node.input[0]], (p[1], p[3], p[0], p[2])).abs()
            w = graph.init[node.input[1]].abs()
            sums = F.conv2d(xin, w, None, stride=a.get("strides", 1), dilation=a.get("dilations", 1), groups=a.get("group", 1))
            print(f"{names[0]}: largest sum |w*x| {sums.max().item():.3e}, largest |sum w*x| {e64[names[0]].abs().max().item():.3e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--steps", type=int, default=100, help="ascent steps per neuron and sign")
    ap.add_argument("--neurons", type=int, default=12, help="neurons per value (each ascended in both signs)")
    ap.add_argument("--values", default=None, help="comma-separated regular expressions of value names (default: stage ends)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--f32-error", metavar="MNIST_DIR", help="compare float32 with float64 evaluations on test images instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    graph = Graph(args.model)
    check = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    want = sess.run(None, {graph.input: check})[0]
    with torch.no_grad():
        got = graph.run(torch.tensor(check, dtype=torch.float64))[graph.output].numpy()
    if np.abs(got - want).max() > 1e-3 * max(1.0, np.abs(want).max()):
        raise SystemExit(f"the interpreter disagrees with ONNX Runtime by {np.abs(got - want).max():.3e}")
    outputs = [n.output[0] for n in graph.nodes]
    patterns = args.values.split(",") if args.values else DEFAULT_VALUES
    names = [next((o for o in outputs if re.search(p, o)), None) for p in patterns] + [graph.output]
    if args.f32_error:
        f32_error(args.model, graph, names, args.f32_error)
        return
    gen = torch.Generator().manual_seed(1)
    samples = (torch.rand(64, 1, 28, 28, generator=gen, dtype=torch.float64) > 0.5).double()
    print("max |value|: sampled (64 black-and-white images)  ascended  seconds  value")
    for name in names:
        if name is None:
            continue
        t0 = time.time()
        with torch.no_grad():
            v = graph.run(samples, name)[name].flatten(1)
        top = v.abs().max(0).values.argsort(descending=True)[: args.neurons].tolist()
        best = ascend(graph, name, [(i, s) for i in top for s in (1.0, -1.0)], args.steps, seed=0)
        print(f"{v.abs().max().item():10.3e}  {best.max().item():10.3e}  {time.time() - t0:6.1f}  {name}", flush=True)


if __name__ == "__main__":
    main()
