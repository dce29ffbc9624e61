//! Elementwise activation functions: the one place each is defined.
//!
//! No engine matches on an activation's name. The executor evaluates [`Act::eval`] and
//! [`Act::deriv`]; the rigorous engines (interval and zonotope transformers, the differential
//! analysis, the precise ball arithmetic, the LP strips) read how the function is built
//! ([`Act::form`]) and the facts its relaxations need ([`Act::facts`]). Adding an activation is
//! therefore a variant here with its form, facts and name, its ONNX mapping in `onnx.rs`, and
//! its reference in the soundness tests (ARCHITECTURE.md, "Adding an op").

use crate::kernels::{sigmoid, Real};

/// An elementwise activation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Act {
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// x · sigmoid(x) (SiLU), recognised from `Mul(x, Sigmoid(x))`.
    Swish,
    /// max(0, min(1, α·x + β)) (ONNX `HardSigmoid`; PyTorch's `hardsigmoid` is α = 1/6, β = 1/2).
    HardSigmoid {
        /// The slope α (positive).
        alpha: f64,
        /// The offset β.
        beta: f64,
    },
    /// min(max(x, lo), hi) (ONNX `Clip` with constant bounds; `ReLU6` is lo = 0, hi = 6).
    Clip {
        /// The lower bound (may be −∞).
        lo: f64,
        /// The upper bound (may be +∞).
        hi: f64,
    },
}

/// How an activation is built from parts the rigorous engines know how to evaluate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Form {
    /// clamp(α·x + β, lo, hi) with α > 0 and lo ≤ hi (either bound may be infinite):
    /// piecewise linear and non-decreasing, with kinks where α·x + β meets a finite bound.
    ClampedAffine {
        /// The slope α of the middle piece.
        alpha: f64,
        /// The offset β of the middle piece.
        beta: f64,
        /// The lower clamp.
        lo: f64,
        /// The upper clamp.
        hi: f64,
    },
    /// σ(x) or, with `times_x`, x · σ(x), where σ is the logistic function.
    Logistic {
        /// Whether the logistic is multiplied by its argument (swish).
        times_x: bool,
    },
}

/// A point where a function (f or f′) has a local extremum, for bounding it over an interval
/// that contains the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extremum {
    /// The abscissa (need not be exact: `margin` covers the error of the computed value there).
    pub at: f64,
    /// Added to (a maximum) or subtracted from (a minimum) the value computed at `at`.
    pub margin: f64,
    /// Whether it is a maximum (else a minimum).
    pub is_max: bool,
}

/// The facts about a smooth activation that its relaxations use. Piecewise-linear activations
/// ([`Form::ClampedAffine`]) need none: their kinks and slopes follow from the form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts {
    /// Whether f is non-decreasing (then f([l, u]) = [f(l), f(u)]).
    pub increasing: bool,
    /// Interior local extrema of f.
    pub extrema: &'static [Extremum],
    /// Local extrema of f′: they split the line into pieces on which f′ is monotone.
    pub deriv_turns: &'static [Extremum],
    /// An enclosure of f′ over the whole line (its largest magnitude is a Lipschitz constant).
    pub deriv_hull: (f64, f64),
    /// Whether the parallelogram's slope is the smaller end derivative (DeepZ, for S-shaped
    /// functions) rather than the secant.
    pub min_end_slope: bool,
}

/// Abscissa of swish's minimum, root of swish′ (≈ −1.2785).
pub const SWISH_ARGMIN: f64 = -1.278_464_542_761_074;
/// swish′ is decreasing, increasing, decreasing on (−∞, −A], [−A, A], [A, ∞); A ≈ 2.3994.
pub const SWISH_D_TURN: f64 = 2.399_357_280_515_467;

const SIGMOID_FACTS: Facts = Facts {
    increasing: true,
    extrema: &[],
    // σ′ peaks at σ′(0) = 1/4, which f64 computes exactly.
    deriv_turns: &[Extremum { at: 0.0, margin: 0.0, is_max: true }],
    deriv_hull: (0.0, 0.25),
    min_end_slope: true,
};

const SWISH_FACTS: Facts = Facts {
    increasing: false,
    // The minimum value −0.27846454276107…, with margin for the constant.
    extrema: &[Extremum { at: SWISH_ARGMIN, margin: 1e-12, is_max: false }],
    deriv_turns: &[Extremum { at: -SWISH_D_TURN, margin: 1e-9, is_max: false }, Extremum { at: SWISH_D_TURN, margin: 1e-9, is_max: true }],
    // swish′ lies in [−0.09988, 1.09988].
    deriv_hull: (-0.1, 1.1),
    min_end_slope: false,
};

const NO_FACTS: Facts = Facts { increasing: true, extrema: &[], deriv_turns: &[], deriv_hull: (0.0, 0.0), min_end_slope: false };

impl Act {
    /// How the function is built.
    pub fn form(self) -> Form {
        match self {
            Act::Relu => Form::ClampedAffine { alpha: 1.0, beta: 0.0, lo: 0.0, hi: f64::INFINITY },
            Act::Sigmoid => Form::Logistic { times_x: false },
            Act::Swish => Form::Logistic { times_x: true },
            Act::HardSigmoid { alpha, beta } => Form::ClampedAffine { alpha, beta, lo: 0.0, hi: 1.0 },
            Act::Clip { lo, hi } => Form::ClampedAffine { alpha: 1.0, beta: 0.0, lo, hi },
        }
    }

    /// The facts about a smooth activation (see [`Facts`]); for a piecewise-linear one, facts
    /// with no extrema, no turns and an empty derivative hull, which no engine reads.
    pub fn facts(self) -> Facts {
        match self.form() {
            Form::Logistic { times_x: false } => SIGMOID_FACTS,
            Form::Logistic { times_x: true } => SWISH_FACTS,
            Form::ClampedAffine { .. } => NO_FACTS,
        }
    }

    /// The name in layer listings.
    pub fn name(self) -> &'static str {
        match self {
            Act::Relu => "Relu",
            Act::Sigmoid => "Sigmoid",
            Act::Swish => "Swish",
            Act::HardSigmoid { .. } => "HardSigmoid",
            Act::Clip { .. } => "Clip",
        }
    }

    /// Why the parameters do not define a function of the supported forms, if they do not.
    pub fn check(self) -> Result<(), String> {
        match self.form() {
            Form::ClampedAffine { alpha, beta, lo, hi } => {
                if !(alpha > 0.0 && alpha.is_finite() && beta.is_finite()) {
                    Err(format!("slope {alpha} and offset {beta}: the slope must be positive and both finite"))
                } else if lo.is_nan() || hi.is_nan() || lo > hi || lo == f64::INFINITY || hi == f64::NEG_INFINITY {
                    Err(format!("bounds [{lo}, {hi}] are not an interval meeting the real line"))
                } else {
                    Ok(())
                }
            }
            Form::Logistic { .. } => Ok(()),
        }
    }

    /// f(x) in `T` (the executor's arithmetic; approximate).
    pub fn eval<T: Real>(self, x: T) -> T {
        match self.form() {
            Form::Logistic { times_x: false } => sigmoid(x),
            Form::Logistic { times_x: true } => x * sigmoid(x),
            Form::ClampedAffine { alpha, beta, lo, hi } => {
                let y = if alpha == 1.0 && beta == 0.0 { x } else { T::cast(alpha) * x + T::cast(beta) };
                // A NaN input gives the lower bound, as ReLU's `max` did.
                use std::cmp::Ordering::{Greater, Less};
                let y = if lo.is_finite() && y.partial_cmp(&T::cast(lo)) != Some(Greater) { T::cast(lo) } else { y };
                if hi.is_finite() && y.partial_cmp(&T::cast(hi)) != Some(Less) {
                    T::cast(hi)
                } else {
                    y
                }
            }
        }
    }

    /// f′(x) in `T` (approximate; 0 at a kink).
    pub fn deriv<T: Real>(self, x: T) -> T {
        match self.form() {
            Form::Logistic { times_x } => {
                let s = sigmoid(x);
                if times_x {
                    s * (T::one() + x * (T::one() - s))
                } else {
                    s * (T::one() - s)
                }
            }
            Form::ClampedAffine { alpha, beta, lo, hi } => {
                let y = if alpha == 1.0 && beta == 0.0 { x } else { T::cast(alpha) * x + T::cast(beta) };
                let inside = (!lo.is_finite() || y > T::cast(lo)) && (!hi.is_finite() || y < T::cast(hi));
                if inside {
                    T::cast(alpha)
                } else {
                    T::zero()
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamped_affine_forms_match_their_definitions() {
        let hs = Act::HardSigmoid { alpha: 0.2, beta: 0.5 };
        let relu6 = Act::Clip { lo: 0.0, hi: 6.0 };
        for &x in &[-10.0, -2.5, -1.0, 0.0, 0.3, 2.5, 5.0, 7.0] {
            assert_eq!(Act::Relu.eval(x), f64::max(x, 0.0));
            assert_eq!(hs.eval(x), (0.2 * x + 0.5).clamp(0.0, 1.0));
            assert_eq!(relu6.eval(x), x.clamp(0.0, 6.0));
        }
        assert_eq!(hs.deriv(0.0), 0.2);
        assert_eq!(hs.deriv(-3.0), 0.0);
        assert_eq!(relu6.deriv(7.0), 0.0);
        assert_eq!(Act::Relu.deriv(0.0), 0.0);
        assert_eq!(Act::Relu.eval(f64::NAN), 0.0);
    }

    #[test]
    fn check_rejects_what_the_engines_cannot_handle() {
        assert!(Act::HardSigmoid { alpha: 0.0, beta: 0.5 }.check().is_err());
        assert!(Act::HardSigmoid { alpha: -1.0, beta: 0.5 }.check().is_err());
        assert!(Act::Clip { lo: 1.0, hi: 0.0 }.check().is_err());
        assert!(Act::Clip { lo: f64::NAN, hi: 0.0 }.check().is_err());
        assert!(Act::Clip { lo: f64::NEG_INFINITY, hi: 6.0 }.check().is_ok());
        assert!(Act::Swish.check().is_ok());
    }
}
