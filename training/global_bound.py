"""The interval form of zonocert's differential analysis over the whole input domain, in
PyTorch, differentiable: the bound a certified-training loss can drive down.

For a torchvision EfficientNet (wrapped as `Sequential(Normalize(), EfficientNet)` as in
`train.py`) in eval mode (BatchNorm as the affine map of its running statistics), and a set of
pixels, it bounds, for every image x in [0, 1]^784 and x' = x with pixel i moved by at most
`flip` (2^bit / 255), every |delta(z_c - z_j)| and from it |p_c(x') - p_c(x)| <= 1/4 * max.

What is propagated (centre/radius pairs, float64):
* value intervals X of every neuron over the domain (interval arithmetic; swish by its exact
  image, including its minimum -0.2785 at -1.2785);
* per pixel, the interval of D = x' - x: affine layers map it without their bias; swish and
  sigmoid by the mean value theorem, D_out = f'(xi) D with f'(xi) in the slope range of f on
  the hull of X and X + D (centre m = mid slope, radius |m| r_D + half-spread * |D|); the
  squeeze-excite product by delta(x s) = D_x (S + D_s) + X D_s; the residual add exactly.
* logit differences through the rows w_c - w_j of the classifier.

zonocert's `diff-interval` method runs the same analysis with outward rounding and takes, per
neuron, the tighter of the mean-value form and the difference of interval images, so its
certified number is never above this one (up to rounding); only zonocert certifies.

Usage as a script (prints the bound of a saved model; `--pixels all` for all 784):
    python training/global_bound.py --checkpoint training/checkpoint_cert.pt --pixels 0-783:16
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.ops.misc import Conv2dNormActivation, SqueezeExcitation

SWISH_ARGMIN = -1.2784645427610738  # swish'(x) = 0
SWISH_MIN = -0.2784645427610738  # swish(SWISH_ARGMIN)
SWISH_D_TURN = 2.3993572805154676  # swish'' = 0 at +-this: swish' extremes
SWISH_D_MIN = -0.0998766054240137  # swish'(-SWISH_D_TURN)
SWISH_D_MAX = 1.0998766054240137  # swish'(+SWISH_D_TURN)


class Box:
    """An interval tensor as centre and radius (radius >= 0)."""

    def __init__(self, c, r):
        self.c, self.r = c, r

    @staticmethod
    def from_bounds(lo, hi):
        return Box((lo + hi) / 2, (hi - lo) / 2)

    @property
    def lo(self):
        return self.c - self.r

    @property
    def hi(self):
        return self.c + self.r

    def mag(self):
        return self.c.abs() + self.r

    def __add__(self, o):
        return Box(self.c + o.c, self.r + o.r)

    def mul(self, o):
        # The centre/radius product (as zonocert's interval domain computes it; never tighter
        # than the corner product, so this bound stays above zonocert's).
        return Box(self.c * o.c, self.c.abs() * o.r + o.c.abs() * self.r + self.r * o.r)


def swish(x):
    return x * torch.sigmoid(x)


def swish_deriv(x):
    s = torch.sigmoid(x)
    return s * (1 + x * (1 - s))


def sigmoid_deriv(x):
    s = torch.sigmoid(x)
    return s * (1 - s)


def swish_image(x):
    fl, fu = swish(x.lo), swish(x.hi)
    hi = torch.maximum(fl, fu)
    inside = (x.lo < SWISH_ARGMIN) & (SWISH_ARGMIN < x.hi)
    lo = torch.where(inside, torch.full_like(fl, SWISH_MIN), torch.minimum(fl, fu))
    return Box.from_bounds(lo, hi)


def swish_slopes(lo, hi):
    dl, du = swish_deriv(lo), swish_deriv(hi)
    a = torch.where((lo < -SWISH_D_TURN) & (-SWISH_D_TURN < hi), torch.full_like(dl, SWISH_D_MIN), torch.minimum(dl, du))
    b = torch.where((lo < SWISH_D_TURN) & (SWISH_D_TURN < hi), torch.full_like(dl, SWISH_D_MAX), torch.maximum(dl, du))
    return a, b


def sigmoid_slopes(lo, hi):
    dl, du = sigmoid_deriv(lo), sigmoid_deriv(hi)
    b = torch.where((lo <= 0) & (0 <= hi), torch.full_like(dl, 0.25), torch.maximum(dl, du))
    return torch.minimum(dl, du), b


def mean_value(x, d, slopes):
    """D_out for f with slope range `slopes` on the hull of X and X + D."""
    lo = torch.minimum(x.lo, x.lo + d.lo)
    hi = torch.maximum(x.hi, x.hi + d.hi)
    a, b = slopes(lo, hi)
    m, h = (a + b) / 2, (b - a) / 2
    return Box(m * d.c, m.abs() * d.r + h * d.mag())


def conv(box, layer, bias):
    w = layer.weight.double()
    b = layer.bias.double() if (bias and layer.bias is not None) else None
    args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    return Box(F.conv2d(box.c, w, b, **args), F.conv2d(box.r, w.abs(), None, **args))


def batchnorm(box, bn, bias):
    scale = (bn.weight / torch.sqrt(bn.running_var + bn.eps)).double().view(1, -1, 1, 1)
    shift = (bn.bias - bn.running_mean * bn.weight / torch.sqrt(bn.running_var + bn.eps)).double().view(1, -1, 1, 1)
    return Box(scale * box.c + (shift if bias else 0), scale.abs() * box.r)


def activation(module, x, d):
    """Value interval and difference through an activation module."""
    if isinstance(module, nn.SiLU):
        return swish_image(x), mean_value(x, d, swish_slopes)
    if isinstance(module, nn.Sigmoid):
        return Box.from_bounds(torch.sigmoid(x.lo), torch.sigmoid(x.hi)), mean_value(x, d, sigmoid_slopes)
    raise ValueError(f"unsupported activation {module}")


def step(module, x, d):
    """(value interval, difference interval) through one module of the EfficientNet."""
    if isinstance(module, nn.Conv2d):
        return conv(x, module, True), conv(d, module, False)
    if isinstance(module, nn.BatchNorm2d):
        return batchnorm(x, module, True), batchnorm(d, module, False)
    if isinstance(module, (nn.SiLU, nn.Sigmoid)):
        return activation(module, x, d)
    if isinstance(module, (nn.Sequential, Conv2dNormActivation)):
        for m in module:
            x, d = step(m, x, d)
        return x, d
    if isinstance(module, SqueezeExcitation):
        s, ds = x, d
        s, ds = Box(s.c.mean((2, 3), keepdim=True), s.r.mean((2, 3), keepdim=True)), Box(ds.c.mean((2, 3), keepdim=True), ds.r.mean((2, 3), keepdim=True))
        for m in (module.fc1, module.activation, module.fc2, module.scale_activation):
            s, ds = step(m, s, ds)
        # delta(x s) = D_x (S + D_s) + X D_s
        return x.mul(s), d.mul(s + ds) + x.mul(ds)
    if isinstance(module, torchvision.models.efficientnet.MBConv):
        y, dy = step(module.block, x, d)
        if module.use_res_connect:
            y, dy = y + x, dy + d
        return y, dy
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return x, d
    raise ValueError(f"unsupported module {type(module).__name__}")


def normalize_of(model):
    norm, net = model[0], model[1]
    return float(norm.mean), float(norm.std), net


def logit_difference_bounds(model, pixels, flip=1.0 / 255.0):
    """Bounds on max_{c,j} |delta(z_c - z_j)| over the whole domain, one per pixel
    (a float64 tensor of len(pixels)), differentiable in the model's parameters."""
    mean, std, net = normalize_of(model)
    n = len(pixels)
    x = Box(torch.full((1, 1, 28, 28), (0.5 - mean) / std, dtype=torch.float64), torch.full((1, 1, 28, 28), 0.5 / std, dtype=torch.float64))
    dr = torch.zeros((n, 1, 28 * 28), dtype=torch.float64)
    dr[torch.arange(n), 0, torch.as_tensor(pixels)] = flip / std
    d = Box(torch.zeros_like(dr).view(n, 1, 28, 28), dr.view(n, 1, 28, 28))
    x, d = step(net.features, x, d)
    h = Box(x.c.mean((2, 3)), x.r.mean((2, 3)))
    dh = Box(d.c.mean((2, 3)), d.r.mean((2, 3)))
    linear = net.classifier[-1]
    w = linear.weight.double()
    rows = w.unsqueeze(0) - w.unsqueeze(1)  # [c, j, features]: w_c - w_j
    centre = torch.einsum("cjf,nf->ncj", rows, dh.c)
    radius = torch.einsum("cjf,nf->ncj", rows.abs(), dh.r)
    return (centre.abs() + radius).flatten(1).max(1).values


def probability_bound(model, pixels, flip=1.0 / 255.0):
    """|p_c(x') - p_c(x)| <= p_c (1 - p_c) max_j |delta(z_c - z_j)| <= max / 4."""
    return logit_difference_bounds(model, pixels, flip) / 4


def parse_pixels(text):
    if text == "all":
        return list(range(784))
    out = []
    for part in text.split(","):
        rng, _, st = part.partition(":")
        a, _, b = rng.partition("-")
        out.extend(range(int(a), int(b or a) + 1, int(st or 1)))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint of train.py or train_certified.py")
    p.add_argument("--pixels", default="0-783:16")
    p.add_argument("--bit", type=int, default=0)
    args = p.parse_args()
    from train import build_model

    model = build_model(0.0, 0.0)
    state = torch.load(args.checkpoint, map_location="cpu")
    model.load_state_dict(state.get("model", state))
    model.eval()
    with torch.no_grad():
        b = logit_difference_bounds(model, parse_pixels(args.pixels), (1 << args.bit) / 255.0)
    print(f"max |delta(z_c - z_j)| <= {b.max().item():.6e}; probability bound {b.max().item() / 4:.6e} (log10 {math.log10(b.max().item()):.1f})")


if __name__ == "__main__":
    main()
