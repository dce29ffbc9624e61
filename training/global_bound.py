"""The interval form of zonocert's differential analysis over the whole input domain, in
PyTorch, differentiable: the bound a certified-training loss can drive down.

For a torchvision EfficientNet (wrapped as `Sequential(Normalize(), EfficientNet)` as in
`train.py`) in eval mode (BatchNorm as the affine map of its running statistics), and a set of
pixels, it bounds, for every image x in [0, 1]^784 and x' = x with pixel i moved by at most
`flip` (2^bit / 255), every |delta(z_c - z_j)| and from it |p_c(x') - p_c(x)| <= 1/4 * max.

What is propagated (centre/radius pairs, float64 unless asked otherwise):
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
import copy
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

# float32 execution (zonocert --semantics f32; crates/transform/src/float32.rs): unit roundoff,
# one unit in the last place of 1, the smallest subnormal.
U32 = 2.0 ** -24
ULP_OF_ONE = 2.0 ** -23
ETA32 = 2.0 ** -149


def gamma32(n):
    """gamma_n of binary32, with zonocert's margin."""
    nu = (n + 1) * U32
    return nu / (1 - nu) * (1 + 1e-9)


class F32:
    """What a float32 execution adds to every layer, as zonocert's f32 model bounds it: the
    rounding of x and of x' (independently, in any summation order) added to D's radius, and
    that of x to X's. `ulp`: zonocert's --ulp K (sigmoid within K * 2^-23)."""

    def __init__(self, ulp=4.0):
        self.ulp = ulp

    def add(self, x, d, e_of):
        """Adds e(|X|) to X and e(|X|) + e(|X + D|) to D; `e_of` maps magnitudes to errors."""
        e_x = e_of(x.mag())
        e_xp = e_of(x.mag() + d.mag())
        return Box(x.c, x.r + e_x), d.widened(e_x + e_xp)


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


class SymmetricDiff:
    """What both forms of D share: D is symmetric about 0 (the flip goes either way, and every
    step keeps the symmetry), so its bounds are -|D| and |D|."""

    @property
    def lo(self):
        return -self.mag()

    @property
    def hi(self):
        return self.mag()

    def box(self):
        return Box(torch.zeros_like(self.r), self.mag())

    def widened(self, e):
        """D with every neuron's radius grown by e (broadcast over the pixels)."""
        out = copy.copy(self)
        out.r = self.r + e
        return out

    def times_box(self, b):
        """D * B for an interval B (centre/radius): the centre keeps the symbols."""
        return self.scaled(b.c, b.r)


class Diff(SymmetricDiff):
    """The difference D = x' - x as a * e + [-r, r]: `a` the exact coefficient of the flip's
    sign symbol e in [-1, 1] (linear layers map it exactly, as zonocert's zonotopes do), plus a
    radius r for what the nonlinear steps could not keep linear. D is symmetric about 0 at the
    input and every step keeps it so, hence no centre. `a` is None in the plain interval form
    (`form="interval"`), which then costs one tensor per layer instead of two."""

    def __init__(self, a, r):
        self.a, self.r = a, r

    def mag(self):
        return self.r if self.a is None else self.a.abs() + self.r

    def __add__(self, o):
        a = o.a if self.a is None else self.a if o.a is None else self.a + o.a
        return Diff(a, self.r + o.r)

    def linear(self, f, f_abs):
        """Through a linear map f (no bias) whose absolute-value map is f_abs."""
        return Diff(None if self.a is None else f(self.a), f_abs(self.r))

    def scaled(self, m, h):
        """m * D + [-h, h] * |D| (m, h broadcast): the symbol part keeps m."""
        return Diff(None if self.a is None else m * self.a, m.abs() * self.r + h * self.mag())


class ZDiff(SymmetricDiff):
    """The difference D as a zonotope with at most K generator rows per pixel, as zonocert's
    `diff-zonotope` carries it: G [n, K, C, H, W] (row k belongs to symbol ids[:, k]; -1 marks
    an empty row) plus a radius r for what was boxed. Each nonlinear step gives every neuron's
    error a fresh symbol and keeps the K rows of largest L1 norm, boxing the rest (zonocert's
    order reduction). About K times the work of the interval form."""

    def __init__(self, g, ids, r, counter):
        self.g, self.ids, self.r, self.counter = g, ids, r, counter

    def mag(self):
        return self.g.abs().sum(1) + self.r

    def linear(self, f, f_abs):
        n, k = self.g.shape[:2]
        g = f(self.g.flatten(0, 1))
        return ZDiff(g.view(n, k, *g.shape[1:]), self.ids, f_abs(self.r), self.counter)

    def scaled(self, m, h):
        """m * D + [-h, h] * |D|: the rows scale by m; every neuron's new error
        (|m| r + h |D|) is a candidate fresh row."""
        g = m.unsqueeze(1) * self.g
        fresh = m.abs() * self.r + h * self.mag()
        return self._reduced(g, self.ids, fresh)

    def __add__(self, o):
        # rows of o whose symbol self also has are added to that row; the others are new rows
        same = (o.ids.unsqueeze(2) == self.ids.unsqueeze(1)) & (o.ids >= 0).unsqueeze(2)  # [n, Ko, Ks]
        g_self = self.g + torch.einsum("nab,na...->nb...", same.to(o.g.dtype), o.g)
        rest = ~same.any(2)
        g = torch.cat([g_self, o.g * rest.view(*rest.shape, *([1] * (o.g.dim() - 2))).to(o.g.dtype)], 1)
        ids = torch.cat([self.ids, torch.where(rest, o.ids, torch.full_like(o.ids, -1))], 1)
        return self._reduced(g, ids, self.r + o.r)

    def _reduced(self, g, ids, fresh):
        """Keeps the K largest rows among g's and the fresh one-neuron rows; boxes the rest."""
        n, k_all = g.shape[:2]
        k = self.g.shape[1]
        shape = g.shape[2:]
        flat = g.flatten(2)
        fresh_flat = fresh.reshape(n, -1)
        neurons = flat.shape[2]
        norms = torch.cat([flat.abs().sum(2), fresh_flat], 1)
        idx = norms.detach().topk(k, dim=1).indices
        is_row = idx < k_all
        row_idx = idx.clamp(max=k_all - 1)
        new_idx = (idx - k_all).clamp(min=0)
        keep_rows = flat.gather(1, row_idx.unsqueeze(2).expand(-1, -1, neurons)) * is_row.unsqueeze(2).to(g.dtype)
        onehot = F.one_hot(new_idx, neurons).to(g.dtype) * (fresh_flat.gather(1, new_idx) * (~is_row).to(g.dtype)).unsqueeze(2)
        kept_row_mask = torch.zeros(n, k_all, dtype=g.dtype, device=g.device).scatter(1, row_idx, is_row.to(g.dtype))
        kept_new_mask = torch.zeros(n, neurons, dtype=g.dtype, device=g.device).scatter(1, new_idx, (~is_row).to(g.dtype))
        r = (flat.abs() * (1 - kept_row_mask).unsqueeze(2)).sum(1) + fresh_flat * (1 - kept_new_mask)
        base = self.counter[0]
        self.counter[0] += neurons
        new_ids = torch.where(is_row, ids.gather(1, row_idx), base + new_idx)
        return ZDiff((keep_rows + onehot).view(n, k, *shape), new_ids, r.view(n, *shape), self.counter)


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
    return d.scaled(m, h)


def conv(box, layer, bias):
    dt = box.r.dtype if isinstance(box, (Diff, ZDiff)) else box.c.dtype
    w = layer.weight.to(dt)
    b = layer.bias.to(dt) if (bias and layer.bias is not None) else None
    args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    if isinstance(box, (Diff, ZDiff)):
        return box.linear(lambda t: F.conv2d(t, w, None, **args), lambda t: F.conv2d(t, w.abs(), None, **args))
    return Box(F.conv2d(box.c, w, b, **args), F.conv2d(box.r, w.abs(), None, **args))


def conv_rounding(layer, mag, scale=None, offset=None):
    """float32 rounding of a convolution (folded with the BatchNorm `scale`/`offset` after it,
    as the exported graph computes it) over inputs of magnitude `mag`: gamma_{n+2} times the
    sum of |w x| and |b|, plus (n + 2) * eta, n the fan-in."""
    n = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
    args = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
    s = F.conv2d(mag, layer.weight.to(mag.dtype).abs(), None, **args)
    b = layer.bias.to(mag.dtype).view(1, -1, 1, 1) if layer.bias is not None else torch.zeros_like(s[:1, :, :1, :1])
    if scale is not None:
        s = scale.abs() * s
        b = scale * b + offset
    return gamma32(n + 2) * (s + b.abs()) + (n + 2) * ETA32


def batchnorm_affine(bn, dt, stats=None):
    mean, var = stats[bn] if stats is not None and bn in stats else (bn.running_mean, bn.running_var)
    inv = bn.weight.double() / torch.sqrt(var.double() + bn.eps)
    return inv.view(1, -1, 1, 1).to(dt), (bn.bias.double() - mean.double() * inv).view(1, -1, 1, 1).to(dt)


def batchnorm(box, bn, bias, stats=None):
    """BatchNorm as an affine map: of its running statistics, or of the (mean, var) that
    `stats` holds for it (the batch statistics the training forward pass normalised with)."""
    mean, var = stats[bn] if stats is not None and bn in stats else (bn.running_mean, bn.running_var)
    # folded in float64 (as zonocert folds it), then taken to the bound's dtype
    dt = box.r.dtype if isinstance(box, (Diff, ZDiff)) else box.c.dtype
    inv = bn.weight.double() / torch.sqrt(var.double() + bn.eps)
    scale = inv.view(1, -1, 1, 1).to(dt)
    shift = (bn.bias.double() - mean.double() * inv).view(1, -1, 1, 1).to(dt)
    if isinstance(box, (Diff, ZDiff)):
        return box.linear(lambda t: scale * t, lambda t: scale.abs() * t)
    return Box(scale * box.c + (shift if bias else 0), scale.abs() * box.r)


def record_batch_statistics(model):
    """Make every BatchNorm record, in the dict returned, the (mean, biased var) of the batch it
    normalises in training mode, as autograd tensors, so that the bound can be computed with the
    very affine maps the forward pass used (and its gradient sees the statistics move)."""
    stats = {}

    def hook(module, inputs):
        if module.training:
            x = inputs[0]
            stats[module] = (x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False))

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(hook)
    return stats


def activation(module, x, d, f32=None):
    """Value interval and difference through an activation module."""
    if isinstance(module, nn.SiLU):
        y, dy = swish_image(x), mean_value(x, d, swish_slopes)
        # fl(x * sigmoid^(x)): the sigmoid within K * 2^-23, then one product
        e_of = lambda m: m * (f32.ulp * ULP_OF_ONE) + U32 * m * (1 + f32.ulp * ULP_OF_ONE) + ETA32  # noqa: E731
    elif isinstance(module, nn.Sigmoid):
        y, dy = Box.from_bounds(torch.sigmoid(x.lo), torch.sigmoid(x.hi)), mean_value(x, d, sigmoid_slopes)
        e_of = lambda m: torch.full_like(m, f32.ulp * ULP_OF_ONE)  # noqa: E731
    else:
        raise ValueError(f"unsupported activation {module}")
    if f32 is None:
        return y, dy
    # The error depends on the activation's input: x and x + d.
    e_x, e_xp = e_of(x.mag()), e_of(x.mag() + d.mag())
    return Box(y.c, y.r + e_x), dy.widened(e_x + e_xp)


def pool_rounding(mag, plane):
    """float32 rounding of a spatial mean over `plane` terms (a sum, then a division)."""
    return gamma32(plane + 2) * mag.mean((2, 3), keepdim=True) + (plane + 2) * ETA32


def step(module, x, d, stats=None, f32=None):
    """(value interval, difference interval) through one module of the EfficientNet; `stats`
    optionally maps BatchNorm modules to the (mean, var) to use instead of running statistics;
    `f32` (an `F32`) adds the rounding of a float32 execution, layer by layer, as zonocert's
    --semantics f32 bounds it (a convolution and its BatchNorm rounded as one folded layer)."""
    if isinstance(module, nn.Conv2d):
        y, dy = conv(x, module, True), conv(d, module, False)
        if f32 is not None:
            y, dy = Box(y.c, y.r + conv_rounding(module, x.mag())), dy.widened(conv_rounding(module, x.mag()) + conv_rounding(module, x.mag() + d.mag()))
        return y, dy
    if isinstance(module, nn.BatchNorm2d):
        return batchnorm(x, module, True, stats), batchnorm(d, module, False, stats)
    if isinstance(module, (nn.SiLU, nn.Sigmoid)):
        return activation(module, x, d, f32)
    if isinstance(module, (nn.Sequential, Conv2dNormActivation)):
        mods = list(module)
        i = 0
        while i < len(mods):
            m = mods[i]
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if f32 is not None and isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
                # Exported with the BatchNorm folded: one rounding for the pair.
                scale, offset = batchnorm_affine(nxt, x.c.dtype, stats)
                e_x, e_xp = conv_rounding(m, x.mag(), scale, offset), conv_rounding(m, x.mag() + d.mag(), scale, offset)
                x, d = step(nxt, *step(m, x, d, stats), stats)
                x, d = Box(x.c, x.r + e_x), d.widened(e_x + e_xp)
                i += 2
                continue
            x, d = step(m, x, d, stats, f32)
            i += 1
        return x, d
    if isinstance(module, SqueezeExcitation):
        pool = lambda t: t.mean((2, 3), keepdim=True)  # noqa: E731
        s, ds = Box(pool(x.c), pool(x.r)), d.linear(pool, pool)
        if f32 is not None:
            plane = x.c.shape[2] * x.c.shape[3]
            e_x, e_xp = pool_rounding(x.mag(), plane), pool_rounding(x.mag() + d.mag(), plane)
            s, ds = Box(s.c, s.r + e_x), ds.widened(e_x + e_xp)
        for m in (module.fc1, module.activation, module.fc2, module.scale_activation):
            s, ds = step(m, s, ds, stats, f32)
        # delta(x s) = D_x (S + D_s) + X D_s
        y, dy = x.mul(s), d.times_box(s + ds.box()) + ds.times_box(x)
        if f32 is not None:
            e_x = U32 * x.mag() * s.mag() + ETA32
            e_xp = U32 * (x.mag() + d.mag()) * (s.mag() + ds.mag()) + ETA32
            y, dy = Box(y.c, y.r + e_x), dy.widened(e_x + e_xp)
        return y, dy
    if isinstance(module, torchvision.models.efficientnet.MBConv):
        y, dy = step(module.block, x, d, stats, f32)
        if module.use_res_connect:
            if f32 is not None:
                e_x = U32 * (y.mag() + x.mag())
                e_xp = U32 * (y.mag() + dy.mag() + x.mag() + d.mag())
            y, dy = y + x, dy + d
            if f32 is not None:
                y, dy = Box(y.c, y.r + e_x), dy.widened(e_x + e_xp)
        return y, dy
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return x, d
    raise ValueError(f"unsupported module {type(module).__name__}")


def normalize_of(model):
    norm, net = model[0], model[1]
    return float(norm.mean), float(norm.std), net


def logit_difference_bounds(model, pixels, flip=1.0 / 255.0, stats=None, trace=None, form="interval", dtype=torch.float64, gens=64, f32=None):
    """Bounds on max_{c,j} |delta(z_c - z_j)| over the whole domain, one per pixel
    (a float64 tensor of len(pixels), on the model's device), differentiable in the model's
    parameters. `stats`: see `step`. `trace`, a list, receives per stage of `features` the
    log10 of the largest |D| and of the widest value interval (diagnostics). `form`: "interval"
    (the flip as an interval, what zonocert's diff-interval reproduces) or "symbol" (the flip's
    sign kept as one exact symbol through linear maps; never looser) or "zonotope" (D with at
    most `gens` generator rows per pixel, as zonocert's diff-zonotope). `dtype`: float64 (the
    reference) or float32 (a faster training surrogate on GPUs; overflows beyond ~1e38). `f32`
    (an `F32`): bound a float32 execution instead of the reals, as zonocert's --semantics f32
    (input conversion, normalisation, every layer, the classifier; not the softmax)."""
    mean, std, net = normalize_of(model)
    dev = next(model.parameters()).device
    n = len(pixels)
    f64 = dict(dtype=dtype, device=dev)
    x = Box(torch.full((1, 1, 28, 28), (0.5 - mean) / std, **f64), torch.full((1, 1, 28, 28), 0.5 / std, **f64))
    dr = torch.zeros((n, 1, 28 * 28), **f64)
    dr[torch.arange(n, device=dev), 0, torch.as_tensor(pixels, device=dev)] = flip / std
    dr = dr.view(n, 1, 28, 28)
    if f32 is not None:
        # fl(b/255) for x and x' at the flipped pixel (identical bytes convert identically).
        dr = dr + (dr != 0).to(dtype) * 2 * (U32 + ETA32) / std
        # The normalisation as exported: fl(v - mean), then fl(. / std), for x and for x'
        # (X holds |v| <= 1 + u; both roundings at every pixel, gamma_3 as zonocert bounds a
        # one-term map).
        v = 1 + U32 + ETA32
        e_sub = gamma32(3) * (v + abs(mean)) + 3 * ETA32
        e_div = gamma32(3) * (v + abs(mean) + e_sub) / std + 3 * ETA32
        e = e_sub / std + e_div
        x = Box(x.c, x.r + e + (U32 + ETA32) / std)
        dr = dr + 2 * e
    if form == "zonotope":
        g = torch.zeros((n, gens, 1, 28, 28), **f64)
        g[:, 0] = dr
        ids = torch.full((n, gens), -1, dtype=torch.long, device=dev)
        ids[:, 0] = 0
        d = ZDiff(g, ids, torch.zeros_like(dr), [1])
    else:
        d = Diff(None, dr) if form == "interval" else Diff(dr, torch.zeros_like(dr))
    for stage in net.features:
        x, d = step(stage, x, d, stats, f32)
        if trace is not None:
            trace.append((math.log10(max(d.mag().max().item(), 1e-300)), math.log10(max(x.r.max().item(), 1e-300))))
    w = net.classifier[-1].weight.to(dtype)
    rows = w.unsqueeze(0) - w.unsqueeze(1)  # [c, j, features]: w_c - w_j
    pooled_r = d.r.mean((2, 3))
    extra = 0
    if f32 is not None:
        plane = x.c.shape[2] * x.c.shape[3]
        m_x, m_xp = x.mag(), x.mag() + d.mag()
        pooled_r = pooled_r + (pool_rounding(m_x, plane) + pool_rounding(m_xp, plane)).flatten(1)
        # The classifier's own rounding, per logit, for x and x' (|pooled X| grown by its own).
        f = w.shape[1]
        b = net.classifier[-1].bias.to(dtype).abs()
        lin = lambda m: gamma32(f + 2) * (m.mean((2, 3)) + pool_rounding(m, plane).flatten(1)) @ w.abs().t() + gamma32(f + 2) * b + (f + 2) * ETA32  # noqa: E731
        e = lin(m_x) + lin(m_xp)  # [n or 1, classes]
        extra = e.unsqueeze(2) + e.unsqueeze(1)  # Δ(z_c − z_j) gets both logits' roundings
    bound = torch.einsum("cjf,nf->ncj", rows.abs(), pooled_r) + extra
    if isinstance(d, ZDiff):
        return (bound + torch.einsum("cjf,nkf->nkcj", rows, d.g.mean((3, 4))).abs().sum(1)).flatten(1).max(1).values
    if d.a is not None:
        bound = bound + torch.einsum("cjf,nf->ncj", rows, d.a.mean((2, 3))).abs()
    return bound.flatten(1).max(1).values


def max_bound_all_pixels(model, form="interval", chunk=112, f32=None):
    """The largest `logit_difference_bounds` over all 784 pixels (in chunks, no gradients)."""
    with torch.no_grad():
        return max(
            logit_difference_bounds(model, list(range(k, min(k + chunk, 784))), form=form, f32=f32).max().item() for k in range(0, 784, chunk)
        )


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
    p.add_argument("--f32", action="store_true", help="bound a float32 execution (zonocert --semantics f32, --ulp 4)")
    args = p.parse_args()
    from train import build_model

    model = build_model(0.0, 0.0)
    state = torch.load(args.checkpoint, map_location="cpu")
    model.load_state_dict(state.get("model", state))
    model.eval()
    with torch.no_grad():
        b = logit_difference_bounds(model, parse_pixels(args.pixels), (1 << args.bit) / 255.0, f32=F32() if args.f32 else None)
    print(f"max |delta(z_c - z_j)| <= {b.max().item():.6e}; probability bound {b.max().item() / 4:.6e} (log10 {math.log10(b.max().item()):.1f})")


if __name__ == "__main__":
    main()
