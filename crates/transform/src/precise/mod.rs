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
//! Two backends compute the centres: [`fixed`] (256-bit fixed point, the default) and
//! [`bigfloat`] (`BigFloat` from `astro-float` at any precision), which also serves as the
//! fallback and computes the final softmax; [`ball`] holds what both share. This module is the
//! certifier that drives them.
//!
//! What is guaranteed: for the network as stored in the IR (weights are exact binary values),
//! every returned ball `[c − r, c + r]` contains the exact real value. Assumptions of the
//! `BigFloat` backend: the basic operations of `astro-float` (add, sub, mul, div) at precision
//! `p` are correctly rounded to nearest, as its documentation states; the bound allows four
//! times that error (`U = 2^{2−p}` relative). The exponential is not taken from the library:
//! it is computed from basic operations with an explicit truncation and rounding bound.

pub mod ball;
pub mod bigfloat;
pub mod fixed;

pub use ball::{enclose, Balls};
use bigfloat::RM;
pub use bigfloat::{Arithmetic, PreciseNetwork};
pub use fixed::{FixedNetwork, Fx};

use crate::sensitivity::{Certified, CertifyPixel};
use ball::{magnitude, up};
use zonocert_domain::Interval;
use zonocert_network::Network;

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
    /// The fast backend, when the network suits it (see [`fixed`]).
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

    /// Certifies flips of `bit` from now on (the unflipped image's evaluation does not depend
    /// on it).
    pub fn set_bit(&mut self, bit: u8) {
        self.bit = bit;
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

impl CertifyPixel for PreciseCertifier<'_> {
    fn certify(&self, i: usize) -> Certified {
        let r = self.pixel(i);
        Certified {
            pixel: r.pixel,
            upper: r.upper,
            lower: Some(r.lower),
            class: r.class,
            screened: false,
            mean_value_bound: None,
            logit_delta_bound: None,
            overflow: false,
        }
    }
}
