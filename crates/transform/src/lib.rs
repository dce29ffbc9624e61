//! Sound transformers for every op of the zonocert IR, in the interval, zonotope and
//! differential domains, and the analyses built from them: `bounds` (L∞ robustness) and
//! per-pixel bit-flip sensitivity.
//!
//! One file per op family: [`maps`] (affine layers: conv, dense, per-channel affine, pooling,
//! padding, reshape), [`activation`] (every activation, from its form and facts), [`softmax`]; products and sums are
//! the domain's own operations. [`analysis`] dispatches on ops with one exhaustive match.
//!
//! Architecture invariant: no file or terminal I/O here, and no LP solver.

pub mod activation;
pub mod analysis;
pub mod carried;
pub mod falsify;
pub mod float32;
pub mod maps;
pub mod precise;
pub mod sensitivity;
pub mod softmax;

pub use analysis::{differential, forward, Domain, Forward};
pub use sensitivity::{Certified, Certifier, CertifyPixel, Method, PixelBound, Region, Settings};
