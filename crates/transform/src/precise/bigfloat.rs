//! The `BigFloat` backend of the precise engine: ball arithmetic at any precision, with its own
//! exponential (explicit truncation and rounding bounds). It serves as the fallback of the
//! fixed-point backend and computes the final softmax.

use super::ball::{enclose, magnitude, mean_value_radius, pow2, up, walk, BallArithmetic, Balls};
use crate::activation::{Act, Form};
use astro_float::{BigFloat, Consts, RoundingMode};

use std::convert::Infallible;
use zonocert_network::ir::{conv_taps, numel, pad_sources, ChannelAffine, Conv, Linear, Op};
use zonocert_network::Network;

/// Rounding mode of every operation (round to nearest; the error bound does not rely on ties).
pub(crate) const RM: RoundingMode = RoundingMode::ToEven;
/// Precision of weights: an `f64` (53 bits) is exact in one 64-bit word.
const WEIGHT_PRECISION: usize = 64;
/// Argument reduction of the exponential: `exp(r) = exp(r / 2^K)^(2^K)`.
const EXP_HALVINGS: i32 = 16;
/// Bound on the reduced argument `|s| = |r| / 2^K` (`|r| ≤ ln2/2` plus rounding).
const EXP_REDUCED_MAX: f64 = 0.36 / 65536.0;
/// Exponential arguments beyond this give up (the ball becomes unbounded, never wrong).
const EXP_LIMIT: f64 = 600.0;

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
    pub(crate) unit: f64,
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
        let Ok(values) = walk(self, self.net, input, keep_all);
        values
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

    /// `clamp(α·c + β, lo, hi)` and an absolute bound on its rounding error (clamping is
    /// 1-Lipschitz, so the error of `α·c + β` carries over).
    fn clamped_affine(&self, c: &BigFloat, (alpha, beta): (f64, f64), (lo, hi): (f64, f64)) -> (BigFloat, f64) {
        let p = self.precision;
        let (y, err) = if alpha == 1.0 && beta == 0.0 {
            (c.clone(), 0.0)
        } else {
            let ac = c.mul(&self.big(alpha), p, RM);
            let y = ac.add(&self.big(beta), p, RM);
            let err = up(self.unit * (magnitude(&ac) + magnitude(&y)), 2);
            (y, err)
        };
        if lo.is_finite() && y < self.big(lo) {
            (self.big(lo), err)
        } else if hi.is_finite() && y > self.big(hi) {
            (self.big(hi), err)
        } else {
            (y, err)
        }
    }

    fn unary(&self, f: Act, x: &Balls) -> Balls {
        let p = self.precision;
        let mut out = Balls::with_capacity(x.len());
        for k in 0..x.len() {
            let c = &x.centre[k];
            // The centre's image and an absolute bound on its error.
            let (value, err) = match f.form() {
                Form::ClampedAffine { alpha, beta, lo, hi } => self.clamped_affine(c, (alpha, beta), (lo, hi)),
                Form::Logistic { times_x } => match (self.sigmoid_centre(c), times_x) {
                    (Some((s, rel)), false) => {
                        let err = rel * magnitude(&s);
                        (s, err)
                    }
                    (Some((s, rel)), true) => {
                        let v = c.mul(&s, p, RM);
                        let err = up(rel + self.unit + rel * self.unit, 2) * magnitude(&v);
                        (v, err)
                    }
                    // σ lies in [0, 1]; swish of an argument too large for the exponential
                    // is left unbounded.
                    (None, false) => {
                        out.push(self.big(0.5), 0.5);
                        continue;
                    }
                    (None, true) => {
                        out.push(self.big(0.0), f64::INFINITY);
                        continue;
                    }
                },
            };
            let r = up(mean_value_radius(f, enclose(c), x.radius[k]) + err, 2);
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
    /// 256-bit fixed point ([`super::fixed`]), about 30× faster; falls back to `BigFloat` for
    /// networks or values outside its range.
    Fixed,
    /// `BigFloat` with this many bits.
    BigFloat(usize),
}

/// The operations above, as the walk calls them (the `BigFloat` backend evaluates everything).
impl BallArithmetic for PreciseNetwork<'_> {
    type Value = Balls;
    type Error = Infallible;
    fn empty(&self) -> Balls {
        Balls::with_capacity(0)
    }
    fn conv(&self, k: usize, conv: &Conv, x: &Balls, in_shape: &[usize], out_shape: &[usize]) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::conv(self, conv, &self.prepared()[k], x, in_shape, out_shape))
    }
    fn linear(&self, k: usize, lin: &Linear, x: &Balls) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::linear(self, lin, &self.prepared()[k], x))
    }
    fn channel_affine(&self, k: usize, a: &ChannelAffine, x: &Balls, in_shape: &[usize]) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::channel_affine(self, a.divide, &self.prepared()[k], x, in_shape))
    }
    fn act(&self, f: Act, x: &Balls) -> Result<Balls, Infallible> {
        Ok(self.unary(f, x))
    }
    fn mul(&self, x: &Balls, s: &Balls) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::mul(self, x, s))
    }
    fn add(&self, x: &Balls, y: &Balls) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::add(self, x, y))
    }
    fn global_avg_pool(&self, x: &Balls, in_shape: &[usize]) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::global_avg_pool(self, x, in_shape))
    }
    fn pad(&self, x: &Balls, in_shape: &[usize], pads: [usize; 4]) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::pad(self, x, in_shape, pads))
    }
    fn softmax(&self, x: &Balls) -> Result<Balls, Infallible> {
        Ok(PreciseNetwork::softmax(self, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonocert_network::ValueId;

    /// A network with no layers: only the constants of the evaluator are used.
    fn empty() -> Network {
        Network {
            input_name: "x".into(),
            input_shape: vec![1],
            layers: vec![],
            output: ValueId(0),
            squeeze_excite: vec![],
            float64_folds: vec![],
        }
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
