//! Balls `[c − r, c + r]` with `BigFloat` centres and `f64` radii, the rounding helpers both
//! backends of the precise engine share, and the ball-arithmetic trait they implement: one
//! operation per IR op, evaluated over a network by the one walk [`walk`].

use crate::activation::{Act, Enclose};
use astro_float::BigFloat;
use zonocert_domain::Interval;
use zonocert_network::ir::{ChannelAffine, Conv, Linear, Op};
use zonocert_network::{Network, ValueStore};

/// A rigorous ball arithmetic: each method encloses the exact result of one op of the IR
/// applied to every point of its input balls. `k` is the layer's index (for weights the
/// backend prepared per layer).
pub(crate) trait BallArithmetic {
    /// A tensor of balls.
    type Value: Clone;
    /// Why the backend cannot evaluate a layer (never a wrong enclosure).
    type Error;
    /// The placeholder of a value no layer kept.
    fn empty(&self) -> Self::Value;
    /// A convolution.
    fn conv(&self, k: usize, conv: &Conv, x: &Self::Value, in_shape: &[usize], out_shape: &[usize]) -> Result<Self::Value, Self::Error>;
    /// A dense layer.
    fn linear(&self, k: usize, lin: &Linear, x: &Self::Value) -> Result<Self::Value, Self::Error>;
    /// A per-channel affine map.
    fn channel_affine(&self, k: usize, a: &ChannelAffine, x: &Self::Value, in_shape: &[usize]) -> Result<Self::Value, Self::Error>;
    /// An activation.
    fn act(&self, f: Act, x: &Self::Value) -> Result<Self::Value, Self::Error>;
    /// A product, the second factor possibly `[C, 1, 1]` broadcast over `[C, H, W]`.
    fn mul(&self, x: &Self::Value, s: &Self::Value) -> Result<Self::Value, Self::Error>;
    /// A sum.
    fn add(&self, x: &Self::Value, y: &Self::Value) -> Result<Self::Value, Self::Error>;
    /// The spatial mean.
    fn global_avg_pool(&self, x: &Self::Value, in_shape: &[usize]) -> Result<Self::Value, Self::Error>;
    /// Zero padding.
    fn pad(&self, x: &Self::Value, in_shape: &[usize], pads: [usize; 4]) -> Result<Self::Value, Self::Error>;
    /// A softmax.
    fn softmax(&self, x: &Self::Value) -> Result<Self::Value, Self::Error>;
}

/// Evaluates `net` on `input` with the backend `b`: every value (index `k + 1` is layer `k`'s
/// output) when `keep_all`, else only the output.
pub(crate) fn walk<B: BallArithmetic>(b: &B, net: &Network, input: B::Value, keep_all: bool) -> Result<Vec<B::Value>, B::Error> {
    let mut values = ValueStore::new(net, input, keep_all);
    for (k, layer) in net.layers.iter().enumerate() {
        let get = |v| values.get(v).expect("topological order: inputs are computed before use");
        let x = get(layer.inputs[0]);
        let in_shape = net.shape_of(layer.inputs[0]);
        let out = match &layer.op {
            Op::Conv(conv) => b.conv(k, conv, x, in_shape, &layer.shape)?,
            Op::Linear(lin) => b.linear(k, lin, x)?,
            Op::ChannelAffine(a) => b.channel_affine(k, a, x, in_shape)?,
            Op::Act(f) => b.act(*f, x)?,
            Op::Mul => b.mul(x, get(layer.inputs[1]))?,
            Op::Add => b.add(x, get(layer.inputs[1]))?,
            Op::GlobalAvgPool => b.global_avg_pool(x, in_shape)?,
            Op::Reshape => x.clone(),
            Op::Pad(p) => b.pad(x, in_shape, *p)?,
            Op::Softmax => b.softmax(x)?,
        };
        values.finish_layer(k, out);
    }
    Ok(if keep_all {
        values.into_values().into_iter().map(|v| v.unwrap_or_else(|| b.empty())).collect()
    } else {
        vec![values.take_output().unwrap_or_else(|| b.empty())]
    })
}

/// Values of one tensor: centres with `precision` bits, radii and magnitude bounds in `f64`.
#[derive(Clone)]
pub struct Balls {
    /// Centres.
    pub centre: Vec<BigFloat>,
    /// Upper bounds on `|exact − centre|`.
    pub radius: Vec<f64>,
    /// Upper bounds on `|centre|` (powers of two; used only in rounding-error terms).
    pub(crate) mag: Vec<f64>,
}

impl Balls {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Balls { centre: Vec::with_capacity(n), radius: Vec::with_capacity(n), mag: Vec::with_capacity(n) }
    }

    pub(crate) fn push(&mut self, c: BigFloat, r: f64) {
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
pub(crate) fn magnitude(x: &BigFloat) -> f64 {
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

/// Mean value theorem for a ball `[c − r, c + r]` with `c` enclosed in `centre`:
/// `|f(exact) − f(c)| ≤ sup |f′|` over the ball times `r` (not yet rounded up).
pub(crate) fn mean_value_radius(f: Act, centre: Interval, r: f64) -> f64 {
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
