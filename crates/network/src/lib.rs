//! The network side of zonocert: a typed, shape-checked IR for the convolutional networks
//! zonocert certifies, an importer for ONNX as PyTorch exports it (with constant folding of
//! shape arithmetic), fusion passes (Swish, squeeze-excite, BatchNorm folding), a concrete
//! executor in `f32` and `f64`, and readers for MNIST IDX files and greyscale PNGs.
//!
//! Architecture invariant: this crate knows nothing of abstract domains. The kernels in
//! [`kernels`] are written over a batch of samples so the abstract domains can apply affine
//! layers to all zonotope generators at once.

pub mod act;
pub mod data;
pub mod error;
pub mod exec;
pub mod ir;
pub mod kernels;
pub mod onnx;
pub mod passes;
pub mod values;

pub use act::Act;
pub use error::{DataError, ImportError};
pub use exec::Executor;
pub use ir::{Layer, Network, Op, Shape, ValueId};
pub use values::ValueStore;

/// The ONNX protobuf messages, generated from the committed `proto/onnx.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}
