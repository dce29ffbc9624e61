//! Abstract domains for zonocert: outward-rounded intervals and zonotopes over shared noise
//! symbols, in `f64`, with every operation's own rounding error accounted for.
//!
//! Architecture invariant: this crate knows nothing of networks, layers or files. Linear maps
//! arrive through the [`LinearMap`] trait; nonlinear functions through per-neuron linear
//! relaxations ([`Relaxation`]).
//!
//! # What is guaranteed
//! For every operation `op` and every concrete point `x` in the concretisation of the inputs,
//! the real-valued `op(x)` lies in the concretisation of the output, provided that
//! (1) the [`LinearMap`] implementation meets its documented contract, and (2) relaxations are
//! sound in real arithmetic (the transformer crate proves its own). Rounding of the domain's
//! own arithmetic (round-to-nearest `f64`) is covered by explicit error terms using the
//! standard bound |fl(Σ aᵢbᵢ) − Σ aᵢbᵢ| ≤ γₙ Σ|aᵢbᵢ|, γₙ = nu/(1 − nu), u = 2⁻⁵³, plus an
//! absolute term for underflow.

pub mod interval;
pub mod zonotope;

pub use interval::Interval;
pub use zonotope::{LinearMap, Relaxation, SymbolPool, Zonotope};

/// Unit roundoff of `f64` (round to nearest).
pub const U: f64 = f64::EPSILON / 2.0;

/// γₙ = nu / (1 − nu), rounded up: the relative error bound of an `n`-term dot product.
pub fn gamma(n: usize) -> f64 {
    let nu = (n as f64 + 1.0) * U;
    (nu / (1.0 - nu)).next_up()
}

/// Smallest positive subnormal, the absolute error of one multiplication that underflows.
pub const ETA: f64 = f64::from_bits(1);
