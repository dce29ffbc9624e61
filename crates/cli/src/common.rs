//! Arguments and helpers shared by the subcommands.

use anyhow::{Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use zonocert_network::{data, onnx, Network};

/// The model shipped with zonocert, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/efficientnet_b0_mnist.onnx";

/// `--model`.
#[derive(Args, Clone)]
pub struct ModelArg {
    /// ONNX model (N×1×28×28 input in [0, 1], 10 logits out).
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
}

impl ModelArg {
    /// Loads and imports the model, with the path in any error.
    pub fn load(&self) -> Result<Network> {
        let net = onnx::load(&self.model).with_context(|| format!("loading model {}", self.model.display()))?;
        Ok(net)
    }
}

/// Where one image comes from: an MNIST test image or a PNG file.
#[derive(Args, Clone)]
pub struct ImageArg {
    /// Directory holding the MNIST IDX files (t10k-images-idx3-ubyte[.gz], …).
    #[arg(long, requires = "index", conflicts_with = "image")]
    pub mnist: Option<PathBuf>,
    /// Index of the test image (0-based) when reading from --mnist.
    #[arg(long, requires = "mnist")]
    pub index: Option<usize>,
    /// A 28×28 8-bit greyscale PNG.
    #[arg(long)]
    pub image: Option<PathBuf>,
}

/// One image's bytes and, for MNIST, its label.
pub struct Image {
    /// 784 bytes, row-major.
    pub pixels: Vec<u8>,
    /// The label, when known.
    pub label: Option<u8>,
    /// Human-readable origin for reports.
    pub origin: String,
}

impl ImageArg {
    /// True when an image source was given.
    pub fn given(&self) -> bool {
        self.image.is_some() || self.mnist.is_some()
    }

    /// Reads the selected image.
    pub fn load(&self) -> Result<Image> {
        if let Some(p) = &self.image {
            let pixels = data::read_png(p)?;
            return Ok(Image { pixels, label: None, origin: p.display().to_string() });
        }
        match (&self.mnist, self.index) {
            (Some(dir), Some(i)) => {
                let set = load_mnist(dir)?;
                let pixels = set.image(i)?.to_vec();
                Ok(Image { pixels, label: Some(set.labels[i]), origin: format!("mnist test #{i}") })
            }
            _ => anyhow::bail!("no image given: pass --image F.png, or --mnist DIR --index I"),
        }
    }
}

/// Loads the MNIST test split with the directory in any error.
pub fn load_mnist(dir: &Path) -> Result<data::Mnist> {
    data::Mnist::test(dir).with_context(|| format!("reading MNIST test set from {}", dir.display()))
}

/// Checks the model maps one 1×28×28 image to a vector of class scores.
pub fn check_classifier(net: &Network) -> Result<usize> {
    if net.input_shape != [1, 28, 28] {
        anyhow::bail!("model input is {:?} per sample; zonocert expects 1×28×28 (MNIST)", net.input_shape);
    }
    match net.output_shape().as_slice() {
        [k] if *k >= 2 => Ok(*k),
        other => anyhow::bail!("model output is {other:?} per sample; expected a vector of class scores"),
    }
}

/// Writes a file through a temporary sibling and a rename, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("out")));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
