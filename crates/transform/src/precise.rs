//! Rigorous high-precision evaluation of a network at one image (ball arithmetic).
//!
//! At a single image the question has an exact answer, `max_c |p_c(x′) − p_c(x)|`, and any
//! sound enclosure of it is a certificate. Interval or zonotope analyses in `f64` cannot give
//! a useful one on a deep network: every layer's rounding error is boxed, and boxing through an
//! EfficientNet-B0 amplifies it by roughly 10⁴⁶ (about 90× per MBConv block; measured: at 192
//! bits the shipped model's probabilities come out enclosed only to 10⁻¹⁰), so a 10⁻¹⁶
//! rounding becomes a vacuous bound. Here the centre of every value is carried with 256 bits
//! and its distance to the exact real value by an `f64` radius rounded upward; the same
//! amplification then acts on a 10⁻⁷⁷ starting error and the probabilities come out enclosed
//! to about 10⁻²⁷.
//!
//! Two backends compute the centres: [`crate::fixed`] (256-bit fixed point, the default) and
//! `BigFloat` from `astro-float` at any precision (this file), which also serves as the
//! fallback and computes the final softmax.
//!
//! What is guaranteed: for the network as stored in the IR (weights are exact binary values),
//! every returned ball `[c − r, c + r]` contains the exact real value. Assumptions of the
//! `BigFloat` backend: the basic operations of `astro-float` (add, sub, mul, div) at precision
//! `p` are correctly rounded to nearest, as its documentation states; the bound allows four
//! times that error (`U = 2^{2−p}` relative). The exponential is not taken from the library:
//! it is computed from basic operations with an explicit truncation and rounding bound.

use crate::activation::Unary;
use crate::fixed::FixedNetwork;
use astro_float::{BigFloat, Consts, RoundingMode};
use zonocert_domain::Interval;
use zonocert_network::ir::{numel, Conv, Linear, Op};
use zonocert_network::{Network, ValueId, ValueStore};

/// Rounding mode of every operation (round to nearest; the error bound does not rely on ties).
const RM: RoundingMode = RoundingMode::ToEven;
/// Precision of weights: an `f64` (53 bits) is exact in one 64-bit word.
const WEIGHT_PRECISION: usize = 64;
/// Argument reduction of the exponential: `exp(r) = exp(r / 2^K)^(2^K)`.
const EXP_HALVINGS: i32 = 16;
/// Bound on the reduced argument `|s| = |r| / 2^K` (`|r| ≤ ln2/2` plus rounding).
const EXP_REDUCED_MAX: f64 = 0.36 / 65536.0;
/// Exponential arguments beyond this give up (the ball becomes unbounded, never wrong).
const EXP_LIMIT: f64 = 600.0;

/// Values of one tensor: centres with `precision` bits, radii and magnitude bounds in `f64`.
#[derive(Clone)]
pub struct Balls {
    /// Centres.
    pub centre: Vec<BigFloat>,
    /// Upper bounds on `|exact − centre|`.
    pub radius: Vec<f64>,
    /// Upper bounds on `|centre|` (powers of two; used only in rounding-error terms).
    mag: Vec<f64>,
}

impl Balls {
    fn with_capacity(n: usize) -> Self {
        Balls { centre: Vec::with_capacity(n), radius: Vec::with_capacity(n), mag: Vec::with_capacity(n) }
    }

    fn push(&mut self, c: BigFloat, r: f64) {
        self.mag.push(magnitude(&c));
        self.centre.push(c);
        self.radius.push(if r.is_nan() { f64::INFINITY } else { r });
    }

    /// Balls around exact `f64` centres (at `precision` bits) with the given radii.
    pub fn from_f64(centres: &[f64], radii: &[f64], precision: usize) -> Self {
        let mut out = Balls::with_capacity(centres.len());
        for (&c, &r) in centres.iter().zip(radii) {
            out.push(BigFloat::from_f64(c, precision), r);
        }
        out
    }

    /// Balls around the given centres with the given radii.
    pub fn from_big(centres: Vec<BigFloat>, radii: &[f64]) -> Self {
        let mut out = Balls::with_capacity(centres.len());
        for (c, &r) in centres.into_iter().zip(radii) {
            out.push(c, r);
        }
        out
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.centre.len()
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.centre.is_empty()
    }

    /// An `f64` interval containing the exact value `k`.
    pub fn interval(&self, k: usize) -> Interval {
        let e = enclose(&self.centre[k]);
        let r = self.radius[k];
        Interval::new((e.lo - r).next_down(), (e.hi + r).next_up())
    }

    /// The largest radius.
    pub fn max_radius(&self) -> f64 {
        self.radius.iter().fold(0.0, |a, &r| a.max(r))
    }
}

/// An upper bound `2^e ≥ |x|` (astro-float stores `x = 0.m · 2^e` with `m` in `[1/2, 1)`).
fn magnitude(x: &BigFloat) -> f64 {
    match (x.as_raw_parts(), x.is_zero()) {
        (_, true) => 0.0,
        (Some((_, _, _, e, _)), false) => pow2(e as i64),
        (None, false) => f64::INFINITY,
    }
}

/// `2^k` as an `f64`, rounded up (infinite above the range, the smallest normal below it).
pub(crate) fn pow2(k: i64) -> f64 {
    if k > 1023 {
        f64::INFINITY
    } else if k < -1022 {
        f64::MIN_POSITIVE
    } else {
        f64::from_bits(((k + 1023) as u64) << 52)
    }
}

/// An `f64` interval containing the value of `x` (from its 53 leading mantissa bits).
pub fn enclose(x: &BigFloat) -> Interval {
    if x.is_zero() {
        return Interval::point(0.0);
    }
    let Some((words, _, sign, e, _)) = x.as_raw_parts() else {
        return Interval::new(f64::NEG_INFINITY, f64::INFINITY);
    };
    let Some(&top) = words.last() else {
        return Interval::new(f64::NEG_INFINITY, f64::INFINITY);
    };
    let e = e as i64;
    if !(-900..=1000).contains(&e) {
        let m = pow2(e);
        return Interval::new(-m, m);
    }
    // |x| ∈ [t, t + 1] · 2^(e − 53) with t the 53 leading bits; both ends are exact in f64.
    let t = (top >> 11) as f64;
    let scale = pow2(e - 53);
    let (lo, hi) = (t * scale, (t + 1.0) * scale);
    if sign.is_negative() {
        Interval::new(-hi, -lo)
    } else {
        Interval::new(lo, hi)
    }
}

/// `log2` of `2|s|^(N+1)/(N+1)!`, the Taylor remainder bound of `exp` on `|s| ≤ s_max` for
/// `|s| ≤ 1` (in logarithms, so that it does not underflow at high precision).
fn taylor_remainder_log2(s_max: f64, degree: usize) -> f64 {
    let log_fact: f64 = (1..=degree + 1).map(|j| (j as f64).log2()).sum();
    1.0 + (degree as f64 + 1.0) * s_max.log2() - log_fact
}

/// The least Taylor degree whose remainder on `|s| ≤ EXP_REDUCED_MAX` is below `2^{−p}`.
fn taylor_degree(precision: usize) -> usize {
    (1..).find(|&n| taylor_remainder_log2(EXP_REDUCED_MAX, n) < -(precision as f64)).unwrap_or(1)
}

/// The `(weight index, input index)` pairs feeding output `(oc, oy, ox)` of a convolution over
/// an `h × w` input: taps outside the input (zero padding) are skipped.
pub(crate) fn conv_taps(conv: &Conv, h: usize, w: usize, oc: usize, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let in_per_group = conv.in_channels / conv.groups;
    let g = oc / (conv.out_channels / conv.groups);
    let [kh, kw] = conv.kernel;
    (0..in_per_group).flat_map(move |icg| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (icg, ky, kx)))).filter_map(
        move |(icg, ky, kx)| {
            let iy = (oy * conv.stride[0] + ky * conv.dilation[0]).checked_sub(conv.pads[0])?;
            let ix = (ox * conv.stride[1] + kx * conv.dilation[1]).checked_sub(conv.pads[1])?;
            if iy >= h || ix >= w {
                return None;
            }
            let ic = g * in_per_group + icg;
            Some((((oc * in_per_group + icg) * kh + ky) * kw + kx, (ic * h + iy) * w + ix))
        },
    )
}

/// For each output of a spatial zero padding of `in_shape`, the input index it copies (`None`
/// for a padded zero).
pub(crate) fn pad_sources(in_shape: &[usize], pads: [usize; 4]) -> impl Iterator<Item = Option<usize>> {
    let (c, h, w) = (in_shape[0], in_shape[1], in_shape[2]);
    let (oh, ow) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
    (0..c).flat_map(move |ch| {
        (0..oh).flat_map(move |y| {
            (0..ow).map(move |x| {
                let inside = y >= pads[0] && y < pads[0] + h && x >= pads[1] && x < pads[1] + w;
                inside.then(|| (ch * h + y - pads[0]) * w + x - pads[1])
            })
        })
    })
}

/// Mean value theorem for a ball `[c − r, c + r]` with `c` enclosed in `centre`:
/// `|f(exact) − f(c)| ≤ sup |f′|` over the ball times `r` (not yet rounded up).
pub(crate) fn mean_value_radius(f: Unary, centre: Interval, r: f64) -> f64 {
    if r == 0.0 {
        return 0.0;
    }
    let hull = Interval::new((centre.lo - r).next_down(), (centre.hi + r).next_up());
    f.deriv_range(hull).mag() * r
}

/// `x · (1 + slack)` rounded up: turns an `f64` sum of `n` non-negative rounded terms into an
/// upper bound of the exact sum (`γ`-style, with margin), plus room for underflow.
pub(crate) fn up(x: f64, n: usize) -> f64 {
    if x.is_nan() {
        return f64::INFINITY;
    }
    (x * (1.0 + (n as f64 + 4.0) * 2.0 * f64::EPSILON)).next_up() + (n as f64 + 1.0) * f64::from_bits(1)
}

/// Per-layer constants converted once: weights as exact `BigFloat`s and their magnitudes.
enum Prepared {
    Weights { w: Vec<BigFloat>, abs: Vec<f64>, b: Vec<BigFloat> },
    Affine { scale: Vec<BigFloat>, shift: Vec<BigFloat> },
    Nothing,
}

/// A network prepared for rigorous evaluation at `precision` bits.
pub struct PreciseNetwork<'a> {
    net: &'a Network,
    precision: usize,
    /// Relative error allowed per basic operation, `2^{2−p}`.
    unit: f64,
    ln2: BigFloat,
    /// Taylor coefficients `1/j!`, `j = 0..=N`, each within `(j + 1)U` relative; `N` is the
    /// least degree whose remainder on `|s| ≤ EXP_REDUCED_MAX` is below `U`.
    taylor: Vec<BigFloat>,
    /// Converted on first use (the fixed-point backend needs only the softmax from here).
    prepared: std::sync::OnceLock<Vec<Prepared>>,
}

impl<'a> PreciseNetwork<'a> {
    /// Converts the network's constants; `precision` is in bits (rounded up to 64).
    pub fn new(net: &'a Network, precision: usize) -> Self {
        let precision = precision.max(128).div_ceil(64) * 64;
        // ln 2 to 64 bits beyond the working precision (its error is then negligible; it is
        // still counted as one unit in the exponential's bound).
        let ln2 = Consts::new().map(|mut cc| cc.ln_2(precision + 64, RM)).unwrap_or_else(|_| BigFloat::nan(None));
        let mut taylor = vec![BigFloat::from_f64(1.0, precision)];
        for j in 1..=taylor_degree(precision) {
            let next = taylor[j - 1].div(&BigFloat::from_f64(j as f64, precision), precision, RM);
            taylor.push(next);
        }
        PreciseNetwork { net, precision, unit: pow2(2 - precision as i64), ln2, taylor, prepared: std::sync::OnceLock::new() }
    }

    fn prepared(&self) -> &[Prepared] {
        self.prepared.get_or_init(|| {
            let net = self.net;
            let exact = |v: &[f64]| v.iter().map(|&x| BigFloat::from_f64(x, WEIGHT_PRECISION)).collect::<Vec<_>>();
            net.layers
                .iter()
                .map(|l| match &l.op {
                    Op::Conv(Conv { weight, bias, .. }) | Op::Linear(Linear { weight, bias, .. }) => {
                        Prepared::Weights { w: exact(weight), abs: weight.iter().map(|w| w.abs()).collect(), b: exact(bias) }
                    }
                    Op::ChannelAffine(a) => Prepared::Affine { scale: exact(&a.scale), shift: exact(&a.shift) },
                    _ => Prepared::Nothing,
                })
                .collect()
        })
    }

    /// Working precision in bits.
    pub fn precision(&self) -> usize {
        self.precision
    }

    fn big(&self, x: f64) -> BigFloat {
        BigFloat::from_f64(x, self.precision)
    }

    /// The image's pixels `b / 255` as balls (the division's rounding is the radius).
    pub fn input(&self, bytes: &[u8]) -> Balls {
        let d = self.big(255.0);
        let mut out = Balls::with_capacity(bytes.len());
        for &b in bytes {
            let c = self.big(b as f64).div(&d, self.precision, RM);
            out.push(c, self.unit);
        }
        out
    }

    /// Evaluates the network on `input`; the result is the network output (logits, or
    /// probabilities when the network ends with Softmax).
    pub fn forward(&self, input: Balls) -> Balls {
        self.run(input, false).swap_remove(0)
    }

    /// Every value of the network (index `k + 1` is layer `k`'s output; index 0 the input).
    pub fn forward_all(&self, input: Balls) -> Vec<Balls> {
        self.run(input, true)
    }

    /// Evaluates the layers; keeps every value when `keep_all`, else returns only the output.
    fn run(&self, input: Balls, keep_all: bool) -> Vec<Balls> {
        let mut values = ValueStore::new(self.net, input, keep_all);
        for (k, layer) in self.net.layers.iter().enumerate() {
            let get = |v: ValueId| values.get(v).expect("topological order: inputs are computed before use");
            let x = get(layer.inputs[0]);
            let in_shape = self.net.shape_of(layer.inputs[0]);
            let out = match &layer.op {
                Op::Conv(conv) => self.conv(conv, &self.prepared()[k], x, in_shape, &layer.shape),
                Op::Linear(lin) => self.linear(lin, &self.prepared()[k], x),
                Op::ChannelAffine(a) => self.channel_affine(a.divide, &self.prepared()[k], x, in_shape),
                Op::Relu => self.unary(Unary::Relu, x),
                Op::Sigmoid => self.unary(Unary::Sigmoid, x),
                Op::Swish => self.unary(Unary::Swish, x),
                Op::Mul => self.mul(x, get(layer.inputs[1])),
                Op::Add => self.add(x, get(layer.inputs[1])),
                Op::GlobalAvgPool => self.global_avg_pool(x, in_shape),
                Op::Reshape => x.clone(),
                Op::Pad(p) => self.pad(x, in_shape, *p),
                Op::Softmax => self.softmax(x),
            };
            values.finish_layer(k, out);
        }
        if keep_all {
            values.into_values().into_iter().map(|v| v.unwrap_or_else(|| Balls::with_capacity(0))).collect()
        } else {
            vec![values.take_output().unwrap_or_else(|| Balls::with_capacity(0))]
        }
    }

    /// Dot product `b + Σ w_k x_k` over the listed `(weight index, input index)` pairs.
    fn dot(
        &self,
        w: &[BigFloat],
        abs: &[f64],
        b: &BigFloat,
        bias_abs: f64,
        x: &Balls,
        pairs: &mut dyn Iterator<Item = (usize, usize)>,
    ) -> (BigFloat, f64) {
        let p = self.precision;
        let mut acc = b.clone();
        let (mut size, mut rad, mut n) = (bias_abs, 0.0, 0usize);
        for (wi, xi) in pairs {
            if abs[wi] == 0.0 {
                continue;
            }
            acc = acc.add(&w[wi].mul(&x.centre[xi], p, RM), p, RM);
            size += abs[wi] * x.mag[xi];
            rad += abs[wi] * x.radius[xi];
            n += 1;
        }
        // n products and n sums, each within U of its (bounded by `size`) result.
        let rounding = up(size, n) * (2 * n + 1) as f64 * self.unit * 1.01;
        (acc, up(up(rad, n) + rounding, 2))
    }

    fn conv(&self, conv: &Conv, prep: &Prepared, x: &Balls, in_shape: &[usize], out_shape: &[usize]) -> Balls {
        let Prepared::Weights { w, abs, b } = prep else { unreachable!("conv constants are prepared") };
        let (h, wd) = (in_shape[1], in_shape[2]);
        let (oh, ow) = (out_shape[1], out_shape[2]);
        let mut out = Balls::with_capacity(numel(out_shape));
        for oc in 0..conv.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut taps = conv_taps(conv, h, wd, oc, oy, ox);
                    let (c, r) = self.dot(w, abs, &b[oc], conv.bias[oc].abs(), x, &mut taps);
                    out.push(c, r);
                }
            }
        }
        out
    }

    fn linear(&self, lin: &Linear, prep: &Prepared, x: &Balls) -> Balls {
        let Prepared::Weights { w, abs, b } = prep else { unreachable!("linear constants are prepared") };
        let mut out = Balls::with_capacity(lin.out_features);
        for o in 0..lin.out_features {
            let mut pairs = (0..lin.in_features).map(|i| (o * lin.in_features + i, i));
            let (c, r) = self.dot(w, abs, &b[o], lin.bias[o].abs(), x, &mut pairs);
            out.push(c, r);
        }
        out
    }

    fn channel_affine(&self, divide: bool, prep: &Prepared, x: &Balls, in_shape: &[usize]) -> Balls {
        let Prepared::Affine { scale, shift } = prep else { unreachable!("affine constants are prepared") };
        let p = self.precision;
        let per_channel = numel(in_shape) / in_shape.first().copied().unwrap_or(1).max(1);
        let pick = |v: &[BigFloat], ch: usize| if v.len() == 1 { 0 } else { ch };
        let mut out = Balls::with_capacity(x.len());
        for k in 0..x.len() {
            let ch = k / per_channel.max(1);
            let (s, t) = (&scale[pick(scale, ch)], &shift[pick(shift, ch)]);
            let (s_enc, t_mag) = (enclose(s), magnitude(t));
            let (y, y_mag, r) = if divide {
                let s_min = s_enc.lo.abs().min(s_enc.hi.abs());
                let q = x.centre[k].div(s, p, RM);
                (q, up(x.mag[k] / s_min, 1), up(x.radius[k] / s_min, 1))
            } else {
                let s_max = s_enc.mag();
                (x.centre[k].mul(s, p, RM), up(x.mag[k] * s_max, 1), up(x.radius[k] * s_max, 1))
            };
            let c = y.add(t, p, RM);
            // One rounding in the product or quotient, one in the sum.
            let rounding = up(y_mag * self.unit + (y_mag + t_mag) * self.unit, 2);
            out.push(c, up(r + rounding, 1));
        }
        out
    }

    /// `exp(x)` and a bound on its relative error; `None` beyond [`EXP_LIMIT`].
    ///
    /// `x = n ln2 + r` with `|r| ≤ 0.35`; `exp(r) = T(r / 2^K)^(2^K)` with `T` the Taylor
    /// polynomial of degree `N` evaluated by Horner's rule; then scaled by `2^n` exactly.
    /// Squaring `K` times multiplies the relative error by `2^K`, which the bound tracks.
    fn exp(&self, x: &BigFloat) -> Option<(BigFloat, f64)> {
        let p = self.precision;
        let u = self.unit;
        let xf = enclose(x);
        if !(xf.mag() <= EXP_LIMIT) {
            return None;
        }
        let n = (xf.mid() / std::f64::consts::LN_2).round();
        let r = x.sub(&self.big(n).mul(&self.ln2, p, RM), p, RM);
        // ln2's own error (≤ U·ln2), the product's and the difference's rounding.
        let r_err = up((n.abs() * 0.7 * 2.0 + 0.36) * u, 4);
        let s = r.mul(&BigFloat::from_f64(pow2(-(EXP_HALVINGS as i64)), WEIGHT_PRECISION), p, RM);
        let s_mag = (enclose(&s).mag() * 1.01).next_up();
        if s_mag > EXP_REDUCED_MAX {
            return None;
        }
        let degree = self.taylor.len() - 1;
        let mut t = self.taylor[degree].clone();
        for a in self.taylor[..degree].iter().rev() {
            t = a.add(&s.mul(&t, p, RM), p, RM);
        }
        // Horner on |s| < 10⁻⁵ with coefficients 1/j! each within (j + 1)U: the evaluation
        // error stays below (N + 4)U relative; the Taylor remainder is below 2|s|^(N+1)/(N+1)!.
        let remainder = pow2(taylor_remainder_log2(s_mag, degree).ceil() as i64 + 1);
        let mut rel = up((degree as f64 + 4.0) * u + remainder, 2);
        for _ in 0..EXP_HALVINGS {
            t = t.mul(&t, p, RM);
            rel = up(2.0 * rel + rel * rel + u * (1.0 + 2.0 * rel + rel * rel), 4);
        }
        let scale = BigFloat::from_f64(pow2(n as i64), WEIGHT_PRECISION);
        let value = t.mul(&scale, p, RM);
        // The error in r changes exp(r) by a factor within e^{±r_err}.
        let rel = up(rel + r_err * 1.01 + rel * r_err * 1.01, 3);
        Some((value, rel))
    }

    /// `σ(x) = 1 / (1 + e^{−x})` at the exact centre `x`, with a relative error bound.
    fn sigmoid_centre(&self, x: &BigFloat) -> Option<(BigFloat, f64)> {
        let p = self.precision;
        let (e, rel) = self.exp(&x.neg())?;
        let one = self.big(1.0);
        let den = one.add(&e, p, RM);
        // 1 + e carries at most rel + U relative error; the reciprocal adds U more.
        let rel = up((rel + self.unit) * (1.0 + 2.0 * (rel + self.unit)) + self.unit, 4);
        Some((one.div(&den, p, RM), rel))
    }

    fn unary(&self, f: Unary, x: &Balls) -> Balls {
        let p = self.precision;
        let mut out = Balls::with_capacity(x.len());
        for k in 0..x.len() {
            let c = &x.centre[k];
            let (value, rel) = match f {
                Unary::Relu => (if c.is_negative() { self.big(0.0) } else { c.clone() }, 0.0),
                Unary::Sigmoid => match self.sigmoid_centre(c) {
                    Some(v) => v,
                    None => {
                        out.push(self.big(0.5), 0.5);
                        continue;
                    }
                },
                Unary::Swish => match self.sigmoid_centre(c) {
                    Some((s, rel)) => (c.mul(&s, p, RM), up(rel + self.unit + rel * self.unit, 2)),
                    None => {
                        out.push(self.big(0.0), f64::INFINITY);
                        continue;
                    }
                },
            };
            let r = up(mean_value_radius(f, enclose(c), x.radius[k]) + rel * magnitude(&value), 2);
            out.push(value, r);
        }
        out
    }

    fn mul(&self, a: &Balls, b: &Balls) -> Balls {
        let p = self.precision;
        let repeat = a.len() / b.len().max(1);
        let mut out = Balls::with_capacity(a.len());
        for k in 0..a.len() {
            // `b` may be [C, 1, 1] broadcast over [C, H, W].
            let j = if b.len() == a.len() { k } else { k / repeat.max(1) };
            let c = a.centre[k].mul(&b.centre[j], p, RM);
            let (am, bm) = (a.mag[k], b.mag[j]);
            let (ar, br) = (a.radius[k], b.radius[j]);
            let r = up(am * br + bm * ar + ar * br + am * bm * self.unit, 4);
            out.push(c, r);
        }
        out
    }

    fn add(&self, a: &Balls, b: &Balls) -> Balls {
        let p = self.precision;
        let mut out = Balls::with_capacity(a.len());
        for k in 0..a.len() {
            let c = a.centre[k].add(&b.centre[k], p, RM);
            let r = up(a.radius[k] + b.radius[k] + (a.mag[k] + b.mag[k]) * self.unit, 3);
            out.push(c, r);
        }
        out
    }

    fn global_avg_pool(&self, x: &Balls, in_shape: &[usize]) -> Balls {
        let p = self.precision;
        let channels = in_shape[0];
        let hw = numel(in_shape) / channels.max(1);
        let count = self.big(hw as f64);
        let mut out = Balls::with_capacity(channels);
        for ch in 0..channels {
            let range = ch * hw..(ch + 1) * hw;
            let mut acc = self.big(0.0);
            for k in range.clone() {
                acc = acc.add(&x.centre[k], p, RM);
            }
            let size = up(range.clone().map(|k| x.mag[k]).sum::<f64>(), hw);
            let rad = up(range.map(|k| x.radius[k]).sum::<f64>(), hw) / hw as f64;
            let c = acc.div(&count, p, RM);
            // hw sums within U of a value bounded by `size`; the division adds U relative.
            let r = up(rad + size * (hw as f64 + 1.0) * self.unit / hw as f64 * 1.01, 4);
            out.push(c, r);
        }
        out
    }

    fn pad(&self, x: &Balls, in_shape: &[usize], pads: [usize; 4]) -> Balls {
        let mut out = Balls::with_capacity(x.len());
        for src in pad_sources(in_shape, pads) {
            match src {
                Some(k) => out.push(x.centre[k].clone(), x.radius[k]),
                None => out.push(self.big(0.0), 0.0),
            }
        }
        out
    }

    /// Softmax of a ball vector: `p_c = 1 / Σ_j e^{z_j − z_c}`.
    ///
    /// The radius uses `Σ_j |∂p_c/∂z_j| = 2 p_c (1 − p_c) ≤ 1/2`, so a logit perturbation of at
    /// most `r` moves each probability by at most `r / 2`.
    pub fn softmax(&self, z: &Balls) -> Balls {
        let p = self.precision;
        let k = z.len();
        let r_max = z.max_radius();
        let mut out = Balls::with_capacity(k);
        for c in 0..k {
            let mut sum = self.big(0.0);
            let mut rel_max: f64 = 0.0;
            let mut ok = true;
            for j in 0..k {
                let d = z.centre[j].sub(&z.centre[c], p, RM);
                let d_err = magnitude(&d).max(z.mag[j] + z.mag[c]) * self.unit;
                match self.exp(&d) {
                    Some((e, rel)) => {
                        // The rounding of d moves e^d by a factor within e^{±d_err}.
                        rel_max = rel_max.max(up(rel + d_err * 1.01 * (1.0 + rel), 2));
                        sum = sum.add(&e, p, RM);
                    }
                    None => ok = false,
                }
            }
            if !ok {
                out.push(self.big(0.5), 0.5);
                continue;
            }
            let value = self.big(1.0).div(&sum, p, RM);
            // Sum of k positive terms each within rel_max: (rel_max + kU) relative; then 1/x.
            let rel = up((rel_max + k as f64 * self.unit) * 1.01 + self.unit, 3);
            let r = up(rel * magnitude(&value) + r_max * 0.5, 2);
            out.push(value, r.min(1.0));
        }
        out
    }
}

/// Which arithmetic evaluates the two images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arithmetic {
    /// 256-bit fixed point ([`crate::fixed`]), about 30× faster; falls back to `BigFloat` for
    /// networks or values outside its range.
    Fixed,
    /// `BigFloat` with this many bits.
    BigFloat(usize),
}

/// Precision of the softmax (and of any fallback) behind the fixed-point backend.
const FIXED_SOFTMAX_PRECISION: usize = 256;

/// A certified enclosure of one image's bit-flip sensitivity at one pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSensitivity {
    /// Pixel index.
    pub pixel: usize,
    /// Certified upper bound on `max_c |p_c(x′) − p_c(x)|`.
    pub upper: f64,
    /// Certified lower bound on the same exact quantity.
    pub lower: f64,
    /// The class attaining `upper`.
    pub class: usize,
    /// Per class: enclosure of `|p_c(x′) − p_c(x)|`.
    pub per_class: Vec<Interval>,
}

/// The rigorous single-image certifier: evaluates the image once and each flipped twin once.
pub struct PreciseCertifier<'a> {
    net: PreciseNetwork<'a>,
    /// The fast backend, when the network suits it (see [`crate::fixed`]).
    fixed: Option<FixedNetwork<'a>>,
    /// Evaluations that fell back from fixed-point to `BigFloat`.
    fallbacks: std::sync::atomic::AtomicUsize,
    image: Vec<u8>,
    ends_with_softmax: bool,
    /// Probabilities of the unflipped image.
    base: Balls,
    bit: u8,
}

impl<'a> PreciseCertifier<'a> {
    /// Evaluates `image` (784 bytes) with the chosen arithmetic.
    pub fn new(net: &'a Network, image: &[u8], bit: u8, arithmetic: Arithmetic) -> Self {
        let ends_with_softmax = net.ends_with_softmax();
        let (precision, fixed) = match arithmetic {
            Arithmetic::Fixed => (FIXED_SOFTMAX_PRECISION, FixedNetwork::new(net).ok()),
            Arithmetic::BigFloat(p) => (p, None),
        };
        let mut c = PreciseCertifier {
            net: PreciseNetwork::new(net, precision),
            fixed,
            fallbacks: std::sync::atomic::AtomicUsize::new(0),
            image: image.to_vec(),
            ends_with_softmax,
            base: Balls::with_capacity(0),
            bit,
        };
        c.base = c.probabilities(image);
        c
    }

    /// The precision of the `BigFloat` backend (and of the final softmax) in bits.
    pub fn precision(&self) -> usize {
        self.net.precision()
    }

    /// `"fixed-256"` when the fixed-point backend is in use, else `"bigfloat"`.
    pub fn arithmetic_name(&self) -> &'static str {
        if self.fixed.is_some() {
            "fixed-256"
        } else {
            "bigfloat"
        }
    }

    /// How many evaluations fell back from the fixed-point backend to `BigFloat` (values
    /// outside its range); 0 on a typical image.
    pub fn fallbacks(&self) -> usize {
        self.fallbacks.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn probabilities(&self, image: &[u8]) -> Balls {
        if let Some(fixed) = &self.fixed {
            match fixed.input(image).and_then(|x| fixed.forward(x)) {
                Ok(out) => return self.net.softmax(&out),
                Err(_) => {
                    self.fallbacks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let out = self.net.forward(self.net.input(image));
        if self.ends_with_softmax {
            out
        } else {
            self.net.softmax(&out)
        }
    }

    /// Enclosures of the unflipped image's class probabilities.
    pub fn base_probabilities(&self) -> Vec<Interval> {
        (0..self.base.len()).map(|c| self.base.interval(c)).collect()
    }

    /// Largest radius among the unflipped image's probabilities (how tight the enclosure is).
    pub fn base_radius(&self) -> f64 {
        self.base.max_radius()
    }

    /// Certifies pixel `i`: encloses `|p_c(x ⊕ bit_i) − p_c(x)|` for every class.
    pub fn pixel(&self, i: usize) -> PointSensitivity {
        let mut flipped = self.image.clone();
        flipped[i] ^= 1 << self.bit;
        let q = self.probabilities(&flipped);
        let p = self.net.precision();
        let per_class: Vec<Interval> = (0..q.len())
            .map(|c| {
                let d = q.centre[c].sub(&self.base.centre[c], p, RM);
                let e = enclose(&d);
                let r = up(q.radius[c] + self.base.radius[c] + magnitude(&d) * self.net.unit, 3);
                let (lo, hi) = ((e.lo - r).next_down(), (e.hi + r).next_up());
                if lo.is_nan() || hi.is_nan() {
                    // An overflowed radius says nothing: a probability moves by at most 1.
                    return Interval::new(0.0, 1.0);
                }
                // |d| over [lo, hi].
                let abs_hi = lo.abs().max(hi.abs()).min(1.0);
                let abs_lo = if lo > 0.0 {
                    lo
                } else if hi < 0.0 {
                    -hi
                } else {
                    0.0
                };
                Interval::new(abs_lo, abs_hi)
            })
            .collect();
        let (class, upper) = per_class.iter().enumerate().fold((0, 0.0), |best, (c, b)| if b.hi > best.1 { (c, b.hi) } else { best });
        let lower = per_class.iter().fold(0.0f64, |a, b| a.max(b.lo));
        PointSensitivity { pixel: i, upper, lower, class, per_class }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network with no layers: only the constants of the evaluator are used.
    fn empty() -> Network {
        Network { input_name: "x".into(), input_shape: vec![1], layers: vec![], output: ValueId(0), squeeze_excite: vec![] }
    }

    /// The hand-made exponential stays within its stated relative error of astro-float's
    /// exponential computed with 256 more bits.
    #[test]
    fn exponential_is_within_its_error_bound() {
        let net = empty();
        let mut cc = Consts::new().expect("constants cache");
        for precision in [192, 256, 320, 512] {
            let pn = PreciseNetwork::new(&net, precision);
            let reference_p = precision + 256;
            let mut state = 0x1234_5678_9abc_def0u64 ^ precision as u64;
            let mut xs = vec![0.0, -0.0, 1e-300, -1e-20, 0.5, -0.5, 0.34657359, -0.34657359, 1.0, 350.0, -599.9, 599.9];
            for _ in 0..2000 {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64;
                let scale = [1e-6, 1.0, 10.0, 100.0, 600.0][(state % 5) as usize];
                xs.push((2.0 * u - 1.0) * scale);
            }
            for &x in &xs {
                let (mine, rel) = pn.exp(&BigFloat::from_f64(x, precision)).expect("within the limit");
                let reference = BigFloat::from_f64(x, reference_p).exp(reference_p, RM, &mut cc);
                // Relative error computed in high precision (exp(−600) ≈ 10⁻²⁶¹: an absolute
                // error would underflow f64).
                let err_rel = enclose(&mine.sub(&reference, reference_p, RM).div(&reference, 64, RM)).mag();
                assert!(err_rel <= rel, "exp({x}) at {precision} bits: error {err_rel:e} above the bound {rel:e}");
                assert!(rel < pow2(24 - precision as i64), "exp({x}): bound {rel:e} is not tight at {precision} bits");
            }
            assert!(pn.exp(&BigFloat::from_f64(601.0, precision)).is_none());
        }
    }

    #[test]
    fn enclosure_of_a_big_float_contains_it() {
        for x in [0.0, 1.0, -1.0, 3.0, -0.75, 1e-30, -5e20, 0.1, std::f64::consts::PI, 1e-280, -1e280] {
            let e = enclose(&BigFloat::from_f64(x, 256));
            assert!(e.lo <= x && x <= e.hi, "{x} not in {e:?}");
            // Tight in the normal range; below 2^-900 a coarse (still sound) enclosure is used.
            if x.abs() > 1e-250 {
                assert!(e.hi - e.lo <= x.abs() * 4.0 * f64::EPSILON, "{x}: enclosure {e:?} too wide");
            }
            assert!(magnitude(&BigFloat::from_f64(x, 256)) >= x.abs());
        }
    }
}
