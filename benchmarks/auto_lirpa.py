#!/usr/bin/env python3
"""An external column for the tightness tables: the twin network bounded by auto_LiRPA.

For each pixel i and each flip sign s = ±δ (δ = 2^bit/255), the twin network
    x ↦ (z(x), z(x + s·e_i))
is bounded over the region (an L∞ ball around a test image clipped to [0, 1], or [0, 1]^784)
by auto_LiRPA (CROWN or IBP), through C matrices giving bounds on every z_j − z_c, z′_j − z′_c
and Δ(z_c − z_j). Those bounds go through the same softmax step as zonocert's
(`softmax::class_bounds`: the least of the two probability ranges' difference and
p_c(1 − p_c)·max_j |Δ(z_c − z_j)|, capped at 1); the pixel's bound is the larger of the two
signs. auto_LiRPA computes in floating point without outward rounding, so this column is a
comparison, not a certificate.

The ONNX file is read with onnx2torch, after copying initializers the exporter shared through
Identity nodes (which onnx2torch cannot read), and run in float64.
Convolutions are bounded in auto_LiRPA's dense matrix mode: its memory-saving patch mode fails
on this graph (in the concretization of input bounds and in average pooling).

Usage: python3 benchmarks/auto_lirpa.py MODEL MNIST_DIR --images 0,1 --eps 0.0078,global
           --pixels 0-783:97 [--method CROWN] [--bit 0] [--batch 8] [--json OUT.json]
Prints Markdown rows in `zonocert bench`'s table format. Set up by benchmarks/auto_lirpa.sh.
"""
import argparse, copy, gzip, json, math, os, statistics, sys, time

import onnx
import onnx2torch
import torch
from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

CLASSES = 10


def load(path):
    model = onnx.load(path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    for n in list(g.node):
        if n.op_type == "Identity" and n.input[0] in inits:
            t = copy.deepcopy(inits[n.input[0]])
            t.name = n.output[0]
            g.initializer.append(t)
            g.node.remove(n)
    return onnx2torch.convert(model).eval().double()


def test_images(mnist):
    for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
        p = os.path.join(mnist, name)
        if os.path.exists(p):
            data = (gzip.open if name.endswith(".gz") else open)(p, "rb").read()
            return data[16:]
    sys.exit(f"no t10k-images-idx3-ubyte[.gz] in {mnist}")


def pixel_list(spec):
    out = []
    for part in spec.split(","):
        if part == "all":
            out += range(784)
            continue
        step = 1
        if ":" in part:
            part, s = part.split(":")
            step = int(s)
        a, _, b = part.partition("-")
        out += range(int(a), int(b or a) + 1, step)
    return out


class Twin(torch.nn.Module):
    """(z(x), z(x + d)); d is an input held to one value (a zero-width perturbation), so one
    bounded module serves every batch of flips."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x, d):
        return torch.cat([self.f(x), self.f(x + d)], 1)


def spec_matrix():
    """Rows: z_j − z_c, z′_j − z′_c, (z′_c − z′_j) − (z_c − z_j) for j < c."""
    pairs = [(j, c) for c in range(CLASSES) for j in range(c)]
    rows = []
    for off in (0, CLASSES):
        for j, c in pairs:
            r = torch.zeros(2 * CLASSES, dtype=torch.float64)
            r[off + j], r[off + c] = 1.0, -1.0
            rows.append(r)
    for j, c in pairs:
        r = torch.zeros(2 * CLASSES, dtype=torch.float64)
        r[CLASSES + c], r[CLASSES + j], r[c], r[j] = 1.0, -1.0, -1.0, 1.0
        rows.append(r)
    return pairs, torch.stack(rows)


def probability_bounds(diff):
    """diff[j][c] = (lo, hi) of z_j − z_c → bounds on every p_c."""
    out = []
    for c in range(CLASSES):
        s_lo = sum(math.exp(min(diff[j][c][0], 700.0)) for j in range(CLASSES) if j != c)
        s_hi = sum(math.exp(min(diff[j][c][1], 700.0)) for j in range(CLASSES) if j != c)
        out.append((1.0 / (1.0 + s_hi), min(1.0, 1.0 / (1.0 + s_lo))))
    return out


def max_variance(lo, hi):
    if lo <= 0.5 <= hi:
        return 0.25
    t = hi if hi < 0.5 else lo
    return t * (1.0 - t)


def pixel_bound(lo, hi, pairs):
    """The softmax step of zonocert (`class_bounds`) on one batch element's spec bounds."""
    n = len(pairs)
    dx = [[(0.0, 0.0)] * CLASSES for _ in range(CLASSES)]
    dxp = [[(0.0, 0.0)] * CLASSES for _ in range(CLASSES)]
    delta = [[(0.0, 0.0)] * CLASSES for _ in range(CLASSES)]
    for k, (j, c) in enumerate(pairs):
        for m, t in ((0, dx), (1, dxp)):
            a, b = lo[m * n + k], hi[m * n + k]
            t[j][c], t[c][j] = (a, b), (-b, -a)
        a, b = lo[2 * n + k], hi[2 * n + k]
        delta[c][j], delta[j][c] = (a, b), (-b, -a)
    p, pp = probability_bounds(dx), probability_bounds(dxp)
    hull = [[(min(dx[j][c][0], dxp[j][c][0]), max(dx[j][c][1], dxp[j][c][1])) for c in range(CLASSES)] for j in range(CLASSES)]
    ph = probability_bounds(hull)
    best = 0.0
    for c in range(CLASSES):
        ranges = max(pp[c][1] - p[c][0], p[c][1] - pp[c][0], 0.0)
        md = max(max(abs(delta[c][j][0]), abs(delta[c][j][1])) for j in range(CLASSES) if j != c)
        best = max(best, min(ranges, max_variance(*ph[c]) * md, 1.0))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("mnist")
    ap.add_argument("--images", default="0")
    ap.add_argument("--eps", default="0.00784313725490196")
    ap.add_argument("--pixels", default="0-783:97")
    ap.add_argument("--method", default="CROWN")
    ap.add_argument("--bit", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_default_dtype(torch.float64)
    f = load(a.model)
    net, net_batch = None, 0
    raw = test_images(a.mnist)
    pixels = pixel_list(a.pixels)
    pairs, spec = spec_matrix()
    delta = 2 ** a.bit / 255.0
    rows = []
    print("| method | eps | image | pixels | median upper | max upper | time/pixel (s) |")
    print("|---|---|---|---|---|---|---|")
    for eps in a.eps.split(","):
        images = [None] if eps == "global" else [int(i) for i in a.images.split(",")]
        for image in images:
            if image is None:
                lo_img = torch.zeros(1, 1, 28, 28, dtype=torch.float64)
                hi_img = torch.ones(1, 1, 28, 28, dtype=torch.float64)
            else:
                px = torch.tensor(list(raw[image * 784:(image + 1) * 784]), dtype=torch.float64).reshape(1, 1, 28, 28) / 255.0
                e = float(eps)
                lo_img, hi_img = (px - e).clamp(0.0, 1.0), (px + e).clamp(0.0, 1.0)
            start = time.time()
            bounds = []
            jobs = [(i, s) for i in pixels for s in (delta, -delta)]
            for b0 in range(0, len(jobs), a.batch):
                chunk = jobs[b0:b0 + a.batch]
                d = torch.zeros(len(chunk), 1, 28, 28, dtype=torch.float64)
                for k, (i, s) in enumerate(chunk):
                    d[k, 0, i // 28, i % 28] = s
                lo_b, hi_b = lo_img.expand(len(chunk), -1, -1, -1), hi_img.expand(len(chunk), -1, -1, -1)
                centre = (lo_b + hi_b) / 2
                if net is None or net_batch != len(chunk):
                    net, net_batch = BoundedModule(Twin(f), (centre, d), bound_opts={"conv_mode": "matrix"}, device="cpu"), len(chunk)
                x = BoundedTensor(centre, PerturbationLpNorm(norm=float("inf"), x_L=lo_b, x_U=hi_b))
                dt = BoundedTensor(d, PerturbationLpNorm(norm=float("inf"), x_L=d, x_U=d))
                c = spec.unsqueeze(0).expand(len(chunk), -1, -1)
                lb, ub = net.compute_bounds(x=(x, dt), C=c, method=a.method)
                for k in range(len(chunk)):
                    bounds.append(pixel_bound(lb[k].tolist(), ub[k].tolist(), pairs))
            per_pixel = [max(bounds[2 * k], bounds[2 * k + 1]) for k in range(len(pixels))]
            elapsed = time.time() - start
            row = {
                "method": f"auto_LiRPA {a.method} (twin)",
                "eps": "global" if image is None else f"{float(eps):.6f}",
                "image": "all" if image is None else image,
                "pixels": len(pixels),
                "median_upper": statistics.median(per_pixel),
                "max_upper": max(per_pixel),
                "time_per_pixel_s": elapsed / len(pixels),
                "per_pixel": dict(zip(pixels, per_pixel)),
            }
            rows.append(row)
            print(f"| {row['method']} | {row['eps']} | {row['image']} | {row['pixels']} | {row['median_upper']:.3e} "
                  f"| {row['max_upper']:.3e} | {row['time_per_pixel_s']:.3e} |", flush=True)
    if a.json:
        json.dump({"rows": rows}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
