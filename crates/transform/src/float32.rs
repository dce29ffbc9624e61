//! What the network computes when it runs in `float32` (`--semantics f32`): the rounding of
//! every operation of an IEEE-754 binary32 execution, as one more per-neuron uncertainty that
//! the analyses add to each value (for `x` and `x′` separately in the differential analysis),
//! and the rounding of the `float32` softmax.
//!
//! # The model of a `float32` execution
//!
//! Every elementary operation (+, −, ×, ÷, the conversion of the input byte `b/255`) is
//! correctly rounded to nearest binary32 with gradual underflow: `|fl(a ∘ b) − a ∘ b| ≤
//! u·|a ∘ b| + η` with `u = 2⁻²⁴` and `η = 2⁻¹⁴⁹`. Every dot product and sum (a convolution, a
//! dense layer, a pooling) is accumulated in any order, with or without FMA, in blocks or split
//! across threads: `|fl(Σ tᵢ) − Σ tᵢ| ≤ γₙ·Σ|tᵢ| + n·η` with `γₙ = nu/(1 − nu)`. `max` and
//! `min` (ReLU, Clip) are exact. Each `sigmoid` result is within `K·2⁻²³` of the exact value
//! (`K` units in the last place of 1: ONNX Runtime's logistic is an approximation whose error
//! is absolute, not relative, in the tails), and each `exp` of the softmax within `K` units in
//! the last place of its result (`K·2⁻²³` relative, plus `K·η`). A swish `x·σ(x)` is a sigmoid
//! and a product.
//!
//! With `flush_subnormals` (`--subnormals flush`), results below 2⁻¹²⁶ may be flushed to zero
//! and subnormal operands (weights) read as zero (FTZ/DAZ): every operation's absolute term is
//! then 2⁻¹²⁶, and each dot product loses at most 2⁻¹²⁶·|x| per term to a zeroed weight.
//!
//! Not covered: reduced-precision arithmetic
//! (bfloat16, TF32), and graphs that the importer rewrote so that they compute differently in
//! `float32` (a BatchNormalization or constant multiply-add folded into a convolution, a
//! constant the importer computed from initializers in `f64` whose value is not a float32, or
//! a per-channel map with both a scale and an offset): [`F32Model::check`] refuses those.

use crate::activation::{Act, Form};
use crate::maps::PreparedMaps;
use zonocert_domain::{Interval, LinearMap, Zonotope};
use zonocert_network::ir::{numel, Network, Op};
use zonocert_network::kernels::softmax;
use zonocert_network::Executor;

/// Unit roundoff of binary32 (round to nearest).
pub const U32: f64 = 1.0 / 16_777_216.0;
/// One unit in the last place of 1 in binary32, `2⁻²³`.
pub const ULP_OF_ONE: f64 = 2.0 * U32;
/// Smallest positive binary32 subnormal, `2⁻¹⁴⁹`: the absolute error of an underflowing result.
pub const ETA32: f64 = 1.401_298_464_324_817e-45;
/// Smallest positive normal binary32, `2⁻¹²⁶`: what flush-to-zero can drop from a result.
pub const MIN_NORMAL32: f64 = 1.175_494_350_822_287_5e-38;

/// γₙ for binary32: `nu / (1 − nu)`, rounded up, with one extra rounding of margin.
pub fn gamma32(n: usize) -> f64 {
    let nu = (n as f64 + 1.0) * U32;
    (nu / (1.0 - nu) * (1.0 + 1e-12)).next_up()
}

/// Which function of the weights the certified numbers are about.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Semantics {
    /// The real-valued function the weights define.
    #[default]
    Real,
    /// Any `float32` execution of the graph as the module docs describe.
    F32(F32Model),
}

impl Semantics {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Semantics::Real => "real",
            Semantics::F32(_) => "f32",
        }
    }
}

/// The parameters of the `float32` model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct F32Model {
    /// `K`: the error of `sigmoid` in units of `2⁻²³`, and of `exp` in units in the last place.
    pub ulp: f64,
    /// The two images are evaluated alike (the same kernels and summation order per neuron),
    /// so a neuron whose inputs are the same in both rounds alike. Without it, the model's
    /// "any order" holds for each execution separately.
    pub same_order: bool,
    /// Subnormal results are flushed to zero and subnormal operands (weights) read as zero
    /// (FTZ/DAZ, as some kernels run); without it, gradual underflow (IEEE default).
    pub flush_subnormals: bool,
}

impl Default for F32Model {
    /// `K = 4`: twice the worst error measured over 9·10⁵ arguments for ONNX Runtime's
    /// `Sigmoid` (1.38·2⁻²³ absolute) and PyTorch's `sigmoid` (0.74·2⁻²³), and four times that
    /// of their `exp` (0.85 and 0.56 ulp). Measured (`benchmarks/f32_ulp.py`), not proven.
    fn default() -> Self {
        F32Model { ulp: 4.0, same_order: false, flush_subnormals: false }
    }
}

/// The largest magnitude in each interval, rounded up.
fn magnitudes(b: &[Interval]) -> Vec<f64> {
    b.iter().map(|i| i.mag()).collect()
}

impl F32Model {
    /// The absolute error of one operation whose result underflows: half a subnormal step with
    /// gradual underflow (bounded by a whole one), the whole normal range below 2⁻¹²⁶ when
    /// results are flushed.
    pub fn eta(&self) -> f64 {
        if self.flush_subnormals {
            MIN_NORMAL32
        } else {
            ETA32
        }
    }

    /// Why `net` is outside the model, if it is (see the module docs).
    pub fn check(&self, net: &Network) -> Result<(), String> {
        if let Some(what) = net.float64_folds.first() {
            return Err(format!(
                "the importer computed {what} in f64, where a float32 execution of the graph computes it in float32; the f32 semantics does not model that (export with BatchNorm folded, as torch.onnx does by default, and constants folded in float32)"
            ));
        }
        for l in &net.layers {
            match &l.op {
                Op::ChannelAffine(a) if a.scale.iter().any(|&s| s != 1.0) && a.shift.iter().any(|&t| t != 0.0) => {
                    return Err(format!("layer '{}' is a per-channel map with both a scale and an offset (an unfolded BatchNormalization): its float32 evaluation order is not modelled", l.name));
                }
                Op::Softmax => {
                    return Err(format!(
                        "layer '{}': a Softmax in the graph is not modelled in float32 (zonocert applies the float32 softmax to the logits itself: export the logits)",
                        l.name
                    ));
                }
                _ => {}
            }
        }
        if !(self.ulp >= 0.0 && self.ulp.is_finite()) {
            return Err(format!("--ulp must be a finite number ≥ 0, got {}", self.ulp));
        }
        Ok(())
    }

    /// The error of converting each input `b/255` (enclosed by `x`) to binary32.
    pub fn input_error(&self, x: &[Interval]) -> Vec<f64> {
        x.iter().map(|b| (U32 * b.mag()).next_up() + self.eta()).collect()
    }

    /// Per output neuron of layer `k`, a bound on `|fl(op(x)) − op(x)|` over inputs in `inputs`
    /// (the bounds of the layer's first and, for products and sums, second input).
    pub fn layer_error(&self, net: &Network, maps: &PreparedMaps, k: usize, inputs: (&[Interval], Option<&[Interval]>)) -> Vec<f64> {
        let layer = &net.layers[k];
        let n_out = numel(&layer.shape);
        let (x, y) = inputs;
        let up = |v: f64| (v * (1.0 + 1e-12)).next_up();
        match &layer.op {
            Op::Reshape | Op::Pad(_) => vec![0.0; n_out],
            Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool => {
                let map = maps.get(k, true);
                let n = map.fan_in() + 2;
                // Read as zero under DAZ, a subnormal weight or bias drops at most
                // 2⁻¹²⁶·|x| from each term.
                let daz = if self.flush_subnormals {
                    (n as f64 * MIN_NORMAL32 * (1.0 + x.iter().map(Interval::mag).fold(0.0, f64::max))).next_up()
                } else {
                    0.0
                };
                let mut s = map.apply_abs(&magnitudes(x));
                if let Some(b) = map.offset() {
                    s.iter_mut().zip(b).for_each(|(s, b)| *s += b.abs());
                }
                // The f64 sums above are themselves rounded: a relative margin covers them.
                let g = gamma32(n) * (1.0 + 1e-9);
                s.into_iter().map(|s| up(g * s) + n as f64 * self.eta() + daz).collect()
            }
            Op::Act(f) => x.iter().map(|b| self.act_error(*f, *b)).collect(),
            Op::Mul => {
                let s = y.expect("a product has two inputs");
                let repeat = (x.len() / s.len().max(1)).max(1);
                x.iter()
                    .enumerate()
                    .map(|(j, b)| up(U32 * b.mag() * s[if s.len() == x.len() { j } else { j / repeat }].mag()) + self.eta())
                    .collect()
            }
            Op::Add => {
                let s = y.expect("a sum has two inputs");
                // A sum is exact when it underflows, unless it is then flushed.
                let flushed = if self.flush_subnormals { MIN_NORMAL32 } else { 0.0 };
                x.iter().zip(s).map(|(a, b)| up(U32 * (a.mag() + b.mag())) + flushed).collect()
            }
            Op::Softmax => vec![f64::INFINITY; n_out],
        }
    }

    /// The error of one activation over inputs in `b`.
    pub fn act_error(&self, f: Act, b: Interval) -> f64 {
        let up = |v: f64| (v * (1.0 + 1e-12)).next_up();
        match f.form() {
            // max/min are exact; α·x + β is a product and a sum (or one FMA).
            // Under DAZ a subnormal input reads as zero.
            Form::ClampedAffine { alpha, beta, .. } if alpha == 1.0 && beta == 0.0 => {
                if self.flush_subnormals {
                    MIN_NORMAL32
                } else {
                    0.0
                }
            }
            Form::ClampedAffine { alpha, beta, .. } => up(2.0 * U32 * (alpha * b.mag() + beta.abs()) * (1.0 + 2.0 * U32)) + self.eta(),
            Form::Logistic { times_x: false } => up(self.ulp * ULP_OF_ONE),
            // fl(x·σ̂(x)) with |σ̂ − σ| ≤ K·2⁻²³ and σ̂ ≤ 1 (σ̂ may exceed 1 by that much).
            Form::Logistic { times_x: true } => {
                let s = self.ulp * ULP_OF_ONE;
                up(b.mag() * s + U32 * b.mag() * (1.0 + s)) + self.eta()
            }
        }
    }

    /// Per class `θ_c`, and `a`, such that the `float32` softmax in its overflow-safe form
    /// `fl(exp(fl(z_c − max z)) / fl(Σ_j fl(exp(fl(z_j − max z)))))` satisfies
    /// `|p̂_c − p_c| ≤ θ_c·p_c + a`, for logits with
    /// `max z − z_c ≤ below_max[c]` and probabilities `p_c ≤ p_hi[c]`. A class near the top
    /// has a nearly exact `fl(z_c − max z)`, and the sum's error is the classes' errors weighted
    /// by their probabilities, so a confident prediction's `θ_c` is a few ulps, not the spread.
    pub fn softmax_errors(&self, below_max: &[f64], p_hi: &[f64]) -> (Vec<f64>, f64) {
        let classes = below_max.len();
        if !below_max.iter().all(|d| d.is_finite()) {
            return (vec![f64::INFINITY; classes], f64::INFINITY);
        }
        let e = self.ulp * ULP_OF_ONE;
        // ê_c = e_c·(1 + θ'_c), |θ'_c| ≤ θ_c: fl(z_c − m) is within u·(m − z_c) of z_c − m,
        // which exp turns into a relative factor; exp itself errs by K ulps.
        let exps: Vec<f64> = below_max.iter().map(|&d| ((U32 * d.max(0.0) * (1.0 + 1e-9)).exp() * (1.0 + e) - 1.0).next_up()).collect();
        // Σ ê_j = S·(1 + α) with |α| ≤ Σ θ_j·p_j, and never more than the largest θ_j.
        let weighted: f64 = exps.iter().zip(p_hi).map(|(t, p)| t * p.clamp(0.0, 1.0)).sum();
        let alpha = (weighted.min(exps.iter().fold(0.0, |m: f64, &t| m.max(t))) * (1.0 + 1e-9)).next_up();
        let g = gamma32(classes);
        if !(alpha < 1.0 && g < 1.0) {
            // The sum's relative error may reach 100 % (logits so far apart that fl(z_c − max z)
            // errs by more than 1): nothing is known about the quotient. Without this the
            // formula below turns negative and would shrink a bound.
            return (vec![f64::INFINITY; classes], f64::INFINITY);
        }
        let theta = exps
            .iter()
            .map(|&t| {
                let hi = (1.0 + t) * (1.0 + U32) / ((1.0 - alpha) * (1.0 - g));
                ((hi - 1.0) * (1.0 + 1e-9)).next_up()
            })
            .collect();
        // Underflowing exponentials (classes below e^-87) err by K·η each; the sum is ≥ 1.
        let a = (classes as f64 * self.ulp + 2.0) * self.eta() * 2.0;
        (theta, a)
    }
}

/// Per class `c`, an upper bound on `max z − z_c` (rounded up, at least 0) from interval
/// bounds on every `z_j − z_c` (`[j][c]`), taken over every matrix of `gaps`; a NaN end (an
/// overflow) counts as unbounded, never as a small number.
pub fn below_top(gaps: &[&[Vec<Interval>]]) -> Vec<f64> {
    let classes = gaps.first().map_or(0, |g| g.len());
    let hi = |b: &Interval| if b.hi.is_nan() { f64::INFINITY } else { b.hi };
    (0..classes).map(|c| gaps.iter().flat_map(|g| g.iter().map(move |row| hi(&row[c]))).fold(0.0, f64::max).next_up()).collect()
}

/// A first-order **estimate, not a bound**, of how far a `float32` execution's probabilities
/// can be from the exact ones at one input `x` ([0, 1] scale): per class `c`,
/// `Σ_values Σ_j |∂p_c/∂v_j|·r_j + θ_c·p_c + a`, where `r_j` is the model's rounding bound of
/// value `j` at `x` ([`F32Model::layer_error`] on point inputs, [`F32Model::input_error`]) and
/// `(θ_c, a)` the softmax's ([`F32Model::softmax_errors`]); the gradients come from one reverse
/// pass per class. It is the worst case of the model linearised at `x`: it neglects how the
/// network's derivatives change over the rounding errors, so it certifies nothing. It measures
/// whether a single-image `float32` enclosure could be tight (issue: `precise` under `f32`).
pub fn first_order_rounding(model: &F32Model, net: &Network, x: &[f64]) -> Vec<f64> {
    let exec = Executor::<f64>::new(net);
    let maps = PreparedMaps::new(net);
    let values = exec.forward_all_values(x, 1, true);
    let radii = point_rounding(model, net, &maps, &values);
    let logits = values[net.output.0].as_ref().expect("output kept");
    let p = softmax(logits, logits.len());
    let top = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let below_max: Vec<f64> = logits.iter().map(|z| top - z).collect();
    let (theta, a) = model.softmax_errors(&below_max, &p);
    (0..p.len())
        .map(|c| {
            let dp_dz: Vec<f64> = (0..p.len()).map(|j| p[c] * (f64::from(u8::from(c == j)) - p[j])).collect();
            let grads = exec.value_gradients(&values, 1, dp_dz);
            let carried: f64 = grads
                .iter()
                .zip(&radii)
                .filter_map(|(g, r)| g.as_ref().map(|g| g.iter().zip(r).map(|(g, r)| g.abs() * r).sum::<f64>()))
                .sum();
            carried + theta[c] * p[c] + a
        })
        .collect()
}

/// The model's rounding bound of every value at one input, from that input's `f64` values
/// (`values`: every value kept, [`Executor::forward_all_values`]); index = value id, so index 0
/// is the input conversion's.
pub fn point_rounding(model: &F32Model, net: &Network, maps: &PreparedMaps, values: &[Option<Vec<f64>>]) -> Vec<Vec<f64>> {
    let point = |v: usize| -> Vec<Interval> { values[v].as_ref().expect("kept").iter().map(|&t| Interval::point(t)).collect() };
    let mut radii: Vec<Vec<f64>> = vec![model.input_error(&point(0))];
    for (k, layer) in net.layers.iter().enumerate() {
        let second = layer.inputs.get(1).map(|v| point(v.0));
        radii.push(model.layer_error(net, maps, k, (&point(layer.inputs[0].0), second.as_deref())));
    }
    radii
}

/// Adds per-neuron errors to a zonotope's independent error terms (rounded up).
pub fn add_errors(z: &mut Zonotope, e: &[f64]) {
    for (r, &x) in z.err.iter_mut().zip(e) {
        *r = (*r + x).next_up();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonocert_network::ir::{ChannelAffine, Layer, ValueId};

    fn one_layer(op: Op) -> Network {
        let layers = vec![Layer { name: "bn".into(), op, inputs: vec![ValueId(0)], shape: vec![2] }];
        Network { input_name: "x".into(), input_shape: vec![2], layers, output: ValueId(1), squeeze_excite: vec![], float64_folds: vec![] }
    }

    #[test]
    fn graphs_that_compute_differently_in_float32_are_refused_by_name() {
        let m = F32Model::default();
        let both = one_layer(Op::ChannelAffine(ChannelAffine { scale: vec![2.0], shift: vec![1.0], divide: false }));
        assert!(m.check(&both).unwrap_err().contains("'bn'"));
        let single = one_layer(Op::ChannelAffine(ChannelAffine { scale: vec![2.0], shift: vec![0.0], divide: false }));
        assert!(m.check(&single).is_ok());
        let mut folded = single.clone();
        folded.float64_folds.push("the per-channel multiply-add 'bn1'".into());
        assert!(m.check(&folded).unwrap_err().contains("'bn1'"));
        assert!(F32Model { ulp: f64::NAN, ..F32Model::default() }.check(&single).is_err());
    }

    /// The per-class softmax bound against float32 softmaxes whose exps are pushed to the edge
    /// of `K` (the class itself one way, every other class the other), on logits spread up to
    /// 80 apart, where `fl(z_c − max z)` errs by up to `u·80` before the exp. Dropping the
    /// `fl(z_c − max z)` term or the sum's error `α` fails it (checked by mutation).
    #[test]
    fn per_class_softmax_bound_covers_pushed_float32_softmaxes() {
        let m = F32Model::default();
        let push = (m.ulp - 0.5) * ULP_OF_ONE;
        let mut state = 0x5EED_u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut worst: f64 = 0.0;
        for trial in 0..2000 {
            let spread = [1.0, 10.0, 80.0][trial % 3];
            // Two classes leave γₙ little room, so the sum's own error must be bounded.
            let classes = if trial % 2 == 0 { 10 } else { 2 };
            let z: Vec<f32> = (0..classes).map(|_| ((next() - 0.5) * spread) as f32).collect();
            let top = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let exact: Vec<f64> = z.iter().map(|&v| (v as f64 - top as f64).exp()).collect();
            let sum: f64 = exact.iter().sum();
            let p: Vec<f64> = exact.iter().map(|e| e / sum).collect();
            let below: Vec<f64> = z.iter().map(|&v| top as f64 - v as f64).collect();
            let (theta, a) = m.softmax_errors(&below, &p);
            for c in 0..classes {
                for sign in [1.0, -1.0] {
                    let e: Vec<f32> = z
                        .iter()
                        .enumerate()
                        .map(|(j, &v)| {
                            let s = if j == c { sign } else { -sign };
                            (((v - top) as f64).exp() * (1.0 + s * push)) as f32
                        })
                        .collect();
                    let total = e.iter().fold(0.0f32, |acc, &v| acc + v);
                    let dev = ((e[c] / total) as f64 - p[c]).abs();
                    let bound = theta[c] * p[c] + a;
                    assert!(dev <= bound, "trial {trial} class {c}: |p̂ − p| = {dev:e} > {bound:e}");
                    if p[c] > 1e-30 {
                        worst = worst.max(dev / bound);
                    }
                }
            }
        }
        // The pushes reach a good part of the bound, so it is not vacuously large.
        assert!(worst > 0.3, "largest pushed/bound ratio {worst}");
    }

    #[test]
    fn error_bounds_have_the_documented_size() {
        // γ₁₀ for binary32 is about 11·2⁻²⁴.
        assert!((gamma32(10) / (11.0 * U32) - 1.0).abs() < 1e-5);
        let m = F32Model::default();
        // A sigmoid errs by at most K·2⁻²³ anywhere; ReLU not at all.
        assert_eq!(m.act_error(Act::Relu, Interval::new(-3.0, 5.0)), 0.0);
        let s = m.act_error(Act::Sigmoid, Interval::new(-100.0, 100.0));
        assert!(s >= 4.0 * ULP_OF_ONE && s < 4.0001 * ULP_OF_ONE);
        // The softmax of logits spread by 10 (every class that far below the top, no bound on
        // the probabilities): θ ≈ 2·10·u + 2·K·2⁻²³ + γ.
        let (theta, a) = m.softmax_errors(&[10.0; 10], &[1.0; 10]);
        let theta = theta.into_iter().fold(0.0, f64::max);
        assert!(theta > 20.0 * U32 + 8.0 * ULP_OF_ONE && theta < 40.0 * U32 + 9.0 * ULP_OF_ONE, "{theta:e}");
        assert!(a < 1e-40);
        assert_eq!(m.softmax_errors(&[f64::INFINITY; 10], &[1.0; 10]).0[0], f64::INFINITY);
        // Logits 10⁹ apart (a global region's ranges can be that wide): fl(z_c − max z) may err
        // by more than 1, so nothing is known; the formula must not turn negative (it did: a
        // negative θ shrank certified bounds to 0). θ never falls as the gap grows.
        let mut last = 0.0;
        for k in 0..=48 {
            let gap = 10f64.powf(f64::from(k) / 4.0);
            let (theta, a) = m.softmax_errors(&[gap; 10], &[1.0; 10]);
            assert!(theta[0] >= last && a >= 0.0, "gap {gap:e}: θ = {:e} after {last:e}, a = {a:e}", theta[0]);
            last = theta[0];
        }
        assert_eq!(last, f64::INFINITY);
        // A NaN gap is unbounded, not small.
        let nan = vec![vec![Interval { lo: f64::NAN, hi: f64::NAN }; 2]; 2];
        assert_eq!(below_top(&[&nan]), vec![f64::INFINITY; 2]);
    }
}
