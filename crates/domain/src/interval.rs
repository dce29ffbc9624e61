//! Closed intervals `[lo, hi]` of reals with outward rounding.
//!
//! NaN is contagious: an operation with a NaN end gives NaN ends (never an end that silently
//! ignores it), so an overflow upstream can never shrink into a small, wrong bound. Callers
//! test [`Interval::is_finite`] before trusting a result. An infinite end means "unbounded",
//! and `0 · ±∞` is taken as 0 (the product of 0 and any real), as in IEEE 1788.

/// A closed interval; `lo ≤ hi` unless empty (never produced by this crate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

impl Interval {
    /// `[lo, hi]`.
    pub fn new(lo: f64, hi: f64) -> Self {
        debug_assert!(lo <= hi || lo.is_nan() || hi.is_nan(), "empty interval [{lo}, {hi}]");
        Interval { lo, hi }
    }

    /// The degenerate interval `[x, x]`.
    pub fn point(x: f64) -> Self {
        Interval { lo: x, hi: x }
    }

    /// `centre ± radius`, rounded outward.
    pub fn around(centre: f64, radius: f64) -> Self {
        if radius == 0.0 {
            // c ± 0 is exact: no rounding to cover.
            return Interval { lo: centre, hi: centre };
        }
        Interval { lo: (centre - radius).next_down(), hi: (centre + radius).next_up() }
    }

    /// Width `hi − lo` (rounded up).
    pub fn width(&self) -> f64 {
        (self.hi - self.lo).next_up()
    }

    /// Midpoint (approximate; use [`Interval::mid_rad`] for a sound centre/radius pair).
    pub fn mid(&self) -> f64 {
        0.5 * self.lo + 0.5 * self.hi
    }

    /// A centre `c` and radius `r` with `[lo, hi] ⊆ [c − r, c + r]`; a point is its own centre
    /// with radius 0.
    pub fn mid_rad(&self) -> (f64, f64) {
        if self.lo == self.hi {
            return (self.lo, 0.0);
        }
        let c = self.mid();
        let r = (self.hi - c).max(c - self.lo).next_up();
        (c, r)
    }

    /// `max(|lo|, |hi|)` (NaN when an end is NaN).
    pub fn mag(&self) -> f64 {
        if self.is_nan() {
            return f64::NAN;
        }
        self.lo.abs().max(self.hi.abs())
    }

    /// The interval of everything: what an overflowed or NaN quantity is known to lie in.
    pub const fn unbounded() -> Self {
        Interval { lo: f64::NEG_INFINITY, hi: f64::INFINITY }
    }

    /// True when both ends are finite numbers (not ±∞, not NaN).
    pub fn is_finite(&self) -> bool {
        self.lo.is_finite() && self.hi.is_finite()
    }

    /// True when an end is NaN.
    pub fn is_nan(&self) -> bool {
        self.lo.is_nan() || self.hi.is_nan()
    }

    /// True when `x` lies in the interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }

    /// The intersection of two enclosures of the same quantity, or `None` when they are
    /// disjoint (which two sound enclosures of one real never are).
    /// A NaN operand gives a NaN interval (not the other operand).
    pub fn meet(&self, o: &Interval) -> Option<Interval> {
        if self.is_nan() || o.is_nan() {
            return Some(Interval { lo: f64::NAN, hi: f64::NAN });
        }
        let (lo, hi) = (self.lo.max(o.lo), self.hi.min(o.hi));
        (lo <= hi).then_some(Interval { lo, hi })
    }

    /// Smallest interval holding both.
    pub fn hull(&self, o: &Interval) -> Interval {
        if self.is_nan() || o.is_nan() {
            return Interval { lo: f64::NAN, hi: f64::NAN };
        }
        Interval { lo: self.lo.min(o.lo), hi: self.hi.max(o.hi) }
    }

    /// Outward-rounded sum.
    pub fn add(&self, o: &Interval) -> Interval {
        Interval { lo: (self.lo + o.lo).next_down(), hi: (self.hi + o.hi).next_up() }
    }

    /// Outward-rounded difference.
    pub fn sub(&self, o: &Interval) -> Interval {
        Interval { lo: (self.lo - o.hi).next_down(), hi: (self.hi - o.lo).next_up() }
    }

    /// Outward-rounded product.
    pub fn mul(&self, o: &Interval) -> Interval {
        if self.is_nan() || o.is_nan() {
            return Interval { lo: f64::NAN, hi: f64::NAN };
        }
        // With NaN operands excluded, a NaN product is 0 · ±∞, whose value is 0.
        let prod = |a: f64, b: f64| if a == 0.0 || b == 0.0 { 0.0 } else { a * b };
        let c = [prod(self.lo, o.lo), prod(self.lo, o.hi), prod(self.hi, o.lo), prod(self.hi, o.hi)];
        let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = c.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Interval { lo: lo.next_down(), hi: hi.next_up() }
    }

    /// Widened by a relative and absolute slack on each side (for library-function results).
    pub fn widen(&self, rel: f64, abs: f64) -> Interval {
        Interval { lo: self.lo - (self.lo.abs() * rel + abs), hi: self.hi + (self.hi.abs() * rel + abs) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: Interval = Interval { lo: f64::NAN, hi: f64::NAN };

    /// NaN is contagious: no operation turns it into a finite end (`f64::max` would).
    #[test]
    fn nan_propagates() {
        let a = Interval::new(-1.0, 2.0);
        for r in [a.hull(&NAN), NAN.hull(&a), a.mul(&NAN), NAN.mul(&a), a.add(&NAN), a.sub(&NAN)] {
            assert!(r.is_nan(), "{r:?}");
        }
        assert!(a.meet(&NAN).is_some_and(|m| m.is_nan()));
        assert!(NAN.mag().is_nan());
        assert!(!a.is_nan() && a.is_finite() && !Interval::unbounded().is_finite());
    }

    /// `0 · ±∞ = 0` (the product of 0 and any real), and an unbounded factor stays unbounded.
    #[test]
    fn zero_times_unbounded_is_zero() {
        let z = Interval::point(0.0).mul(&Interval::unbounded());
        assert!(z.contains(0.0) && z.mag() <= f64::from_bits(1), "{z:?}");
        let w = Interval::new(0.0, 1.0).mul(&Interval::new(1.0, f64::INFINITY));
        assert!(w.lo <= 0.0 && w.lo > -1e-300 && w.hi == f64::INFINITY, "{w:?}");
    }
}
