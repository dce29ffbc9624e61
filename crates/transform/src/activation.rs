//! Unary nonlinearities (sigmoid, swish, ReLU): rigorous interval images, derivative ranges and
//! sound linear relaxations (DeepZ's parallelogram for sigmoid; a secant-slope parallelogram
//! with a rigorously bounded residual for the non-monotone swish).
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

/// The unary functions the IR uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unary {
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// x · sigmoid(x).
    Swish,
    /// max(x, 0).
    Relu,
}

/// Abscissa of swish's minimum, root of swish′ (≈ −1.2785).
const SWISH_ARGMIN: f64 = -1.278_464_542_761_074;
/// swish′ is decreasing, increasing, decreasing on (−∞, −A], [−A, A], [A, ∞); A ≈ 2.3994.
const SWISH_D_TURN: f64 = 2.399_357_280_515_467;

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Unary {
    /// f(x) in `f64` (approximate).
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Unary::Sigmoid => sig(x),
            Unary::Swish => x * sig(x),
            Unary::Relu => x.max(0.0),
        }
    }

    /// f′(x) in `f64` (approximate; ReLU′(0) taken as 0).
    pub fn deriv(self, x: f64) -> f64 {
        match self {
            Unary::Sigmoid => {
                let s = sig(x);
                s * (1.0 - s)
            }
            Unary::Swish => {
                let s = sig(x);
                s * (1.0 + x * (1.0 - s))
            }
            Unary::Relu => (x > 0.0) as u8 as f64,
        }
    }

    /// An interval certainly holding f(x).
    pub fn eval_enclosure(self, x: f64) -> Interval {
        if self == Unary::Relu {
            return Interval::point(x.max(0.0));
        }
        Interval::point(self.eval(x)).widen(REL, ABS)
    }

    fn deriv_enclosure(self, x: f64) -> Interval {
        if self == Unary::Relu {
            return Interval::point(self.deriv(x));
        }
        // Derivative formulas involve a few more roundings; values are O(1).
        Interval::point(self.deriv(x)).widen(REL, 1e-15)
    }

    /// Sound bounds on f over `[l, u]`.
    pub fn image(self, x: Interval) -> Interval {
        let (l, u) = (x.lo, x.hi);
        match self {
            Unary::Relu => Interval::new(l.max(0.0), u.max(0.0)),
            Unary::Sigmoid => Interval::new(self.eval_enclosure(l).lo, self.eval_enclosure(u).hi),
            Unary::Swish => {
                let (fl, fu) = (self.eval_enclosure(l), self.eval_enclosure(u));
                let hi = fl.hi.max(fu.hi);
                let lo = if l < SWISH_ARGMIN && SWISH_ARGMIN < u {
                    // The minimum value −0.27846454276107…, with margin for the constant.
                    self.eval(SWISH_ARGMIN) - 1e-12
                } else {
                    fl.lo.min(fu.lo)
                };
                Interval::new(lo, hi)
            }
        }
    }

    /// Sound bounds on f′ over `[l, u]` (for ReLU, the range of difference quotients).
    pub fn deriv_range(self, x: Interval) -> Interval {
        let (l, u) = (x.lo, x.hi);
        match self {
            // Difference quotients of ReLU lie in [0, 1]; a range touching 0 can see both ends.
            Unary::Relu => Interval::new(if l <= 0.0 { 0.0 } else { 1.0 }, if u >= 0.0 { 1.0 } else { 0.0 }),
            Unary::Sigmoid => {
                let (dl, du) = (self.deriv_enclosure(l), self.deriv_enclosure(u));
                let hi = if l <= 0.0 && 0.0 <= u { 0.25 } else { dl.hi.max(du.hi) };
                Interval::new(dl.lo.min(du.lo).max(0.0), hi)
            }
            Unary::Swish => {
                let (dl, du) = (self.deriv_enclosure(l), self.deriv_enclosure(u));
                let mut lo = dl.lo.min(du.lo);
                let mut hi = dl.hi.max(du.hi);
                if l < -SWISH_D_TURN && -SWISH_D_TURN < u {
                    lo = lo.min(self.deriv(-SWISH_D_TURN) - 1e-9);
                }
                if l < SWISH_D_TURN && SWISH_D_TURN < u {
                    hi = hi.max(self.deriv(SWISH_D_TURN) + 1e-9);
                }
                Interval::new(lo, hi)
            }
        }
    }

    /// Break points splitting the real line into pieces where f′ is monotone.
    fn deriv_turns(self) -> &'static [f64] {
        match self {
            Unary::Sigmoid => &[0.0],
            Unary::Swish => &[-SWISH_D_TURN, SWISH_D_TURN],
            Unary::Relu => &[],
        }
    }

    /// A slope λ for the parallelogram on `[l, u]` (any value is sound; this one is tight).
    fn choose_slope(self, l: f64, u: f64) -> f64 {
        match self {
            // DeepZ: the minimal-area parallelogram for an S-shaped function.
            Unary::Sigmoid => self.deriv(l).min(self.deriv(u)),
            // Secant slope: exact at both ends for a narrow interval, balanced for a wide one.
            Unary::Swish => (self.eval(u) - self.eval(l)) / (u - l),
            Unary::Relu => u / (u - l),
        }
    }

    /// Sound bounds on g(x) = f(x) − λx over `[l, u]`: endpoints plus the roots of f′ = λ,
    /// found by bisection on each piece where f′ is monotone; a root's bracket is covered by a
    /// Lipschitz bound on g.
    pub fn residual_bounds(self, lam: f64, l: f64, u: f64) -> Interval {
        let g = |x: f64| -> Interval {
            let f = self.eval_enclosure(x);
            let lx = lam * x;
            let slack = 2.0 * f64::EPSILON * (lx.abs() + f.mag()) + ABS;
            Interval::new(f.lo - lx - slack, f.hi - lx + slack)
        };
        let mut out = g(l).hull(&g(u));
        let lip = 1.1 + lam.abs();
        let mut cuts = vec![l];
        cuts.extend(self.deriv_turns().iter().copied().filter(|&t| l < t && t < u));
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
                let reach = lip * (b - a) * (1.0 + 1e-12) + 1e-15;
                let ga = g(a);
                out = out.hull(&Interval::new(ga.lo - reach, ga.hi + reach));
            }
            out = out.hull(&g(w[1]));
        }
        if self == Unary::Relu {
            // ReLU residual on [l, u] with l < 0 < u: extremes at 0 and the ends.
            out = out.hull(&g(0.0_f64.clamp(l, u)));
        }
        // A root whose sign test was decided by rounding lies within ~1e-16 of a cut point,
        // where g is flat to second order: a small margin covers it.
        out.widen(1e-14, 1e-15)
    }

    /// A sound parallelogram `f(x) ∈ λx + μ ± β` on `[l, u]`.
    pub fn relax(self, x: Interval) -> (f64, f64, f64) {
        let (l, u) = (x.lo, x.hi);
        if !(l < u) {
            let v = self.eval_enclosure(l);
            let (m, r) = v.mid_rad();
            return (0.0, m, r);
        }
        if self == Unary::Relu {
            if u <= 0.0 {
                return (0.0, 0.0, 0.0);
            }
            if l >= 0.0 {
                return (1.0, 0.0, 0.0);
            }
        }
        let lam = self.choose_slope(l, u);
        let lam = if lam.is_finite() { lam } else { 0.0 };
        let r = self.residual_bounds(lam, l, u);
        let (m, b) = r.mid_rad();
        (lam, m, b)
    }
}

/// Per-neuron relaxations for a whole layer. With `interval_only`, the slope is 0 and the
/// parallelogram is the interval image (the interval domain's transformer).
pub fn relaxation(f: Unary, bounds: &[Interval], interval_only: bool) -> Relaxation {
    let mut slope = Vec::with_capacity(bounds.len());
    let mut offset = Vec::with_capacity(bounds.len());
    let mut radius = Vec::with_capacity(bounds.len());
    for b in bounds {
        // For rounding-sized widths the interval image is as tight and far cheaper.
        let tiny = b.hi - b.lo <= 1e-9 * (1.0 + b.lo.abs().max(b.hi.abs()));
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
pub fn prefer_interval_image(f: Unary, bounds: &[Interval], zonotope_radius: &[f64], rel: &mut Relaxation) {
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
