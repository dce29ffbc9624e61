//! From logit bounds to probability bounds, and from logit-difference bounds to a bound on
//! how far a class probability can move.
//!
//! Everything works on differences `z_j − z_c`: softmax is invariant to shifts, and zonotopes
//! bound differences far tighter than two separate intervals.
//!
//! A NaN or infinite input bound (an overflow upstream) means "unknown": it widens every
//! result it touches to the trivial one, never narrows it (`f64::max` would drop a NaN).

use zonocert_domain::{Interval, Zonotope, U};

/// Slack for `exp` (faithful) and the few roundings around it.
const EXP_REL: f64 = 1e-14;

/// Bounds on `S_c = Σ_{j≠c} exp(z_j − z_c)` for every class, rounded outward, given bounds
/// on every `z_j − z_c` (`diff(j, c)`); `p_c = 1 / (1 + S_c)`.
fn exp_sum_bounds(classes: usize, diff: &dyn Fn(usize, usize) -> Interval) -> Vec<(f64, f64)> {
    (0..classes)
        .map(|c| {
            let (mut s_lo, mut s_hi) = (0.0f64, 0.0f64);
            for j in (0..classes).filter(|&j| j != c) {
                let d = diff(j, c);
                let d = if d.is_nan() { Interval::unbounded() } else { d };
                s_lo += d.lo.exp() * (1.0 - EXP_REL);
                s_hi += d.hi.exp() * (1.0 + EXP_REL);
            }
            let s_lo = s_lo * (1.0 - classes as f64 * 2.0 * U);
            let s_hi = (s_hi * (1.0 + classes as f64 * 2.0 * U)).next_up();
            (s_lo, s_hi)
        })
        .collect()
}

/// Bounds on `p_c = 1 / (1 + Σ_{j≠c} exp(z_j − z_c))` given bounds on every `z_j − z_c`
/// (`diff(j, c)`).
pub fn probability_bounds(classes: usize, diff: &dyn Fn(usize, usize) -> Interval) -> Vec<Interval> {
    probabilities_from_sums(&exp_sum_bounds(classes, diff))
}

/// `p_c = 1 / (1 + S_c)` over bounds on every `S_c` ([`exp_sum_bounds`]), rounded outward.
fn probabilities_from_sums(sums: &[(f64, f64)]) -> Vec<Interval> {
    sums.iter()
        .map(|&(s_lo, s_hi)| {
            let lo = (1.0 / (1.0 + s_hi)) * (1.0 - 4.0 * U);
            let hi = ((1.0 / (1.0 + s_lo)) * (1.0 + 4.0 * U)).min(1.0);
            Interval::new(lo.max(0.0), hi)
        })
        .collect()
}

/// The exact worst case of a softmax probability under a bounded logit shift, rounded up.
///
/// If every `|Δ(z_c − z_j)| ≤ m`, then `S = Σ_{j≠c} exp(z_j − z_c)` and its value `S′` after
/// the shift satisfy `S′/S ∈ [e^{−m}, e^{m}]`. With `T = max(S, S′)` and `m′ = |ln(S′/S)| ≤ m`,
/// `|Δp_c| = 1/(1 + T e^{−m′}) − 1/(1 + T) ≤ h_m(T) = T(1 − e^{−m}) / ((1 + T e^{−m})(1 + T))`.
/// `h_m` rises up to `T = e^{m/2}`, where it equals `tanh(m/4)`, and falls after, so its
/// supremum over `T ∈ [s_lo, s_hi]` (the range of `S` at both images) is `h_m` at `e^{m/2}`
/// clamped to that range. Over unknown ranges it is `tanh(m/4) < min(1, m/4)`: below the
/// mean-value form's `¼·m` and, unlike it, below 1 for every finite `m`.
///
/// NaN or negative `m` (unknown) gives +∞.
pub fn logit_shift_bound(m: f64, s_lo: f64, s_hi: f64) -> f64 {
    if m.is_nan() || m < 0.0 || s_lo.is_nan() || s_hi.is_nan() {
        return f64::INFINITY;
    }
    if m == f64::INFINITY {
        return 1.0;
    }
    let peak = (m / 2.0).exp();
    // Clamp with slack so that a slightly misplaced peak can only fall back to `tanh(m/4)`,
    // the unconstrained supremum.
    let t = if s_hi < peak * (1.0 - 1e-9) {
        s_hi.max(0.0)
    } else if s_lo > peak * (1.0 + 1e-9) {
        s_lo
    } else {
        return ((m / 4.0).tanh() * (1.0 + 1e-14)).next_up().min(1.0);
    };
    if t == 0.0 || t == f64::INFINITY {
        return 0.0;
    }
    let h = t * -(-m).exp_m1() / ((1.0 + t * (-m).exp()) * (1.0 + t));
    if h.is_nan() {
        return 1.0;
    }
    ((h * (1.0 + 1e-12)).next_up() + f64::MIN_POSITIVE).min(1.0)
}

/// Bounds on `z_j − z_c` for all pairs, from a zonotope of logits.
pub fn logit_differences(z: &Zonotope) -> Vec<Vec<Interval>> {
    let k = z.dim();
    (0..k).map(|j| (0..k).map(|c| if j == c { Interval::point(0.0) } else { z.difference_bounds(j, c) }).collect()).collect()
}

/// The largest value of `t(1 − t)` for `t ∈ [lo, hi]` (rounded up, at most ¼; ¼ for NaN).
pub fn max_bernoulli_variance(p: Interval) -> f64 {
    let v = if p.is_nan() || (p.lo <= 0.5 && 0.5 <= p.hi) {
        0.25
    } else {
        let t = if p.hi < 0.5 { p.hi } else { p.lo };
        t * (1.0 - t)
    };
    ((v * (1.0 + 4.0 * U)).next_up()).min(0.25)
}

/// What bounds one class's probability change, and which argument gave the minimum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassBound {
    /// The certified bound on `|p_c(x′) − p_c(x)|`.
    pub bound: f64,
    /// Bound from the two probability ranges alone.
    pub from_ranges: f64,
    /// Bound from the softmax mean-value form `p_c(1 − p_c)·max_j |Δ(z_c − z_j)|`.
    pub from_mean_value: f64,
    /// Bound from the exact worst case of the softmax under the certified logit shift
    /// ([`logit_shift_bound`]): at most `tanh(max_j |Δ(z_c − z_j)| / 4)`.
    pub from_logit_shift: f64,
    /// The certified `max_j |Δ(z_c − z_j)|` itself (+∞ when unknown): the logits' movement,
    /// which no rescaling of the logits (temperature) can shrink relative to their margins.
    pub max_logit_delta: f64,
}

/// Certified bound on `|p_c(x′) − p_c(x)|` for every class.
///
/// * `diff_x(j, c)`, `diff_xp(j, c)`: bounds on `z_j − z_c` over the region at `x` and `x′`;
/// * `delta(c, j)`: bounds on `Δ(z_c − z_j) = (z′_c − z′_j) − (z_c − z_j)`.
///
/// By the mean value theorem on the segment from `z` to `z′`,
/// `Δp_c = p_c(ξ) Σ_j p_j(ξ)(Δz_c − Δz_j)`, so `|Δp_c| ≤ p_c(1 − p_c)·max_j |Δ(z_c − z_j)|`
/// with `p_c(ξ)` in the hull of both ranges. The result is the least of that, the exact worst
/// case of the softmax under the same logit shift ([`logit_shift_bound`]), the difference of the
/// two probability ranges, and 1.
pub fn class_bounds(
    classes: usize,
    diff_x: &dyn Fn(usize, usize) -> Interval,
    diff_xp: &dyn Fn(usize, usize) -> Interval,
    delta: &dyn Fn(usize, usize) -> Interval,
) -> Vec<ClassBound> {
    let p = probability_bounds(classes, diff_x);
    let pp = probability_bounds(classes, diff_xp);
    let hull = |j: usize, c: usize| diff_x(j, c).hull(&diff_xp(j, c));
    let sh = exp_sum_bounds(classes, &hull);
    let ph = probabilities_from_sums(&sh);
    (0..classes)
        .map(|c| {
            let from_ranges = unknown_as_infinite(((pp[c].hi - p[c].lo).max(p[c].hi - pp[c].lo).max(0.0) * (1.0 + 2.0 * U)).next_up());
            let max_delta = (0..classes).filter(|&j| j != c).map(|j| delta(c, j).mag()).fold(0.0, nan_max);
            let from_mean_value = if max_delta.is_finite() {
                unknown_as_infinite(((max_bernoulli_variance(ph[c]) * max_delta) * (1.0 + 2.0 * U)).next_up())
            } else {
                f64::INFINITY
            };
            let from_logit_shift = if max_delta.is_finite() { logit_shift_bound(max_delta, sh[c].0, sh[c].1) } else { f64::INFINITY };
            ClassBound {
                bound: from_ranges.min(from_mean_value).min(from_logit_shift).min(1.0),
                from_ranges,
                from_mean_value,
                from_logit_shift,
                max_logit_delta: unknown_as_infinite(max_delta),
            }
        })
        .collect()
}

/// `max(a, b)`, NaN when either is NaN.
fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// A bound that is NaN says nothing: +∞.
fn unknown_as_infinite(v: f64) -> f64 {
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(k: usize, v: Interval) -> Vec<Vec<Interval>> {
        (0..k).map(|c| (0..k).map(|j| if c == j { Interval::point(0.0) } else { v }).collect()).collect()
    }

    /// An overflowed (NaN or infinite) difference bound says nothing: the class bound falls back
    /// to the probability ranges (here trivial), never to a number computed from the NaN.
    #[test]
    fn unknown_differences_give_the_trivial_bound() {
        let k = 3;
        let dx = pairs(k, Interval::new(-1.0, 1.0));
        for bad in [Interval { lo: f64::NAN, hi: f64::NAN }, Interval::unbounded(), Interval { lo: 0.0, hi: f64::NAN }] {
            let dd = pairs(k, bad);
            let b = class_bounds(k, &|j, c| dx[j][c], &|j, c| dx[j][c].add(&dd[j][c]), &|c, j| dd[c][j]);
            for cb in &b {
                assert_eq!(cb.from_mean_value, f64::INFINITY, "{bad:?}: {cb:?}");
                assert!(cb.bound >= cb.from_ranges.min(1.0) && cb.bound > 0.1, "{bad:?}: {cb:?}");
            }
        }
        // One NaN among finite differences is enough.
        let mut dd = pairs(k, Interval::new(-1e-3, 1e-3));
        dd[0][2] = Interval { lo: f64::NAN, hi: f64::NAN };
        let b = class_bounds(k, &|j, c| dx[j][c], &|j, c| dx[j][c], &|c, j| dd[c][j]);
        assert_eq!(b[0].from_mean_value, f64::INFINITY, "{:?}", b[0]);
    }

    #[test]
    fn nan_logit_differences_give_probabilities_in_zero_one() {
        let p = probability_bounds(3, &|_, _| Interval { lo: f64::NAN, hi: f64::NAN });
        for iv in p {
            assert_eq!((iv.lo, iv.hi), (0.0, 1.0));
        }
    }

    fn softmax(z: &[f64]) -> Vec<f64> {
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    /// Two classes at `z_1 − z_0 = m/2` whose difference drops by `m`: `p_0` moves by exactly
    /// `tanh(m/4)`, the bound; and for every finite `m` the bound stays below 1 and below `m/4`.
    #[test]
    fn logit_shift_bound_is_attained() {
        for m in [1e-6, 1e-3, 0.1, 1.0, 3.35, 4.1, 10.0, 30.0] {
            let (z, zp) = ([0.0, m / 2.0], [0.0, -m / 2.0]);
            let moved = (softmax(&zp)[0] - softmax(&z)[0]).abs();
            let dx = |j: usize, c: usize| Interval::point(z[j] - z[c]);
            let dxp = |j: usize, c: usize| Interval::point(zp[j] - zp[c]);
            let delta = |c: usize, j: usize| Interval::point((zp[c] - zp[j]) - (z[c] - z[j]));
            let b = class_bounds(2, &dx, &dxp, &delta)[0];
            assert!(b.from_logit_shift >= moved && b.from_logit_shift <= moved * (1.0 + 1e-9) + 1e-15, "m = {m}: moved {moved:e}, {b:?}");
            // Over unknown ranges the bound is tanh(m/4) itself.
            let t = logit_shift_bound(m, 0.0, f64::INFINITY);
            assert!(t >= (m / 4.0).tanh() && t <= (m / 4.0).tanh() * (1.0 + 1e-12) + 1e-300, "m = {m}: {t}");
            assert!(t < 1.0 && t <= m / 4.0, "m = {m}: {t}");
        }
        assert_eq!(logit_shift_bound(f64::NAN, 0.0, 1.0), f64::INFINITY);
        assert_eq!(logit_shift_bound(f64::INFINITY, 0.0, 1.0), 1.0);
    }

    /// Sampled logits and shifts whose differences move by at most `m` never move a probability
    /// by more than the bound, with the range of `S` taken from the samples' own hull.
    #[test]
    fn logit_shift_bound_covers_sampled_shifts() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..20_000 {
            let k = 2 + (next() * 9.0) as usize;
            let spread = [0.5, 3.0, 12.0][(next() * 3.0) as usize];
            let m = [0.01, 0.5, 2.0, 5.0][(next() * 4.0) as usize];
            let z: Vec<f64> = (0..k).map(|_| spread * (2.0 * next() - 1.0)).collect();
            // A common shift plus per-class shifts of at most m/2 keeps |Δ(z_c − z_j)| ≤ m.
            let common = 5.0 * next();
            let zp: Vec<f64> = z.iter().map(|v| v + common + (m / 2.0) * (2.0 * next() - 1.0)).collect();
            let (p, pp) = (softmax(&z), softmax(&zp));
            let dx = |j: usize, c: usize| Interval::point(z[j] - z[c]);
            let dxp = |j: usize, c: usize| Interval::point(zp[j] - zp[c]);
            let delta = |c: usize, j: usize| Interval::point((zp[c] - zp[j]) - (z[c] - z[j]));
            for (c, b) in class_bounds(k, &dx, &dxp, &delta).iter().enumerate() {
                let moved = (pp[c] - p[c]).abs();
                assert!(moved <= b.from_logit_shift + 1e-15, "k {k}, class {c}: moved {moved:e} > {b:?}");
                assert!(b.bound <= b.from_logit_shift);
                // Unknown ranges: the bound needs only m.
                assert!(moved <= logit_shift_bound(m, 0.0, f64::INFINITY) + 1e-15);
            }
        }
    }
}
