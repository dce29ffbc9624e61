//! Batched forward kernels shared by the concrete executor and the abstract domains.
//!
//! Every kernel maps a batch of `n` per-sample tensors (contiguous, row-major, NCHW) to a batch
//! of outputs. Affine kernels take `with_bias`: the abstract domains apply a layer to a
//! zonotope's centre with the bias and to each generator without it, as one batched call.

use crate::ir::{ChannelAffine, Conv, Linear};
use nalgebra::{DMatrixView, DMatrixViewMut};
use rayon::prelude::*;

/// The scalar types the kernels run in (`f32` and `f64`).
pub trait Real: nalgebra::RealField + Copy + Send + Sync + Default + std::fmt::Debug + 'static {
    /// Conversion from `f64` (rounding to nearest for `f32`).
    fn cast(x: f64) -> Self;
    /// Exact conversion to `f64`.
    fn widen(self) -> f64;
}

impl Real for f32 {
    fn cast(x: f64) -> Self {
        x as f32
    }
    fn widen(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn cast(x: f64) -> Self {
        x
    }
    fn widen(self) -> f64 {
        self
    }
}

/// `out[m×n] = a[m×k] · b[k×n]` for row-major slices, through nalgebra's tuned GEMM.
pub fn matmul<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize, out: &mut [T]) {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    debug_assert_eq!(out.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out.iter_mut().for_each(|o| *o = T::zero());
        return;
    }
    // nalgebra falls back to naive loops when a dimension is ≤ 5; thin products are plain
    // dot products or row updates over contiguous memory, which vectorise well.
    if n == 1 {
        for (o, row) in out.iter_mut().zip(a.chunks_exact(k)) {
            *o = row.iter().zip(b).fold(T::zero(), |acc, (&x, &y)| acc + x * y);
        }
        return;
    }
    if m <= 4 {
        for i in 0..m {
            let o = &mut out[i * n..(i + 1) * n];
            o.iter_mut().for_each(|v| *v = T::zero());
            for (p, brow) in b.chunks_exact(n).enumerate() {
                let x = a[i * k + p];
                o.iter_mut().zip(brow).for_each(|(v, &y)| *v += x * y);
            }
        }
        return;
    }
    // A row-major m×k matrix is the column-major k×m matrix Aᵀ, so Cᵀ = Bᵀ·Aᵀ.
    let a_cm = DMatrixView::from_slice(a, k, m);
    let b_cm = DMatrixView::from_slice(b, n, k);
    let mut c_cm = DMatrixViewMut::from_slice(out, n, m);
    c_cm.gemm(T::one(), &b_cm, &a_cm, T::zero());
}

/// Pointwise convolutions over planes smaller than this many pixels are batched across samples
/// into GEMMs of about this many columns.
const GEMM_COLUMNS: usize = 256;

/// Conv weights converted to the kernel's scalar type.
#[derive(Debug, Clone)]
pub struct ConvKernel<T> {
    /// The layer's geometry and the `f64` weights.
    pub conv: Conv,
    /// `conv.weight` in `T`.
    pub weight: Vec<T>,
    /// `conv.bias` in `T`.
    pub bias: Vec<T>,
    /// Wᵀ `[in, out]` for the batched 1×1 path.
    weight_t: Vec<T>,
}

impl<T: Real> ConvKernel<T> {
    /// Converts the weights of `conv` to `T`.
    pub fn new(conv: &Conv) -> Self {
        let weight: Vec<T> = conv.weight.iter().map(|&w| T::cast(w)).collect();
        let pointwise = conv.kernel == [1, 1] && conv.groups == 1;
        let weight_t = if pointwise { transpose(&weight, conv.out_channels, conv.in_channels) } else { vec![] };
        ConvKernel { conv: conv.clone(), weight, bias: conv.bias.iter().map(|&b| T::cast(b)).collect(), weight_t }
    }

    /// Applies the conv to `n` samples of shape `[in_channels, h, w]`.
    pub fn forward(&self, x: &[T], n: usize, h: usize, w: usize, with_bias: bool) -> Vec<T> {
        let c = &self.conv;
        let (oh, ow) = c.output_hw(h, w).expect("conv shape validated at import");
        let in_len = c.in_channels * h * w;
        let out_len = c.out_channels * oh * ow;
        let mut out = vec![T::zero(); n * out_len];
        let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] && c.groups == 1;
        if pointwise && (h * w == 1 || (n > 1 && h * w < GEMM_COLUMNS)) {
            pointwise_batched(&self.weight, &self.weight_t, x, n, (c.in_channels, c.out_channels), h * w, &mut out);
        } else {
            let taps = (!pointwise && c.is_depthwise()).then(|| DepthwisePlan::new(c, h, w, oh, ow));
            if let (Some(plan), true) = (&taps, n >= DEPTHWISE_BATCH) {
                depthwise_batched(c, &plan.terms, &self.weight, x, h * w, oh * ow, &mut out);
                return with_bias_added(out, &self.bias, with_bias, oh * ow, out_len);
            }
            out.par_chunks_mut(out_len.max(1)).zip(x.par_chunks(in_len.max(1))).for_each(|(o, xi)| {
                if pointwise {
                    matmul(&self.weight, xi, c.out_channels, c.in_channels, h * w, o);
                } else if let Some(plan) = &taps {
                    depthwise(c, plan, &self.weight, xi, h * w, oh * ow, o);
                } else {
                    im2col_conv(c, &self.weight, xi, h, w, oh, ow, o);
                }
            });
        }
        with_bias_added(out, &self.bias, with_bias, oh * ow, out_len)
    }
}

/// `out` with each channel's bias added to its plane, when `with_bias`.
fn with_bias_added<T: Real>(mut out: Vec<T>, bias: &[T], with_bias: bool, plane: usize, out_len: usize) -> Vec<T> {
    if with_bias {
        for sample in out.chunks_mut(out_len.max(1)) {
            for (ch, b) in bias.iter().enumerate() {
                sample[ch * plane..(ch + 1) * plane].iter_mut().for_each(|v| *v += *b);
            }
        }
    }
    out
}

/// A pointwise conv (`weight` `[out, in]`, `weight_t` its transpose) of `n` samples on planes
/// of `hw` pixels, batched: one GEMM `[n, in] · Wᵀ` on 1×1 planes; on other small planes a
/// fixed number of samples (independent of the thread count, so results stay bit-identical)
/// regrouped into one `W · [in, group·hw]`, since each sample's GEMM alone would be thin
/// (`hw` columns), where GEMM kernels fall back to vector loops. The transpose of the conv is
/// the same call with the two weights swapped.
fn pointwise_batched<T: Real>(weight: &[T], weight_t: &[T], x: &[T], n: usize, (cin, cout): (usize, usize), hw: usize, out: &mut [T]) {
    let (in_len, out_len) = (cin * hw, cout * hw);
    if hw == 1 {
        matmul(x, weight_t, n, cin, cout, out);
        return;
    }
    if in_len == 0 || out_len == 0 {
        return;
    }
    let group = GEMM_COLUMNS.div_ceil(hw);
    out.par_chunks_mut(group * out_len).zip(x.par_chunks(group * in_len)).for_each(|(o, xi)| {
        let g = xi.len() / in_len;
        let cols = g * hw;
        let mut xt = vec![T::zero(); cin * cols];
        for (s, sample) in xi.chunks_exact(in_len).enumerate() {
            for (ci, plane) in sample.chunks_exact(hw).enumerate() {
                xt[ci * cols + s * hw..ci * cols + (s + 1) * hw].copy_from_slice(plane);
            }
        }
        let mut yt = vec![T::zero(); cout * cols];
        matmul(weight, &xt, cout, cin, cols, &mut yt);
        for (s, sample) in o.chunks_exact_mut(out_len).enumerate() {
            for (co, plane) in sample.chunks_exact_mut(hw).enumerate() {
                plane.copy_from_slice(&yt[co * cols + s * hw..co * cols + (s + 1) * hw]);
            }
        }
    });
}

fn transpose<T: Copy>(a: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut t = Vec::with_capacity(a.len());
    for j in 0..cols {
        for i in 0..rows {
            t.push(a[i * cols + j]);
        }
    }
    t
}

/// Where a depthwise conv's in-image taps land on one `h×w` plane: computed once per call, then
/// used for every channel of every sample (the index arithmetic was most of the cost on the
/// 1×1 and 2×2 planes of a 28×28 EfficientNet).
struct DepthwisePlan {
    /// Every (output, input, tap) triple, grouped by output and in kernel order within each.
    terms: Vec<[u32; 3]>,
    /// How one sample is computed.
    per_sample: PerSample,
}

/// How [`depthwise`] walks one sample's planes.
enum PerSample {
    /// Small output planes: the plan's term list.
    Terms,
    /// Larger planes: per in-image tap, the output rows and columns it reaches.
    Rows { taps: Vec<TapRows>, w: usize, ow: usize, sx: usize },
}

/// Batches of at least this many samples (a zonotope's generator rows) run
/// [`depthwise_batched`].
const DEPTHWISE_BATCH: usize = 8;

/// Samples per block of [`depthwise_batched`].
const DEPTHWISE_BLOCK: usize = 32;

/// One kernel tap's reach: outputs `[oy0, oy1) × [ox0, ox1)`, whose input row is `oy·sy + iy_off`
/// and first input column `ix0`.
struct TapRows {
    tap: usize,
    oy0: usize,
    oy1: usize,
    ox0: usize,
    ox1: usize,
    sy: usize,
    iy_off: isize,
    ix0: usize,
}

/// Output planes up to this many pixels use [`PerSample::Terms`].
const SMALL_PLANE: usize = 16;

impl DepthwisePlan {
    fn new(c: &Conv, h: usize, w: usize, oh: usize, ow: usize) -> Self {
        let [kh, kw] = c.kernel;
        let [sy, sx] = c.stride;
        let [dy, dx] = c.dilation;
        let (py, px) = (c.pads[0] as isize, c.pads[1] as isize);
        // The output index range [lo, hi) whose input index o·s + k·d − p falls in [0, len).
        let valid = |k: usize, s: usize, d: usize, p: isize, len: usize, olen: usize| -> (usize, usize) {
            let off = (k * d) as isize - p;
            let lo = if off >= 0 { 0 } else { ((-off) as usize).div_ceil(s) };
            let last = len as isize - 1 - off;
            let hi = if last < 0 { 0 } else { (last as usize / s + 1).min(olen) };
            (lo.min(hi), hi)
        };
        let mut taps = Vec::new();
        for ky in 0..kh {
            let (oy0, oy1) = valid(ky, sy, dy, py, h, oh);
            for kx in 0..kw {
                let (ox0, ox1) = valid(kx, sx, dx, px, w, ow);
                if ox0 >= ox1 || oy0 >= oy1 {
                    continue;
                }
                let ix0 = ((ox0 * sx + kx * dx) as isize - px) as usize;
                taps.push(TapRows { tap: ky * kw + kx, oy0, oy1, ox0, ox1, sy, iy_off: (ky * dy) as isize - py, ix0 });
            }
        }
        let mut terms = Vec::new();
        for oy in 0..oh {
            for ox in 0..ow {
                for t in taps.iter().filter(|t| (t.oy0..t.oy1).contains(&oy) && (t.ox0..t.ox1).contains(&ox)) {
                    let iy = (oy * t.sy) as isize + t.iy_off;
                    let ix = t.ix0 + (ox - t.ox0) * sx;
                    terms.push([(oy * ow + ox) as u32, (iy as usize * w + ix) as u32, t.tap as u32]);
                }
            }
        }
        let per_sample = if oh * ow > SMALL_PLANE { PerSample::Rows { taps, w, ow, sx } } else { PerSample::Terms };
        DepthwisePlan { terms, per_sample }
    }
}

/// Depthwise convolution of `n` samples, a block of samples at a time: each channel's planes
/// are transposed so that every term `w·x` updates a whole block of samples in one vector
/// loop. The same terms as [`depthwise`], added in the same order per output, so the same
/// floats.
fn depthwise_batched<T: Real>(c: &Conv, terms: &[[u32; 3]], weight: &[T], x: &[T], plane: usize, oplane: usize, out: &mut [T]) {
    depthwise_batched_either(c, terms, weight, x, (plane, oplane), out, false);
}

/// [`depthwise_batched`], or with `transpose` its transpose: each term `(p, q, t)` then sends
/// `w_t·g[p]` back to input `q` (`x` holds output-plane samples, `out` input-plane ones).
fn depthwise_batched_either<T: Real>(
    c: &Conv,
    terms: &[[u32; 3]],
    weight: &[T],
    x: &[T],
    (plane, oplane): (usize, usize),
    out: &mut [T],
    transpose: bool,
) {
    let kk = c.kernel[0] * c.kernel[1];
    let (plane, oplane) = if transpose { (oplane, plane) } else { (plane, oplane) };
    let (in_len, out_len) = (c.in_channels * plane, c.out_channels * oplane);
    if in_len == 0 || out_len == 0 {
        return;
    }
    out.par_chunks_mut(DEPTHWISE_BLOCK * out_len).zip(x.par_chunks(DEPTHWISE_BLOCK * in_len)).for_each(|(o, xi)| {
        let b = xi.len() / in_len;
        let mut xt = vec![T::zero(); plane * b];
        let mut ot = vec![T::zero(); oplane * b];
        for ch in 0..c.out_channels {
            for (r, sample) in xi.chunks_exact(in_len).enumerate() {
                for (q, &v) in sample[ch * plane..(ch + 1) * plane].iter().enumerate() {
                    xt[q * b + r] = v;
                }
            }
            ot.iter_mut().for_each(|v| *v = T::zero());
            let wk = &weight[ch * kk..(ch + 1) * kk];
            for &[p, q, t] in terms {
                let wt = wk[t as usize];
                let (p, q) = if transpose { (q as usize * b, p as usize * b) } else { (p as usize * b, q as usize * b) };
                ot[p..p + b].iter_mut().zip(&xt[q..q + b]).for_each(|(v, &xv)| *v += wt * xv);
            }
            for (r, sample) in o.chunks_exact_mut(out_len).enumerate() {
                for (p, v) in sample[ch * oplane..(ch + 1) * oplane].iter_mut().enumerate() {
                    *v = ot[p * b + r];
                }
            }
        }
    });
}

/// Depthwise convolution of one sample. Each output is the sum of its in-image taps in kernel
/// order (the same terms, in the same order, as a direct loop); on larger planes each tap
/// updates whole output rows, so the inner loop has no bounds tests (and vectorises at stride 1).
fn depthwise<T: Real>(c: &Conv, plan: &DepthwisePlan, weight: &[T], x: &[T], plane: usize, oplane: usize, out: &mut [T]) {
    let kk = c.kernel[0] * c.kernel[1];
    for ch in 0..c.out_channels {
        let wk = &weight[ch * kk..(ch + 1) * kk];
        let xin = &x[ch * plane..(ch + 1) * plane];
        let o = &mut out[ch * oplane..(ch + 1) * oplane];
        o.iter_mut().for_each(|v| *v = T::zero());
        match &plan.per_sample {
            PerSample::Terms => {
                for &[p, q, t] in &plan.terms {
                    o[p as usize] += wk[t as usize] * xin[q as usize];
                }
            }
            PerSample::Rows { taps, w, ow, sx } => {
                let (w, ow, sx) = (*w, *ow, *sx);
                for t in taps {
                    let wt = wk[t.tap];
                    let len = t.ox1 - t.ox0;
                    for oy in t.oy0..t.oy1 {
                        let iy = ((oy * t.sy) as isize + t.iy_off) as usize;
                        let row = &xin[iy * w..(iy + 1) * w];
                        let orow = &mut o[oy * ow + t.ox0..oy * ow + t.ox1];
                        if sx == 1 {
                            orow.iter_mut().zip(&row[t.ix0..t.ix0 + len]).for_each(|(v, &xv)| *v += wt * xv);
                        } else {
                            orow.iter_mut().zip(row[t.ix0..].iter().step_by(sx)).for_each(|(v, &xv)| *v += wt * xv);
                        }
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn im2col_conv<T: Real>(c: &Conv, weight: &[T], x: &[T], h: usize, w: usize, oh: usize, ow: usize, out: &mut [T]) {
    let [kh, kw] = c.kernel;
    let ig = c.in_channels / c.groups;
    let og = c.out_channels / c.groups;
    let k = ig * kh * kw;
    let p = oh * ow;
    let mut cols = vec![T::zero(); k * p];
    for g in 0..c.groups {
        for ci in 0..ig {
            let xin = &x[(g * ig + ci) * h * w..(g * ig + ci + 1) * h * w];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut cols[((ci * kh + ky) * kw + kx) * p..((ci * kh + ky) * kw + kx + 1) * p];
                    for oy in 0..oh {
                        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                        for ox in 0..ow {
                            let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                            row[oy * ow + ox] = if iy < 0 || iy >= h as isize || ix < 0 || ix >= w as isize {
                                T::zero()
                            } else {
                                xin[iy as usize * w + ix as usize]
                            };
                        }
                    }
                }
            }
        }
        let wg = &weight[g * og * k..(g + 1) * og * k];
        matmul(wg, &cols, og, k, p, &mut out[g * og * p..(g + 1) * og * p]);
    }
}

/// Linear weights converted to the kernel's scalar type (stored transposed for the GEMM).
#[derive(Debug, Clone)]
pub struct LinearKernel<T> {
    /// The layer.
    pub linear: Linear,
    /// Wᵀ, `[in, out]` row-major, in `T`.
    pub weight_t: Vec<T>,
    /// Bias in `T`.
    pub bias: Vec<T>,
}

impl<T: Real> LinearKernel<T> {
    /// Converts the weights of `linear` to `T`.
    pub fn new(linear: &Linear) -> Self {
        let w: Vec<T> = linear.weight.iter().map(|&v| T::cast(v)).collect();
        LinearKernel {
            linear: linear.clone(),
            weight_t: transpose(&w, linear.out_features, linear.in_features),
            bias: linear.bias.iter().map(|&b| T::cast(b)).collect(),
        }
    }

    /// Applies the layer to `n` samples of `in_features` values.
    pub fn forward(&self, x: &[T], n: usize, with_bias: bool) -> Vec<T> {
        let l = &self.linear;
        let mut out = vec![T::zero(); n * l.out_features];
        matmul(x, &self.weight_t, n, l.in_features, l.out_features, &mut out);
        if with_bias {
            for row in out.chunks_mut(l.out_features.max(1)) {
                row.iter_mut().zip(&self.bias).for_each(|(o, b)| *o += *b);
            }
        }
        out
    }
}

/// Per-channel affine map on `n` samples of shape `[channels, plane]`.
pub fn channel_affine<T: Real>(a: &ChannelAffine, x: &[T], channels: usize, plane: usize, with_shift: bool) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for sample in x.chunks(channels * plane) {
        for ch in 0..channels {
            let (s, b) = a.at(ch);
            let (s, b) = (T::cast(s), if with_shift { T::cast(b) } else { T::zero() });
            for &v in &sample[ch * plane..(ch + 1) * plane] {
                out.push(if a.divide { v / s + b } else { v * s + b });
            }
        }
    }
    out
}

/// Spatial mean: `[channels, plane] → [channels]` per sample.
pub fn global_avg_pool<T: Real>(x: &[T], plane: usize) -> Vec<T> {
    let denom = T::cast(plane as f64);
    x.chunks(plane.max(1)).map(|c| c.iter().fold(T::zero(), |a, &v| a + v) / denom).collect()
}

/// Zero padding of `[channels, h, w]` samples by (top, left, bottom, right).
pub fn pad<T: Real>(x: &[T], channels: usize, h: usize, w: usize, pads: [usize; 4]) -> Vec<T> {
    let (nh, nw) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
    let n = x.len() / (channels * h * w).max(1);
    let mut out = vec![T::zero(); n * channels * nh * nw];
    for s in 0..n {
        for c in 0..channels {
            for y in 0..h {
                let src = &x[((s * channels + c) * h + y) * w..((s * channels + c) * h + y + 1) * w];
                let dst0 = ((s * channels + c) * nh + y + pads[0]) * nw + pads[1];
                out[dst0..dst0 + w].copy_from_slice(src);
            }
        }
    }
    out
}

/// The transpose of [`global_avg_pool`], for reverse mode: each channel's gradient spread
/// evenly over its `plane`.
pub fn global_avg_pool_transpose<T: Real>(g: &[T], plane: usize) -> Vec<T> {
    let denom = T::cast(plane as f64);
    g.iter().flat_map(|&d| std::iter::repeat_n(d / denom, plane)).collect()
}

/// The transpose of [`pad`], for reverse mode: the padded `[channels, h + …, w + …]`
/// gradients of every sample cropped back to `[channels, h, w]`.
pub fn pad_transpose<T: Real>(g: &[T], channels: usize, h: usize, w: usize, pads: [usize; 4]) -> Vec<T> {
    let (nh, nw) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
    let mut out = Vec::with_capacity(g.len() / (nh * nw).max(1) * h * w);
    for sample in g.chunks((channels * nh * nw).max(1)) {
        for c in 0..channels {
            for y in 0..h {
                let row = (c * nh + y + pads[0]) * nw + pads[1];
                out.extend_from_slice(&sample[row..row + w]);
            }
        }
    }
    out
}

/// The logistic function in `T`.
pub fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `x · sigmoid(x)` in `T`.
pub fn swish<T: Real>(x: T) -> T {
    x * sigmoid(x)
}

/// Softmax over rows of length `classes`.
pub fn softmax<T: Real>(x: &[T], classes: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(classes.max(1)) {
        let m = row.iter().skip(1).fold(row[0], |a, &v| if v > a { v } else { a });
        let e: Vec<T> = row.iter().map(|&v| (v - m).exp()).collect();
        let s = e.iter().fold(T::zero(), |a, &v| a + v);
        out.extend(e.into_iter().map(|v| v / s));
    }
    out
}

/// `x ⊙ s` where `s` is either the same shape as `x` or `[channels]` broadcast over each plane.
pub fn mul_broadcast<T: Real>(x: &[T], s: &[T], x_len: usize, s_len: usize) -> Vec<T> {
    let n = x.len() / x_len.max(1);
    let plane = x_len / s_len.max(1);
    let mut out = Vec::with_capacity(x.len());
    for i in 0..n {
        let xs = &x[i * x_len..(i + 1) * x_len];
        let ss = &s[i * s_len..(i + 1) * s_len];
        for (j, &v) in xs.iter().enumerate() {
            out.push(v * ss[j / plane]);
        }
    }
    out
}

/// The transpose of a conv's linear part (no bias), for reverse mode: maps `n` output
/// gradients `[out_channels, oh, ow]` back to input gradients `[in_channels, h, w]`.
pub fn conv_transpose<T: Real>(kern: &ConvKernel<T>, g: &[T], n: usize, h: usize, w: usize) -> Vec<T> {
    let c = &kern.conv;
    let (oh, ow) = c.output_hw(h, w).expect("conv shape validated at import");
    let (in_len, out_len) = (c.in_channels * h * w, c.out_channels * oh * ow);
    let mut out = vec![T::zero(); n * in_len];
    let pointwise = c.kernel == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] && c.groups == 1;
    if pointwise && (h * w == 1 || (n > 1 && h * w < GEMM_COLUMNS)) {
        pointwise_batched(&kern.weight_t, &kern.weight, g, n, (c.out_channels, c.in_channels), h * w, &mut out);
        return out;
    }
    if !pointwise && c.is_depthwise() && n >= DEPTHWISE_BATCH {
        let plan = DepthwisePlan::new(c, h, w, oh, ow);
        depthwise_batched_either(c, &plan.terms, &kern.weight, g, (h * w, oh * ow), &mut out, true);
        return out;
    }
    let [kh, kw] = c.kernel;
    let (ig, og) = (c.in_channels / c.groups, c.out_channels / c.groups);
    out.par_chunks_mut(in_len.max(1)).zip(g.par_chunks(out_len.max(1))).for_each(|(o, gs)| {
        if pointwise {
            // Wᵀ [in, out] · G [out, h·w]
            matmul(&kern.weight_t, gs, c.in_channels, c.out_channels, h * w, o);
            return;
        }
        for co in 0..c.out_channels {
            let grp = co / og;
            for ci_l in 0..ig {
                let ci = grp * ig + ci_l;
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wt = kern.weight[((co * ig + ci_l) * kh + ky) * kw + kx];
                        for oy in 0..oh {
                            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for ox in 0..ow {
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                                if ix >= 0 && ix < w as isize {
                                    o[(ci * h + iy as usize) * w + ix as usize] += wt * gs[(co * oh + oy) * ow + ox];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    out
}

/// The transpose of a linear layer (no bias), for reverse mode: `n` gradients of length
/// `out_features` to `n` of length `in_features`.
pub fn linear_transpose<T: Real>(kern: &LinearKernel<T>, g: &[T], n: usize) -> Vec<T> {
    let l = &kern.linear;
    let mut out = vec![T::zero(); n * l.in_features];
    for (o, gs) in out.chunks_mut(l.in_features.max(1)).zip(g.chunks(l.out_features.max(1))) {
        for (i, oi) in o.iter_mut().enumerate() {
            *oi = kern.weight_t[i * l.out_features..(i + 1) * l.out_features].iter().zip(gs).fold(T::zero(), |a, (&w, &d)| a + w * d);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The depthwise conv written as the definition: per output, its in-image taps in kernel order.
    fn direct_depthwise(c: &Conv, x: &[f64], h: usize, w: usize) -> Vec<f64> {
        let (oh, ow) = c.output_hw(h, w).expect("valid shape");
        let [kh, kw] = c.kernel;
        let mut out = vec![0.0; c.out_channels * oh * ow];
        for ch in 0..c.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                            let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                acc += c.weight[(ch * kh + ky) * kw + kx] * x[(ch * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                    out[(ch * oh + oy) * ow + ox] = acc;
                }
            }
        }
        out
    }

    /// Uniform numbers in [−1, 1) from `seed` (a linear congruential generator).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }
    }

    proptest! {
        /// Every path (small and large output planes, one sample at a time or batched) gives
        /// exactly the direct loop's floats.
        #[test]
        fn depthwise_plans_match_the_direct_loop(
            channels in 1usize..5,
            k in prop_oneof![Just(1usize), Just(3), Just(5)],
            stride in 1usize..3,
            dilation in 1usize..3,
            pad in 0usize..3,
            h in 1usize..9,
            w in 1usize..9,
            n in prop_oneof![1usize..3, 8usize..70],
            seed in 0u64..1000,
        ) {
            let mut next = uniform(seed);
            let c = Conv {
                weight: (0..channels * k * k).map(|_| next()).collect(),
                bias: vec![0.0; channels],
                in_channels: channels,
                out_channels: channels,
                kernel: [k, k],
                stride: [stride, stride],
                pads: [pad, pad, pad, pad],
                dilation: [dilation, dilation],
                groups: channels,
            };
            prop_assume!(channels > 1 && c.output_hw(h, w).is_some());
            let x: Vec<f64> = (0..n * channels * h * w).map(|_| next()).collect();
            let got = ConvKernel::<f64>::new(&c).forward(&x, n, h, w, false);
            let want: Vec<f64> = x.chunks(channels * h * w).flat_map(|s| direct_depthwise(&c, s, h, w)).collect();
            prop_assert_eq!(got.len(), want.len());
            for (g, e) in got.iter().zip(&want) {
                prop_assert_eq!(g.to_bits(), e.to_bits());
            }
        }

        /// The transpose (reverse mode) of every conv path (pointwise on 1×1 and small planes,
        /// batched or not; depthwise batched or not; general) is the transpose of the forward
        /// map, read off the forward kernels on unit vectors, up to the rounding of its sums.
        #[test]
        fn conv_transpose_is_the_forward_maps_transpose(
            kind in 0usize..3,
            channels in 1usize..5,
            out_channels in 1usize..6,
            h in 1usize..6,
            w in 1usize..6,
            n in prop_oneof![1usize..3, 8usize..40],
            seed in 0u64..1000,
        ) {
            let mut next = uniform(seed);
            // 0: pointwise, 1: depthwise 3×3 stride 2 pad 1, 2: general 3×3 pad 1.
            let (k, stride, pad, groups, cout) = match kind {
                0 => (1, 1, 0, 1, out_channels),
                1 => (3, 2, 1, channels, channels),
                _ => (3, 1, 1, 1, out_channels),
            };
            let c = Conv {
                weight: (0..cout * (channels / groups) * k * k).map(|_| next()).collect(),
                bias: vec![0.0; cout],
                in_channels: channels,
                out_channels: cout,
                kernel: [k, k],
                stride: [stride, stride],
                pads: [pad; 4],
                dilation: [1, 1],
                groups,
            };
            let (oh, ow) = c.output_hw(h, w).expect("valid shape");
            let (in_len, out_len) = (channels * h * w, cout * oh * ow);
            let kern = ConvKernel::<f64>::new(&c);
            let mut eye = vec![0.0; in_len * in_len];
            (0..in_len).for_each(|i| eye[i * in_len + i] = 1.0);
            // Row i of `cols` is the map's column i.
            let cols = kern.forward(&eye, in_len, h, w, false);
            let g: Vec<f64> = (0..n * out_len).map(|_| next()).collect();
            let got = conv_transpose(&kern, &g, n, h, w);
            prop_assert_eq!(got.len(), n * in_len);
            for s in 0..n {
                for i in 0..in_len {
                    let terms = (0..out_len).map(|o| cols[i * out_len + o] * g[s * out_len + o]);
                    let (want, mag) = terms.fold((0.0, 0.0), |(a, m), t| (a + t, m + t.abs()));
                    let v = got[s * in_len + i];
                    prop_assert!((v - want).abs() <= 1e-12 * mag, "kind {} sample {} input {}: {:e} against {:e}", kind, s, i, v, want);
                }
            }
        }
    }
}
