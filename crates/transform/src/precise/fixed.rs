//! The fast backend of [`crate::precise`]: 256-bit fixed-point ball arithmetic.
//!
//! Values are `±m · 2⁻²⁵⁶` with `m` a 320-bit magnitude (five 64-bit limbs), so every value
//! has the same absolute resolution, one *unit* `2⁻²⁵⁶ ≈ 8.6·10⁻⁷⁸`. There is no allocation
//! and no normalisation: a multiply-accumulate is five 64×64-bit products and a shifted add
//! into a 448-bit accumulator, about 30× cheaper than a 256-bit `BigFloat` operation.
//!
//! Error accounting is absolute, in units: additions are exact; a product of two values is
//! truncated (< 1 unit); a dot product with `f64` weights is accumulated with 64 extra bits
//! and truncated once (< 1 + n·2⁻⁶⁴ units); divisions by integers are floored (< 1 unit).
//! The exponential and the reciprocal carry explicit bounds (see [`FixedNetwork::exp_neg`]
//! and [`FixedNetwork::recip`]). The radius of every ball is the `f64` sum, rounded up, of the
//! propagated input radius and these errors.
//!
//! The format holds values with `|x| < 2³²` and weights with `|w| < 2²⁰`; beyond that (or for
//! a Softmax layer inside the network) the evaluation reports [`Unsupported`] and the caller
//! falls back to the `BigFloat` backend. Nothing is ever silently clipped.

use super::ball::{mean_value_radius, pow2, up, walk, BallArithmetic, Balls};
use crate::activation::{Act, Form};
use astro_float::{BigFloat, Consts, RoundingMode};
use zonocert_domain::Interval;
use zonocert_network::ir::{conv_taps, numel, pad_sources, ChannelAffine, Conv, Linear, Op};
use zonocert_network::Network;

const LIMBS: usize = 5;
/// Accumulator limbs (512 bits: the scaled products stay below 2^415, sums of up to 2^40
/// of them below 2^455).
const ACC_LIMBS: usize = 8;
/// Fraction bits: one unit is `2^-FRAC`.
const FRAC: i64 = 256;
/// Largest accepted magnitude of a value, `2^32` (keeps every accumulator overflow-free).
const MAX_VALUE_LOG2: u32 = 32;
/// Largest accepted magnitude of a weight, `2^20`.
const MAX_WEIGHT: f64 = 1048576.0;
/// Taylor degree of `exp(−s)` on `|s| ≤ 1.01·2⁻¹²` (remainder below 2⁻²⁶⁷, under one unit).
const EXP_DEGREE: usize = 17;
/// The exponential's tables: `e^{−j/64}` for `j` in `EXP_COARSE` and `e^{−k/4096}` for `k` in
/// `EXP_FINE` (the reduced argument lies in `[−0.015, 0.75]`; the ranges leave a step of slack
/// for the `f64` estimate of each index).
const EXP_COARSE: std::ops::RangeInclusive<i64> = -2..=49;
const EXP_FINE: std::ops::RangeInclusive<i64> = -2..=66;
/// `e^{−a}` for `a` at least this is below one unit.
const EXP_UNDERFLOW: f64 = 178.0;

/// Why the fixed-point backend cannot evaluate a network or an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsupported;

/// A signed fixed-point value `±m · 2⁻²⁵⁶`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fx {
    neg: bool,
    m: [u64; LIMBS],
}

/// `(a + b, carry)` on magnitudes.
fn add_mag<const N: usize>(a: &[u64; N], b: &[u64; N]) -> ([u64; N], bool) {
    let mut out = [0u64; N];
    let mut carry = false;
    for i in 0..N {
        let (s1, c1) = a[i].overflowing_add(b[i]);
        let (s2, c2) = s1.overflowing_add(carry as u64);
        out[i] = s2;
        carry = c1 || c2;
    }
    (out, carry)
}

/// `a − b` on magnitudes with `a ≥ b`.
fn sub_mag<const N: usize>(a: &[u64; N], b: &[u64; N]) -> [u64; N] {
    let mut out = [0u64; N];
    let mut borrow = false;
    for i in 0..N {
        let (d1, b1) = a[i].overflowing_sub(b[i]);
        let (d2, b2) = d1.overflowing_sub(borrow as u64);
        out[i] = d2;
        borrow = b1 || b2;
    }
    out
}

fn cmp_mag<const N: usize>(a: &[u64; N], b: &[u64; N]) -> std::cmp::Ordering {
    for i in (0..N).rev() {
        match a[i].cmp(&b[i]) {
            std::cmp::Ordering::Equal => continue,
            o => return o,
        }
    }
    std::cmp::Ordering::Equal
}

impl Fx {
    /// Zero.
    pub const ZERO: Fx = Fx { neg: false, m: [0; LIMBS] };
    /// One.
    pub const ONE: Fx = Fx { neg: false, m: [0, 0, 0, 0, 1] };

    fn checked(self) -> Result<Fx, Unsupported> {
        if self.m[4] >> MAX_VALUE_LOG2 != 0 {
            Err(Unsupported)
        } else {
            Ok(self)
        }
    }

    /// True for zero (of either sign).
    pub fn is_zero(&self) -> bool {
        self.m.iter().all(|&l| l == 0)
    }

    /// True for a value below zero.
    pub fn is_negative(&self) -> bool {
        self.neg && !self.is_zero()
    }

    /// `−x`.
    pub fn neg(self) -> Fx {
        Fx { neg: !self.neg, m: self.m }
    }

    /// `|x|`.
    pub fn abs(self) -> Fx {
        Fx { neg: false, m: self.m }
    }

    /// An integer (`|i| < 2^32`).
    pub fn from_int(i: i64) -> Result<Fx, Unsupported> {
        Fx { neg: i < 0, m: [0, 0, 0, 0, i.unsigned_abs()] }.checked()
    }

    /// `x` truncated toward zero to a multiple of one unit, and whether that was exact.
    pub fn from_f64(x: f64) -> Result<(Fx, bool), Unsupported> {
        if !x.is_finite() || x.abs() >= pow2(MAX_VALUE_LOG2 as i64) {
            return Err(Unsupported);
        }
        if x == 0.0 {
            return Ok((Fx::ZERO, true));
        }
        let (mant, exp) = decompose(x);
        // |x| · 2^256 = mant · 2^(exp + 256).
        let (m, exact) = shifted::<LIMBS>(&[mant], exp + FRAC)?;
        Ok((Fx { neg: x < 0.0, m }.checked()?, exact))
    }

    /// Sum (exact).
    pub fn add(self, o: Fx) -> Result<Fx, Unsupported> {
        if self.neg == o.neg {
            let (m, carry) = add_mag(&self.m, &o.m);
            if carry {
                return Err(Unsupported);
            }
            Fx { neg: self.neg, m }.checked()
        } else if cmp_mag(&self.m, &o.m) != std::cmp::Ordering::Less {
            Ok(Fx { neg: self.neg, m: sub_mag(&self.m, &o.m) })
        } else {
            Ok(Fx { neg: o.neg, m: sub_mag(&o.m, &self.m) })
        }
    }

    /// Difference (exact).
    pub fn sub(self, o: Fx) -> Result<Fx, Unsupported> {
        self.add(o.neg())
    }

    /// Product, truncated toward zero (error below one unit).
    pub fn mul(self, o: Fx) -> Result<Fx, Unsupported> {
        // Column sums of the 64-bit halves (no carry chain), normalised once. Columns below
        // limb 3 only feed the carry into limb 4; all ten are summed exactly.
        let mut cols = [0u128; 2 * LIMBS];
        for i in 0..LIMBS {
            let a = self.m[i] as u128;
            if a == 0 {
                continue;
            }
            for j in 0..LIMBS {
                let t = a * o.m[j] as u128;
                cols[i + j] += t as u64 as u128;
                cols[i + j + 1] += t >> 64;
            }
        }
        let mut p = [0u64; 2 * LIMBS];
        let mut carry: u128 = 0;
        for k in 0..2 * LIMBS {
            let t = cols[k] + carry;
            p[k] = t as u64;
            carry = t >> 64;
        }
        // The product has 512 fraction bits: drop the four low limbs.
        if p[9] != 0 || carry != 0 {
            return Err(Unsupported);
        }
        Fx { neg: self.neg != o.neg, m: [p[4], p[5], p[6], p[7], p[8]] }.checked()
    }

    /// Product with a small non-negative integer (exact).
    pub fn mul_int(self, k: u64) -> Result<Fx, Unsupported> {
        let mut m = [0u64; LIMBS];
        let mut carry: u128 = 0;
        for i in 0..LIMBS {
            let t = self.m[i] as u128 * k as u128 + carry;
            m[i] = t as u64;
            carry = t >> 64;
        }
        if carry != 0 {
            return Err(Unsupported);
        }
        Fx { neg: self.neg, m }.checked()
    }

    /// Quotient by a positive integer, truncated toward zero (error below one unit).
    pub fn div_int(self, d: u64) -> Fx {
        let mut m = [0u64; LIMBS];
        let mut rem: u128 = 0;
        for i in (0..LIMBS).rev() {
            let cur = (rem << 64) | self.m[i] as u128;
            m[i] = (cur / d as u128) as u64;
            rem = cur % d as u128;
        }
        Fx { neg: self.neg, m }
    }

    /// `x / 2^k`, truncated toward zero (error below one unit).
    pub fn shr(self, k: u32) -> Fx {
        // A right shift cannot overflow.
        let (m, _) = shifted::<LIMBS>(&self.m, -(k as i64)).unwrap_or(([0; LIMBS], false));
        Fx { neg: self.neg, m }
    }

    /// An `f64` interval containing the value.
    pub fn enclose(&self) -> Interval {
        let Some(t) = (0..LIMBS).rev().find(|&i| self.m[i] != 0) else { return Interval::point(0.0) };
        let scale = |i: usize| pow2(64 * i as i64 - FRAC);
        // The two top limbs, each converted with relative error 2^-53; the rest is below one
        // unit of the second limb.
        let approx = self.m[t] as f64 * scale(t) + if t > 0 { self.m[t - 1] as f64 * scale(t - 1) } else { 0.0 };
        let below = if t > 1 { scale(t - 1) } else { 0.0 };
        let lo = (approx * (1.0 - 4.0 * f64::EPSILON)).max(0.0);
        let hi = (approx * (1.0 + 4.0 * f64::EPSILON) + below).next_up();
        if self.neg {
            Interval::new(-hi, -lo)
        } else {
            Interval::new(lo, hi)
        }
    }

    /// An upper bound on `|x|`.
    pub fn mag(&self) -> f64 {
        self.enclose().mag()
    }

    /// The exact value as a `BigFloat` (320 bits hold it exactly).
    pub fn to_big(&self) -> BigFloat {
        const P: usize = 384;
        let rm = RoundingMode::ToEven;
        let mut acc = BigFloat::from_f64(0.0, P);
        for i in 0..LIMBS {
            if self.m[i] != 0 {
                let limb = BigFloat::from_u64(self.m[i], 64).mul(&BigFloat::from_f64(pow2(64 * i as i64 - FRAC), 64), P, rm);
                acc = acc.add(&limb, P, rm);
            }
        }
        if self.neg {
            acc.neg()
        } else {
            acc
        }
    }

    /// `x` truncated toward zero to a multiple of one unit (error below one unit).
    pub fn from_big(x: &BigFloat) -> Result<Fx, Unsupported> {
        if x.is_zero() {
            return Ok(Fx::ZERO);
        }
        let (words, _, sign, e, _) = x.as_raw_parts().ok_or(Unsupported)?;
        if e as i64 > MAX_VALUE_LOG2 as i64 || words.len() > 16 {
            return Err(Unsupported);
        }
        // x = M · 2^(e − 64·len), M the mantissa integer (least significant word first).
        let mut buf = [0u64; 17];
        buf[..words.len()].copy_from_slice(words);
        let shift = e as i64 - 64 * words.len() as i64 + FRAC;
        let (m, _) = shifted::<LIMBS>(&buf, shift)?;
        Fx { neg: sign.is_negative(), m }.checked()
    }
}

/// `x = mant · 2^exp` with `mant < 2^53` (for finite non-zero `x`).
fn decompose(x: f64) -> (u64, i64) {
    let bits = x.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let frac = bits & ((1u64 << 52) - 1);
    if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp_bits - 1075)
    }
}

/// `floor(v · 2^shift)` for a little-endian magnitude `v`, into `N` limbs, and whether no
/// low bit was dropped; an overflow at the top is an error, never a silent wrap.
fn shifted<const N: usize>(v: &[u64], shift: i64) -> Result<([u64; N], bool), Unsupported> {
    let mut out = [0u64; N];
    let mut exact = true;
    let (limb_shift, bit_shift) = (shift.div_euclid(64), shift.rem_euclid(64) as u32);
    for (i, &w) in v.iter().enumerate() {
        if w == 0 {
            continue;
        }
        // w · 2^bit_shift spans limbs i + limb_shift and i + limb_shift + 1.
        let lo = w << bit_shift;
        let hi = if bit_shift == 0 { 0 } else { w >> (64 - bit_shift) };
        for (k, part) in [(i as i64 + limb_shift, lo), (i as i64 + limb_shift + 1, hi)] {
            if part == 0 {
                continue;
            }
            if k < 0 {
                exact = false;
            } else if (k as usize) < N {
                out[k as usize] |= part;
            } else {
                return Err(Unsupported);
            }
        }
    }
    Ok((out, exact))
}

/// A weight prepared for an accumulator in units of `2^-(256 + S)` (`S` chosen per layer).
#[derive(Clone, Copy)]
struct Weight {
    /// `|w| · 2^S` when it is an integer below `2^127` (the fast path: no shifting).
    scaled: Option<u128>,
    /// Otherwise `|w| = mant · 2^exp`: the product lands after a shift by `exp + S`
    /// (`64·limbs + bits`), dropping low bits.
    mant: u64,
    limbs: i64,
    bits: u32,
    neg: bool,
}

impl Weight {
    fn new(w: f64, scale_log2: i64) -> Result<Weight, Unsupported> {
        if !w.is_finite() || w.abs() >= MAX_WEIGHT {
            return Err(Unsupported);
        }
        if w == 0.0 {
            return Ok(Weight { scaled: Some(0), mant: 0, limbs: 0, bits: 0, neg: false });
        }
        let (mant, exp) = decompose(w);
        let shift = exp + scale_log2;
        let scaled = (0..=74).contains(&shift).then(|| (mant as u128) << shift);
        Ok(Weight { scaled, mant, limbs: shift.div_euclid(64), bits: shift.rem_euclid(64) as u32, neg: w < 0.0 })
    }
}

/// The per-layer scale `S`: the largest weight times `2^S` stays below `2^127`.
fn scale_log2(weights: &[f64]) -> i64 {
    let max = weights.iter().fold(0.0f64, |m, w| m.max(w.abs()));
    if max == 0.0 {
        return 126;
    }
    let (mant, exp) = decompose(max);
    // max < 2^(exp + bits(mant)).
    126 - (exp + (64 - mant.leading_zeros()) as i64)
}

/// A dot-product accumulator in units of `2^-(256 + S)`: positive and negative parts apart,
/// each as column sums of 64-bit limbs in 128-bit counters. Carries are propagated once, at
/// the end: a multiply-accumulate then has no carry chain. A column receives at most four
/// limbs per term, so 2^62 terms cannot overflow it.
struct Acc {
    pos: [u128; ACC_LIMBS],
    neg: [u128; ACC_LIMBS],
    /// The layer's scale `S`.
    scale_log2: i64,
    /// Terms whose low bits were truncated (slow path only).
    truncated: usize,
}

/// Column sums to a normalised magnitude; an overflow beyond the top limb is an error.
fn normalise(cols: &[u128; ACC_LIMBS]) -> Result<[u64; ACC_LIMBS], Unsupported> {
    let mut out = [0u64; ACC_LIMBS];
    let mut carry: u128 = 0;
    for i in 0..ACC_LIMBS {
        let (t, over) = cols[i].overflowing_add(carry);
        if over {
            return Err(Unsupported);
        }
        out[i] = t as u64;
        carry = t >> 64;
    }
    if carry != 0 {
        return Err(Unsupported);
    }
    Ok(out)
}

impl Acc {
    fn new(scale_log2: i64) -> Self {
        Acc { pos: [0; ACC_LIMBS], neg: [0; ACC_LIMBS], scale_log2, truncated: 0 }
    }

    #[inline]
    fn mac(&mut self, x: &Fx, w: Weight) -> Result<(), Unsupported> {
        if x.is_zero() {
            return Ok(());
        }
        let cols = if x.neg != w.neg { &mut self.neg } else { &mut self.pos };
        if let Some(wv) = w.scaled {
            if wv == 0 {
                return Ok(());
            }
            // Exact product |x| · |w|·2^S, five limbs by two, into the columns.
            let (wlo, whi) = (wv as u64 as u128, (wv >> 64) as u64 as u128);
            for i in 0..LIMBS {
                let xi = x.m[i] as u128;
                let a = xi * wlo;
                let b = xi * whi;
                cols[i] += a as u64 as u128;
                cols[i + 1] += (a >> 64) + (b as u64 as u128);
                cols[i + 2] += b >> 64;
            }
        } else {
            let mut p = [0u64; LIMBS + 1];
            let mut carry: u128 = 0;
            for i in 0..LIMBS {
                let t = x.m[i] as u128 * w.mant as u128 + carry;
                p[i] = t as u64;
                carry = t >> 64;
            }
            p[LIMBS] = carry as u64;
            // p · 2^bits over seven limbs, placed `limbs` limbs up.
            let mut wide = [0u64; LIMBS + 2];
            if w.bits == 0 {
                wide[..LIMBS + 1].copy_from_slice(&p);
            } else {
                let mut prev = 0u64;
                for i in 0..=LIMBS {
                    wide[i] = (p[i] << w.bits) | (prev >> (64 - w.bits));
                    prev = p[i];
                }
                wide[LIMBS + 1] = prev >> (64 - w.bits);
            }
            let mut truncated = false;
            for (j, &v) in wide.iter().enumerate() {
                let k = j as i64 + w.limbs;
                if k < 0 {
                    truncated |= v != 0;
                } else if k >= ACC_LIMBS as i64 {
                    if v != 0 {
                        return Err(Unsupported);
                    }
                } else {
                    cols[k as usize] += v as u128;
                }
            }
            self.truncated += truncated as usize;
        }
        Ok(())
    }

    /// The sum, truncated to units, and its error bound in units.
    fn finish(self) -> Result<(Fx, f64), Unsupported> {
        let (pos, neg) = (normalise(&self.pos)?, normalise(&self.neg)?);
        let (neg, mag) =
            if cmp_mag(&pos, &neg) != std::cmp::Ordering::Less { (false, sub_mag(&pos, &neg)) } else { (true, sub_mag(&neg, &pos)) };
        let (m, _) = shifted::<LIMBS>(&mag, -self.scale_log2)?;
        let v = Fx { neg, m }.checked()?;
        // Each truncated term lost less than 2^-S units; the final shift less than one unit.
        Ok((v, 1.0 + self.truncated as f64 * pow2(-self.scale_log2)))
    }
}

/// Per-layer constants.
enum Prepared {
    Weights {
        w: Vec<Weight>,
        abs: Vec<f64>,
        b: Vec<Weight>,
        scale_log2: i64,
    },
    /// Multiplier (or reciprocal of the divisor, with its error in units) and offset.
    Affine {
        scale: Vec<(Fx, f64)>,
        shift: Vec<(Fx, f64)>,
        scale_abs: Vec<f64>,
    },
    Nothing,
}

/// A network prepared for 256-bit fixed-point ball evaluation.
pub struct FixedNetwork<'a> {
    net: &'a Network,
    prepared: Vec<Prepared>,
    /// ln 2, and its error in units.
    ln2: (Fx, f64),
    /// `1/j!` for `j = 0..=EXP_DEGREE`, each within 2 units.
    taylor: Vec<Fx>,
    /// `e^{−j/64}` for `j` in `EXP_COARSE` (from the range's start), each within one unit.
    exp_coarse: Vec<Fx>,
    /// `e^{−k/4096}` for `k` in `EXP_FINE` (from the range's start), each within one unit.
    exp_fine: Vec<Fx>,
}

/// One unit, `2^-256`, as an `f64`.
fn unit() -> f64 {
    pow2(-FRAC)
}

impl<'a> FixedNetwork<'a> {
    /// Prepares the network, or reports why this backend cannot evaluate it.
    pub fn new(net: &'a Network) -> Result<Self, Unsupported> {
        let mut prepared = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            prepared.push(match &l.op {
                Op::Conv(Conv { weight, bias, .. }) | Op::Linear(Linear { weight, bias, .. }) => {
                    let s = scale_log2(weight).min(scale_log2(bias));
                    Prepared::Weights {
                        w: weight.iter().map(|&w| Weight::new(w, s)).collect::<Result<_, _>>()?,
                        abs: weight.iter().map(|w| w.abs()).collect(),
                        b: bias.iter().map(|&w| Weight::new(w, s)).collect::<Result<_, _>>()?,
                        scale_log2: s,
                    }
                }
                Op::ChannelAffine(a) => {
                    let scale = a
                        .scale
                        .iter()
                        .map(|&s| {
                            if a.divide {
                                // 1/s to 512 bits, then truncated: within 2 units.
                                let rm = RoundingMode::ToEven;
                                let inv = BigFloat::from_f64(1.0, 512).div(&BigFloat::from_f64(s, 512), 512, rm);
                                Ok((Fx::from_big(&inv)?, 2.0))
                            } else {
                                Fx::from_f64(s).map(|(v, exact)| (v, if exact { 0.0 } else { 1.0 }))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let shift = a
                        .shift
                        .iter()
                        .map(|&t| Fx::from_f64(t).map(|(v, exact)| (v, if exact { 0.0 } else { 1.0 })))
                        .collect::<Result<_, _>>()?;
                    let scale_abs = scale.iter().map(|(v, e)| up(v.mag() + e * unit(), 2)).collect();
                    Prepared::Affine { scale, shift, scale_abs }
                }
                Op::Softmax => return Err(Unsupported),
                _ => Prepared::Nothing,
            });
        }
        let rm = RoundingMode::ToEven;
        let ln2_big = Consts::new().map_err(|_| Unsupported)?.ln_2(512, rm);
        let ln2 = (Fx::from_big(&ln2_big)?, 2.0);
        let mut taylor = vec![Fx::ONE];
        for j in 1..=EXP_DEGREE {
            // Repeated flooring: error e_j ≤ e_{j−1}/j + 1 < 2 units.
            let next = taylor[j - 1].div_int(j as u64);
            taylor.push(next);
        }
        // Table entries from 768-bit BigFloat exponentials (error about 2⁻⁷⁶⁰), truncated to
        // a unit: within one unit.
        let mut consts = Consts::new().map_err(|_| Unsupported)?;
        let mut table = |range: std::ops::RangeInclusive<i64>, step: f64| -> Result<Vec<Fx>, Unsupported> {
            range.map(|j| Fx::from_big(&BigFloat::from_f64(-(j as f64) / step, 768).exp(768, rm, &mut consts))).collect()
        };
        let exp_coarse = table(EXP_COARSE, 64.0)?;
        let exp_fine = table(EXP_FINE, 4096.0)?;
        Ok(FixedNetwork { net, prepared, ln2, taylor, exp_coarse, exp_fine })
    }

    /// The image's pixels `b / 255` (each within one unit).
    pub fn input(&self, bytes: &[u8]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        bytes.iter().map(|&b| Ok((Fx::from_int(b as i64)?.div_int(255), unit()))).collect()
    }

    /// Evaluates the network; the output balls carry exact `BigFloat` centres.
    pub fn forward(&self, input: Vec<(Fx, f64)>) -> Result<Balls, Unsupported> {
        Ok(to_balls(&self.run(input, false)?.pop().ok_or(Unsupported)?))
    }

    /// Every value (index `k + 1` is layer `k`'s output), as balls with exact centres.
    pub fn forward_all(&self, input: Vec<(Fx, f64)>) -> Result<Vec<Balls>, Unsupported> {
        Ok(self.run(input, true)?.iter().map(|v| to_balls(v)).collect())
    }

    fn run(&self, input: Vec<(Fx, f64)>, keep_all: bool) -> Result<Vec<Vec<(Fx, f64)>>, Unsupported> {
        walk(self, self.net, input, keep_all)
    }

    /// `b + Σ w·x` over `(weight index, input index)` pairs: centre and radius.
    #[allow(clippy::too_many_arguments)]
    fn dot(
        &self,
        w: &[Weight],
        abs: &[f64],
        b: Weight,
        scale_log2: i64,
        x: &[(Fx, f64)],
        pairs: impl Iterator<Item = (usize, usize)>,
    ) -> Result<(Fx, f64), Unsupported> {
        let mut acc = Acc::new(scale_log2);
        acc.mac(&Fx::ONE, b)?;
        let (mut rad, mut n) = (0.0, 0usize);
        for (wi, xi) in pairs {
            acc.mac(&x[xi].0, w[wi])?;
            rad += abs[wi] * x[xi].1;
            n += 1;
        }
        let (c, err) = acc.finish()?;
        Ok((c, up(up(rad, n) + err * unit(), 2)))
    }

    fn conv(
        &self,
        conv: &Conv,
        prep: &Prepared,
        x: &[(Fx, f64)],
        in_shape: &[usize],
        out_shape: &[usize],
    ) -> Result<Vec<(Fx, f64)>, Unsupported> {
        let Prepared::Weights { w, abs, b, scale_log2 } = prep else { return Err(Unsupported) };
        let (h, wd) = (in_shape[1], in_shape[2]);
        let (oh, ow) = (out_shape[1], out_shape[2]);
        let mut out = Vec::with_capacity(numel(out_shape));
        let pointwise = conv.kernel == [1, 1] && conv.stride == [1, 1] && conv.pads == [0; 4] && conv.groups == 1;
        if pointwise {
            let hw = h * wd;
            for oc in 0..conv.out_channels {
                for pos in 0..hw {
                    let pairs = (0..conv.in_channels).map(|ic| (oc * conv.in_channels + ic, ic * hw + pos));
                    out.push(self.dot(w, abs, b[oc], *scale_log2, x, pairs)?);
                }
            }
            return Ok(out);
        }
        for oc in 0..conv.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    out.push(self.dot(w, abs, b[oc], *scale_log2, x, conv_taps(conv, h, wd, oc, oy, ox))?);
                }
            }
        }
        Ok(out)
    }

    fn linear(&self, lin: &Linear, prep: &Prepared, x: &[(Fx, f64)]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        let Prepared::Weights { w, abs, b, scale_log2 } = prep else { return Err(Unsupported) };
        (0..lin.out_features)
            .map(|o| self.dot(w, abs, b[o], *scale_log2, x, (0..lin.in_features).map(|i| (o * lin.in_features + i, i))))
            .collect()
    }

    fn channel_affine(&self, prep: &Prepared, x: &[(Fx, f64)], in_shape: &[usize]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        let Prepared::Affine { scale, shift, scale_abs } = prep else { return Err(Unsupported) };
        let per_channel = (numel(in_shape) / in_shape.first().copied().unwrap_or(1).max(1)).max(1);
        let pick = |len: usize, ch: usize| if len == 1 { 0 } else { ch };
        x.iter()
            .enumerate()
            .map(|(k, (c, r))| {
                let ch = k / per_channel;
                let (s, s_err) = scale[pick(scale.len(), ch)];
                let (t, t_err) = shift[pick(shift.len(), ch)];
                let y = c.mul(s)?.add(t)?;
                // Product truncation, the multiplier's own error times |x|, the offset's error.
                let err = 1.0 + s_err * c.mag() + t_err;
                Ok((y, up(r * scale_abs[pick(scale_abs.len(), ch)] + err * unit(), 3)))
            })
            .collect()
    }

    /// `e^{−a}` for `a ≥ 0`, and its error in units.
    ///
    /// `a = n ln2 + r`, `r = j/64 + k/4096 + s` with `j`, `k` from the `f64` estimate of `r` and
    /// `s` exact (dyadic steps); `e^{−r} = e^{−j/64} · e^{−k/4096} · T(s)`, `T` the degree-17
    /// Taylor polynomial of `e^{−s}` by Horner's rule; then `2^{−n}` by a shift.
    /// Errors in units: Horner on `|s| ≤ 1.01·2⁻¹²` with coefficients within 2 units and truncated
    /// products stays within 4 (remainder under one more); each table entry is within one;
    /// a truncated product `x·y` of values with errors `ex`, `ey` and magnitudes ≤ 1.04 is off by
    /// at most `1.04(ex + ey) + ex·ey·unit + 1`; an error `δ` in `r ≥ −0.015` moves `e^{−r}` by
    /// at most `e^{0.015} δ ≤ 1.02 δ`.
    fn exp_neg(&self, a: Fx) -> Result<(Fx, f64), Unsupported> {
        let af = a.enclose();
        if af.lo >= EXP_UNDERFLOW {
            return Ok((Fx::ZERO, 1.0));
        }
        let n = (af.mid() / std::f64::consts::LN_2).floor().max(0.0) as u64;
        let r = a.sub(self.ln2.0.mul_int(n)?)?;
        let r_err = n as f64 * self.ln2.1;
        let rf = r.enclose();
        if rf.lo < -0.015 || rf.hi > 0.75 {
            return Err(Unsupported);
        }
        // Dyadic steps are exact in fixed point, so s = r − j/64 − k/4096 has no rounding.
        let step = |i: i64, log2: u32| -> Result<Fx, Unsupported> {
            let v = Fx::from_int(i.abs())?.shr(log2);
            Ok(if i < 0 { v.neg() } else { v })
        };
        let j = ((rf.mid() * 64.0).floor() as i64).clamp(*EXP_COARSE.start(), *EXP_COARSE.end());
        let r1 = r.sub(step(j, 6)?)?;
        let k = ((r1.enclose().mid() * 4096.0).floor() as i64).clamp(*EXP_FINE.start(), *EXP_FINE.end());
        let s = r1.sub(step(k, 12)?)?;
        // j and k are floors of f64 estimates: s ∈ [0, 2⁻¹²) up to those estimates' error.
        if s.enclose().mag() > 1.01 * pow2(-12) {
            return Err(Unsupported);
        }
        let minus_s = s.neg();
        let mut t = self.taylor[EXP_DEGREE];
        for c in self.taylor[..EXP_DEGREE].iter().rev() {
            t = c.add(minus_s.mul(t)?)?;
        }
        let t_err = 5.0;
        let coarse = self.exp_coarse[(j - EXP_COARSE.start()) as usize];
        let fine = self.exp_fine[(k - EXP_FINE.start()) as usize];
        // |e^{−j/64}| ≤ e^{2/64}, |e^{−k/4096}| ≤ e^{2/4096}, |T(s)| ≤ e^{2⁻¹¹}: all below 1.04.
        let product_err = |ex: f64, ey: f64| up(1.04 * (ex + ey) + ex * ey * unit() + 1.0, 4);
        let cf = coarse.mul(fine)?;
        let cf_err = product_err(1.0, 1.0);
        let v = cf.mul(t)?;
        let err = up(product_err(cf_err, t_err) + 1.02 * r_err, 2);
        let v = v.shr(n.min(400) as u32);
        Ok((v, up(err * pow2(-(n.min(1000) as i64)) + 1.0, 2)))
    }

    /// `1/d` for `d ∈ [1, 2.01]`, and its error in units (a posteriori: `|1/d − y| ≤ |1 − d·y|`).
    fn recip(&self, d: Fx) -> Result<(Fx, f64), Unsupported> {
        let df = d.enclose();
        if df.lo < 1.0 - 1e-12 || df.hi > 2.02 {
            return Err(Unsupported);
        }
        let (mut y, _) = Fx::from_f64(1.0 / df.mid())?;
        for _ in 0..3 {
            // y ← y + y(1 − d y): quadratic convergence from 53 bits.
            let resid = Fx::ONE.sub(d.mul(y)?)?;
            y = y.add(y.mul(resid)?)?;
        }
        let resid = Fx::ONE.sub(d.mul(y)?)?;
        // d·y is within one unit, so |1 − d y| ≤ |resid| + 1 unit; d ≥ 1.
        Ok((y, up(resid.mag() / unit() + 1.0, 2)))
    }

    /// `σ(c)` and its error in units.
    fn sigmoid(&self, c: Fx) -> Result<(Fx, f64), Unsupported> {
        let (e, e_err) = self.exp_neg(c.abs())?;
        let (y, y_err) = self.recip(Fx::ONE.add(e)?)?;
        if c.is_negative() {
            // σ(c) = e^{c}/(1 + e^{c}); d/dE [E/(1+E)] ≤ 1.
            Ok((e.mul(y)?, up(y_err + 1.0 + e_err, 3)))
        } else {
            // d/dE [1/(1+E)] ≤ 1.
            Ok((y, up(y_err + e_err, 2)))
        }
    }

    /// `clamp(α·c + β, lo, hi)` and its error in units (clamping is 1-Lipschitz, so the error of
    /// `α·c + β` carries over; a bound that does not convert exactly adds one unit).
    fn clamped_affine(c: Fx, (alpha, beta): (f64, f64), (lo, hi): (f64, f64)) -> Result<(Fx, f64), Unsupported> {
        let (mut y, mut err) = if alpha == 1.0 && beta == 0.0 {
            (c, 0.0)
        } else {
            let ((a, a_exact), (b, b_exact)) = (Fx::from_f64(alpha)?, Fx::from_f64(beta)?);
            // The product's truncation, and the truncated constants (α's error times |c|).
            let err = 1.0 + if a_exact { 0.0 } else { c.mag() } + if b_exact { 0.0 } else { 1.0 };
            (c.mul(a)?.add(b)?, up(err, 3))
        };
        if lo.is_finite() {
            let (l, exact) = Fx::from_f64(lo)?;
            if y.sub(l)?.is_negative() {
                (y, err) = (l, if exact { err } else { up(err + 1.0, 1) });
            }
        }
        if hi.is_finite() {
            let (h, exact) = Fx::from_f64(hi)?;
            if h.sub(y)?.is_negative() {
                (y, err) = (h, if exact { err } else { up(err + 1.0, 1) });
            }
        }
        Ok((y, err))
    }

    fn unary(&self, f: Act, x: &[(Fx, f64)]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        x.iter()
            .map(|&(c, r)| {
                let (value, err) = match f.form() {
                    Form::ClampedAffine { alpha, beta, lo, hi } => Self::clamped_affine(c, (alpha, beta), (lo, hi))?,
                    Form::Logistic { times_x: false } => self.sigmoid(c)?,
                    Form::Logistic { times_x: true } => {
                        let (s, s_err) = self.sigmoid(c)?;
                        (c.mul(s)?, up(c.mag() * s_err + 1.0, 2))
                    }
                };
                Ok((value, up(mean_value_radius(f, c.enclose(), r) + err * unit(), 2)))
            })
            .collect()
    }

    fn mul(&self, a: &[(Fx, f64)], b: &[(Fx, f64)]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        let repeat = (a.len() / b.len().max(1)).max(1);
        a.iter()
            .enumerate()
            .map(|(k, &(ac, ar))| {
                // `b` may be [C, 1, 1] broadcast over [C, H, W].
                let (bc, br) = b[if b.len() == a.len() { k } else { k / repeat }];
                let r = up(ac.mag() * br + bc.mag() * ar + ar * br + unit(), 4);
                Ok((ac.mul(bc)?, r))
            })
            .collect()
    }

    fn global_avg_pool(&self, x: &[(Fx, f64)], in_shape: &[usize]) -> Result<Vec<(Fx, f64)>, Unsupported> {
        let channels = in_shape[0].max(1);
        let hw = (numel(in_shape) / channels).max(1);
        (0..channels)
            .map(|ch| {
                let vals = &x[ch * hw..(ch + 1) * hw];
                let mut sum = Fx::ZERO;
                for v in vals {
                    sum = sum.add(v.0)?;
                }
                let rad = up(vals.iter().map(|v| v.1).sum::<f64>(), hw) / hw as f64;
                Ok((sum.div_int(hw as u64), up(rad + unit(), 2)))
            })
            .collect()
    }
}

/// The operations above, as the walk calls them; a Softmax inside the network is left to the
/// `BigFloat` backend.
impl BallArithmetic for FixedNetwork<'_> {
    type Value = Vec<(Fx, f64)>;
    type Error = Unsupported;
    fn empty(&self) -> Self::Value {
        vec![]
    }
    fn conv(&self, k: usize, conv: &Conv, x: &Self::Value, in_shape: &[usize], out_shape: &[usize]) -> Result<Self::Value, Unsupported> {
        FixedNetwork::conv(self, conv, &self.prepared[k], x, in_shape, out_shape)
    }
    fn linear(&self, k: usize, lin: &Linear, x: &Self::Value) -> Result<Self::Value, Unsupported> {
        FixedNetwork::linear(self, lin, &self.prepared[k], x)
    }
    fn channel_affine(&self, k: usize, _: &ChannelAffine, x: &Self::Value, in_shape: &[usize]) -> Result<Self::Value, Unsupported> {
        FixedNetwork::channel_affine(self, &self.prepared[k], x, in_shape)
    }
    fn act(&self, f: Act, x: &Self::Value) -> Result<Self::Value, Unsupported> {
        self.unary(f, x)
    }
    fn mul(&self, x: &Self::Value, s: &Self::Value) -> Result<Self::Value, Unsupported> {
        FixedNetwork::mul(self, x, s)
    }
    fn add(&self, x: &Self::Value, y: &Self::Value) -> Result<Self::Value, Unsupported> {
        x.iter().zip(y).map(|(a, b)| Ok((a.0.add(b.0)?, up(a.1 + b.1, 2)))).collect()
    }
    fn global_avg_pool(&self, x: &Self::Value, in_shape: &[usize]) -> Result<Self::Value, Unsupported> {
        FixedNetwork::global_avg_pool(self, x, in_shape)
    }
    fn pad(&self, x: &Self::Value, in_shape: &[usize], pads: [usize; 4]) -> Result<Self::Value, Unsupported> {
        Ok(pad(x, in_shape, pads))
    }
    fn softmax(&self, _: &Self::Value) -> Result<Self::Value, Unsupported> {
        Err(Unsupported)
    }
}

/// Fixed-point balls as `BigFloat` balls (the centres convert exactly).
fn to_balls(v: &[(Fx, f64)]) -> Balls {
    let radii: Vec<f64> = v.iter().map(|x| x.1).collect();
    Balls::from_big(v.iter().map(|x| x.0.to_big()).collect(), &radii)
}

fn pad(x: &[(Fx, f64)], in_shape: &[usize], pads: [usize; 4]) -> Vec<(Fx, f64)> {
    pad_sources(in_shape, pads).map(|src| src.map_or((Fx::ZERO, 0.0), |k| x[k])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zonocert_network::ValueId;

    fn close(a: &BigFloat, b: &BigFloat, units: f64) -> bool {
        let d = crate::precise::enclose(&a.sub(b, 1024, RoundingMode::ToEven));
        d.mag() <= units * unit()
    }

    #[test]
    fn arithmetic_matches_big_floats() {
        let rm = RoundingMode::ToEven;
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            (2.0 * u - 1.0) * [1e-9, 1e-3, 1.0, 50.0, 3e4][(state % 5) as usize]
        };
        for _ in 0..3000 {
            let (a, b) = (next(), next());
            let (fa, ea) = Fx::from_f64(a).expect("in range");
            let (fb, _) = Fx::from_f64(b).expect("in range");
            let (ba, bb) = (fa.to_big(), fb.to_big());
            assert!(ea || a.abs() < 1e-3, "{a} should be exact");
            assert!(close(&fa.add(fb).unwrap().to_big(), &ba.add(&bb, 1024, rm), 0.0), "add");
            assert!(close(&fa.mul(fb).unwrap().to_big(), &ba.mul(&bb, 1024, rm), 1.0), "mul {a} {b}");
            assert!(close(&fa.div_int(7).to_big(), &ba.div(&BigFloat::from_f64(7.0, 64), 1024, rm), 1.0), "div");
            assert!(close(&fa.shr(13).to_big(), &ba.mul(&BigFloat::from_f64(pow2(-13), 64), 1024, rm), 1.0), "shr");
            let e = fa.enclose();
            assert!(e.contains(a), "{a} not in {e:?}");
            let back = Fx::from_big(&ba).unwrap();
            assert_eq!(back, fa);
        }
    }

    #[test]
    fn exponential_and_sigmoid_are_within_their_bounds() {
        let net = Network {
            input_name: "x".into(),
            input_shape: vec![1],
            layers: vec![],
            output: ValueId(0),
            squeeze_excite: vec![],
            float64_folds: vec![],
        };
        let fx = FixedNetwork::new(&net).expect("empty network");
        let rm = RoundingMode::ToEven;
        let mut cc = Consts::new().expect("constants");
        let mut state = 11u64;
        for k in 0..3000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            let a = u * [1e-6, 0.7, 5.0, 60.0, 200.0][k % 5];
            let (fa, _) = Fx::from_f64(a).unwrap();
            let (v, err) = fx.exp_neg(fa).unwrap();
            let reference = fa.to_big().neg().exp(768, rm, &mut cc);
            assert!(close(&v.to_big(), &reference, err), "exp(-{a}): bound {err} units");
            assert!(err < 5000.0, "exp(-{a}): bound {err} units is loose");
            for c in [fa, fa.neg()] {
                let (s, s_err) = fx.sigmoid(c).unwrap();
                let one = BigFloat::from_f64(1.0, 768);
                let reference = one.div(&one.add(&c.to_big().neg().exp(768, rm, &mut cc), 768, rm), 768, rm);
                assert!(close(&s.to_big(), &reference, s_err), "sigmoid({:?}): bound {s_err} units", c.enclose());
            }
        }
    }
}
