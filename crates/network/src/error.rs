//! Typed errors: callers can tell an unsupported op from a bad shape from a corrupt file.

use std::path::PathBuf;
use thiserror::Error;

/// Why an ONNX model could not be turned into a [`crate::Network`].
#[derive(Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read model file {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// The bytes are not a valid ONNX protobuf (truncated, random, or another format).
    #[error("{path}: not a valid ONNX model (protobuf decode failed: {reason})")]
    Decode { path: PathBuf, reason: String },
    /// The graph uses an op the importer does not handle.
    #[error("node '{node}': unsupported op type '{op}' (supported: {supported})")]
    UnsupportedOp { node: String, op: String, supported: String },
    /// The op is known but used in a way zonocert cannot represent (e.g. a dynamic weight).
    #[error("node '{node}' ({op}): {reason}")]
    Unsupported { node: String, op: String, reason: String },
    /// Shapes that do not fit together.
    #[error("node '{node}' ({op}): shape error: {reason}")]
    Shape { node: String, op: String, reason: String },
    /// A node reads a value no node or initializer produces.
    #[error("node '{node}' ({op}): input '{input}' is not produced by any node, initializer or graph input")]
    MissingInput { node: String, op: String, input: String },
    /// The graph has a cycle.
    #[error("the graph has a cycle through node '{node}'")]
    Cycle { node: String },
    /// A weight is NaN or infinite.
    #[error("initializer '{name}' holds a non-finite value ({value}) at flat index {index}")]
    NonFinite { name: String, index: usize, value: f64 },
    /// Something wrong with the graph as a whole (inputs, outputs, element types).
    #[error("model graph: {0}")]
    Graph(String),
}

/// Why an image or data set could not be read.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Io { path: PathBuf, cause: std::io::Error },
    /// The file is not a well-formed IDX file of the expected kind.
    #[error("{path}: bad IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    /// The PNG is unreadable or not a 28×28 greyscale image.
    #[error("{path}: bad image: {reason}")]
    Image { path: PathBuf, reason: String },
    /// An index past the end of the data set.
    #[error("index {index} is out of range: the data set has {len} images")]
    IndexOutOfRange { index: usize, len: usize },
}
