//! Activations: rigorous interval images, derivative ranges and sound linear relaxations,
//! derived from each activation's form and facts ([`zonocert_network::act`]): DeepZ's
//! parallelogram for S-shaped functions (sigmoid), a secant-slope parallelogram with a
//! rigorously bounded residual otherwise (swish, piecewise-linear clamps), and exact affine
//! pieces for a clamped affine map on an interval without a kink.
//!
//! Function values come from the platform `exp`, assumed faithful (error < 1 ulp, as glibc's
//! is); every computed value is widened by [`REL`] relative plus [`ABS`] absolute, which covers
//! the few roundings in each formula with a wide margin.
//!
//! Paper: Singh et al., "Fast and Effective Robustness Certification" (DeepZ), NeurIPS 2018.

use zonocert_domain::{Interval, Relaxation};

/// Relative slack applied to every computed function value.
pub const REL: f64 = 1e-14;
/// Absolute slack applied to every computed function value.
pub const ABS: f64 = 1e-300;

pub use zonocert_network::act::{Act, Form};

/// The rigorous side of an activation: enclosures, images, derivative ranges and sound
/// parallelograms, all derived from the activation's [`Form`] and [`zonocert_network::act::Facts`]
/// (no per-activation code here).
pub trait Enclose {
    /// An interval certainly holding f(x).
    fn eval_enclosure(self, x: f64) -> Interval;
    /// Sound bounds on f over `[l, u]`.
    fn image(self, x: Interval) -> Interval;
    /// Sound bounds on f′ over `[l, u]` (for a piecewise-linear f, the range of difference
    /// quotients of points in `[l, u]`).
    fn deriv_range(self, x: Interval) -> Interval;
    /// Sound bounds on g(x) = f(x) − λx over `[l, u]`.
    fn residual_bounds(self, lam: f64, l: f64, u: f64) -> Interval;
    /// A sound parallelogram `f(x) ∈ λx + μ ± β` on `[l, u]`.
    fn relax(self, x: Interval) -> (f64, f64, f64);
}

/// A clamped affine map's kinks (where α·x + β meets lo and hi) as enclosures; an infinite
/// clamp gives an infinite kink.
fn kinks(alpha: f64, beta: f64, lo: f64, hi: f64) -> [Interval; 2] {
    let at = |bound: f64| {
        if !bound.is_finite() || (alpha == 1.0 && beta == 0.0) {
            return Interval::point(bound);
        }
        // Two roundings (a difference and a quotient), each within half an ulp.
        let q = (bound - beta) / alpha;
        Interval::point(q).widen(4.0 * f64::EPSILON, ABS)
    };
    [at(lo), at(hi)]
}

/// The derivative of a non-identity form, enclosed (smooth forms only).
fn deriv_enclosure(f: Act, x: f64) -> Interval {
    // Derivative formulas involve a few more roundings; values are O(1).
    Interval::point(f.deriv(x)).widen(REL, 1e-15)
}

/// A slope λ for the parallelogram on `[l, u]` (any value is sound; this one is tight).
fn choose_slope(f: Act, l: f64, u: f64) -> f64 {
    if f.facts().min_end_slope {
        // DeepZ: the minimal-area parallelogram for an S-shaped function.
        f.deriv(l).min(f.deriv(u))
    } else {
        // Secant slope: exact at both ends for a narrow interval, balanced for a wide one.
        (f.eval(u) - f.eval(l)) / (u - l)
    }
}

impl Enclose for Act {
    fn eval_enclosure(self, x: f64) -> Interval {
        match self.form() {
            Form::ClampedAffine { alpha, beta, lo, hi } => {
                if alpha == 1.0 && beta == 0.0 {
                    return Interval::point(self.eval(x));
                }
                // α·x + β with two roundings; clamping is monotone, so clamp both ends.
                let y = alpha * x + beta;
                let slack = 4.0 * f64::EPSILON * ((alpha * x).abs() + beta.abs()) + ABS;
                Interval::new((y - slack).max(lo).min(hi), (y + slack).max(lo).min(hi))
            }
            Form::Logistic { .. } => Interval::point(self.eval(x)).widen(REL, ABS),
        }
    }

    fn image(self, x: Interval) -> Interval {
        let (l, u) = (x.lo, x.hi);
        let (fl, fu) = (self.eval_enclosure(l), self.eval_enclosure(u));
        let facts = self.facts();
        if matches!(self.form(), Form::ClampedAffine { .. }) || facts.increasing {
            return Interval::new(fl.lo, fu.hi);
        }
        let (mut lo, mut hi) = (fl.lo.min(fu.lo), fl.hi.max(fu.hi));
        for e in facts.extrema.iter().filter(|e| l <= e.at && e.at <= u) {
            let v = self.eval(e.at);
            if e.is_max {
                hi = hi.max(v + e.margin);
            } else {
                lo = lo.min(v - e.margin);
            }
        }
        Interval::new(lo, hi)
    }

    fn deriv_range(self, x: Interval) -> Interval {
        let (l, u) = (x.lo, x.hi);
        match self.form() {
            Form::ClampedAffine { alpha, beta, lo, hi } => {
                // Slopes of the pieces [l, u] touches (a range touching a kink sees both sides).
                let [k1, k2] = kinks(alpha, beta, lo, hi);
                let outer = |bound: f64| if bound.is_finite() { 0.0 } else { alpha };
                let pieces = [(l <= k1.hi, outer(lo)), (u >= k1.lo && l <= k2.hi, alpha), (u >= k2.lo, outer(hi))];
                let seen = pieces.iter().filter(|p| p.0).map(|p| p.1);
                let (a, b) = seen.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), s| (a.min(s), b.max(s)));
                if a <= b {
                    Interval::new(a, b)
                } else {
                    // No piece seen: a NaN bound. Every slope the function has.
                    Interval::new(0.0, alpha)
                }
            }
            Form::Logistic { .. } => {
                let facts = self.facts();
                let (dl, du) = (deriv_enclosure(self, l), deriv_enclosure(self, u));
                let (mut lo, mut hi) = (dl.lo.min(du.lo), dl.hi.max(du.hi));
                for t in facts.deriv_turns.iter().filter(|t| l <= t.at && t.at <= u) {
                    let v = self.deriv(t.at);
                    if t.is_max {
                        hi = hi.max(v + t.margin);
                    } else {
                        lo = lo.min(v - t.margin);
                    }
                }
                Interval::new(lo.max(facts.deriv_hull.0), hi.min(facts.deriv_hull.1))
            }
        }
    }

    /// Endpoints and kinks (for a piecewise-linear f, where g takes its extremes), plus the
    /// roots of f′ = λ, found by bisection on each piece where f′ is monotone; a root's (or an
    /// inexact kink's) bracket is covered by a Lipschitz bound on g.
    fn residual_bounds(self, lam: f64, l: f64, u: f64) -> Interval {
        let g = |x: f64| -> Interval {
            let f = self.eval_enclosure(x);
            let lx = lam * x;
            let slack = 2.0 * f64::EPSILON * (lx.abs() + f.mag()) + ABS;
            Interval::new(f.lo - lx - slack, f.hi - lx + slack)
        };
        let mut out = g(l).hull(&g(u));
        let (slopes, kink_list) = match self.form() {
            Form::ClampedAffine { alpha, beta, lo, hi } => ((0.0, alpha), kinks(alpha, beta, lo, hi)),
            Form::Logistic { .. } => (self.facts().deriv_hull, [Interval::point(f64::INFINITY); 2]),
        };
        // g′ = f′ − λ lies in the derivative hull shifted by λ: a Lipschitz constant of g.
        let lip = (slopes.0 - lam).abs().max((slopes.1 - lam).abs());
        let around = |a: f64, b: f64| {
            // The factor covers the product's and the difference's rounding.
            let reach = lip * (b - a) * (1.0 + 1e-12) + ABS;
            let ga = g(a);
            Interval::new(ga.lo - reach, ga.hi + reach)
        };
        if let Form::Logistic { .. } = self.form() {
            let mut cuts = vec![l];
            cuts.extend(self.facts().deriv_turns.iter().map(|t| t.at).filter(|&t| l < t && t < u));
            cuts.push(u);
            for w in cuts.windows(2) {
                let (mut a, mut b) = (w[0], w[1]);
                let (fa, fb) = (self.deriv(a) - lam, self.deriv(b) - lam);
                if fa == 0.0 || fb == 0.0 || (fa > 0.0) != (fb > 0.0) {
                    for _ in 0..80 {
                        let m = 0.5 * (a + b);
                        if m <= a || m >= b {
                            break;
                        }
                        let fm = self.deriv(m) - lam;
                        if (fm > 0.0) == (fa > 0.0) {
                            a = m;
                        } else {
                            b = m;
                        }
                    }
                    out = out.hull(&around(a, b));
                }
                out = out.hull(&g(w[1]));
            }
        }
        // A piecewise-linear g takes its extremes at the ends and the kinks.
        for k in kink_list.iter().filter(|k| k.lo.is_finite() && k.hi.is_finite()) {
            let (a, b) = (k.lo.clamp(l, u), k.hi.clamp(l, u));
            out = out.hull(&if a == b { g(a) } else { around(a, b) });
        }
        // A root whose sign test was decided by rounding (f′ is enclosed within about
        // 1.2e-14, `deriv_enclosure`) moves g by at most that much times the range's width:
        // the margin is 8× that, and never more than the 1e-15 an O(1) range needs, so a range
        // of tiny values keeps a margin of its own scale.
        out.widen(1e-14, (1e-13 * (u - l)).min(1e-15) + ABS)
    }

    fn relax(self, x: Interval) -> (f64, f64, f64) {
        let (l, u) = (x.lo, x.hi);
        if !(l < u) {
            let v = self.eval_enclosure(l);
            let (m, r) = v.mid_rad();
            return (0.0, m, r);
        }
        if let Form::ClampedAffine { alpha, beta, lo, hi } = self.form() {
            // Within one piece the function is exactly affine.
            let [k1, k2] = kinks(alpha, beta, lo, hi);
            if u <= k1.lo {
                return (0.0, lo, 0.0);
            }
            if l >= k2.hi {
                return (0.0, hi, 0.0);
            }
            if l >= k1.hi && u <= k2.lo {
                return (alpha, beta, 0.0);
            }
        }
        let lam = choose_slope(self, l, u);
        let lam = if lam.is_finite() { lam } else { 0.0 };
        let r = self.residual_bounds(lam, l, u);
        let (m, b) = r.mid_rad();
        (lam, m, b)
    }
}

/// Per-neuron relaxations for a whole layer. With `interval_only`, the slope is 0 and the
/// parallelogram is the interval image (the interval domain's transformer).
pub fn relaxation(f: Act, bounds: &[Interval], interval_only: bool) -> Relaxation {
    let mut slope = Vec::with_capacity(bounds.len());
    let mut offset = Vec::with_capacity(bounds.len());
    let mut radius = Vec::with_capacity(bounds.len());
    for b in bounds {
        // For rounding-sized widths the interval image is as tight and far cheaper. Relative to
        // the values only: a narrow range of tiny values (a small-signal swish) is not rounding.
        let tiny = b.hi - b.lo <= 1e-9 * b.lo.abs().max(b.hi.abs());
        let (l, m, r) = if interval_only || tiny {
            let (m, r) = f.image(*b).mid_rad();
            (0.0, m, r)
        } else {
            f.relax(*b)
        };
        slope.push(l);
        offset.push(m);
        radius.push(r);
    }
    Relaxation { slope, offset, radius }
}

/// Per neuron, replaces a sloped relaxation by the interval image `f([l, u])` when the latter
/// is less than half of what the slope gives on a zonotope of radius `zonotope_radius`. That
/// happens when the zonotope's range is much wider than the (met) bounds `[l, u]`: a small
/// slope times a huge range can exceed a bounded function's whole range. A slightly narrower
/// image is not taken: on a monotone stretch it always is, and it would drop the neuron's
/// correlations.
pub fn prefer_interval_image(f: Act, bounds: &[Interval], zonotope_radius: &[f64], rel: &mut Relaxation) {
    for (j, b) in bounds.iter().enumerate() {
        if rel.slope[j] == 0.0 {
            continue;
        }
        let sloped = rel.slope[j].abs() * zonotope_radius[j] + rel.radius[j];
        let (m, r) = f.image(*b).mid_rad();
        if 2.0 * r < sloped {
            rel.slope[j] = 0.0;
            rel.offset[j] = m;
            rel.radius[j] = r;
        }
    }
}
