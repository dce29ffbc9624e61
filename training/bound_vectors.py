#!/usr/bin/env python3
"""Golden vectors for zonocert's `diff-interval` method against the training bound.

Builds small EfficientNets from torchvision's own `EfficientNet`/`MBConv` classes (1-channel
stem and the normalisation module as in `train.build_model`, three MBConv blocks: one with a
residual), with seeded random weights, random BatchNorm statistics and constant
squeeze-excite gates on some nets, exports each to `tests/vectors/bounds/net{k}.onnx` and
writes `tests/vectors/bounds/net{k}.json` with `global_bound.logit_difference_bounds` for a
few pixels and bits, for the reals and for a float32 execution (`f32`, zonocert's
`--semantics f32`). `crates/transform/tests/training_bound.rs` checks that zonocert's
certified `diff-interval` bound on max |delta(z_c - z_j)| over the global region is never above
this number (beyond rounding) and that sampled pairs stay below zonocert's.

    python training/bound_vectors.py        # rewrites tests/vectors/bounds/
"""
import json
import os
import sys
from functools import partial

import torch
import torch.nn as nn
import torchvision
from torchvision.models.efficientnet import EfficientNet, MBConvConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from global_bound import F32, logit_difference_bounds  # noqa: E402
from train import Normalize, export_onnx  # noqa: E402

PIXELS = [0, 150, 406, 600, 783]
BITS = [0, 3, 7]


def small_efficientnet(seed, constant_gates):
    torch.manual_seed(seed)
    conf = partial(MBConvConfig, width_mult=1.0, depth_mult=1.0)
    setting = [conf(1, 3, 2, 8, 8, 1), conf(4, 3, 2, 8, 16, 1), conf(4, 3, 1, 16, 16, 1)]
    net = EfficientNet(setting, dropout=0.0, stochastic_depth_prob=0.0, num_classes=10, last_channel=32)
    old = net.features[0][0]
    net.features[0][0] = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(0.6)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.3, 1.0)
                m.bias.uniform_(-0.2, 0.2)
            if constant_gates and isinstance(m, torchvision.ops.misc.SqueezeExcitation):
                m.fc2.weight.zero_()
    return nn.Sequential(Normalize(), net).eval()


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "vectors", "bounds")
    os.makedirs(out, exist_ok=True)
    for k in range(3):
        model = small_efficientnet(100 + k, constant_gates=(k != 1))
        path = os.path.join(out, f"net{k}.onnx")
        export_onnx(model, path)
        with torch.no_grad():
            cases = [
                {
                    "bit": bit,
                    "pixels": PIXELS,
                    "max_logit_difference": logit_difference_bounds(model, PIXELS, (1 << bit) / 255.0).tolist(),
                    "max_logit_difference_f32": logit_difference_bounds(model, PIXELS, (1 << bit) / 255.0, f32=F32()).tolist(),
                }
                for bit in BITS
            ]
        meta = {
            "model": f"net{k}.onnx",
            "description": "torchvision EfficientNet, MBConv (1,3,2,8->8), (4,3,2,8->16), (4,3,1,16->16, residual), head 32, seeded random weights and BatchNorm statistics"
            + ("; squeeze-excite fc2 weights zero" if k != 1 else ""),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "cases": cases,
        }
        with open(os.path.join(out, f"net{k}.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(f"net{k}: " + ", ".join(f"bit {c['bit']}: max {max(c['max_logit_difference']):.3e}" for c in cases))


if __name__ == "__main__":
    main()
