//! Input data: MNIST IDX files (gzip or raw) and 28×28 greyscale PNGs.
//!
//! Images are returned as bytes (0–255); [`to_unit`] maps them to the model's [0, 1] scale.

use crate::error::DataError;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Image side length.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;

/// A set of 28×28 greyscale images with labels.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// `len × 784` bytes, row-major.
    pub images: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl Mnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> Result<&[u8], DataError> {
        if i >= self.len() {
            return Err(DataError::IndexOutOfRange { index: i, len: self.len() });
        }
        Ok(&self.images[i * PIXELS..(i + 1) * PIXELS])
    }

    /// Loads the official test split (`t10k-*`) from `dir`.
    pub fn test(dir: &Path) -> Result<Mnist, DataError> {
        Self::split(dir, "t10k")
    }

    /// Loads the training split (`train-*`) from `dir`.
    pub fn train(dir: &Path) -> Result<Mnist, DataError> {
        Self::split(dir, "train")
    }

    fn split(dir: &Path, prefix: &str) -> Result<Mnist, DataError> {
        let images = read_idx(&find(dir, &format!("{prefix}-images-idx3-ubyte"))?, 3)?;
        let labels = read_idx(&find(dir, &format!("{prefix}-labels-idx1-ubyte"))?, 1)?;
        if images.dims[1..] != [SIDE, SIDE] {
            return Err(DataError::Idx { path: dir.join(prefix), reason: format!("images are {:?}, expected N×28×28", images.dims) });
        }
        if images.dims[0] != labels.dims[0] {
            return Err(DataError::Idx {
                path: dir.join(prefix),
                reason: format!("{} images but {} labels", images.dims[0], labels.dims[0]),
            });
        }
        if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
            return Err(DataError::Idx { path: dir.join(prefix), reason: format!("label {bad} is not a digit") });
        }
        Ok(Mnist { images: images.data, labels: labels.data })
    }
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf, DataError> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::Io {
        path: dir.join(format!("{stem}[.gz]")),
        cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file (looked for the .gz and the raw file)"),
    })
}

/// A decoded IDX file of unsigned bytes.
#[derive(Debug, Clone)]
pub struct Idx {
    /// Dimensions from the header.
    pub dims: Vec<usize>,
    /// The payload.
    pub data: Vec<u8>,
}

/// Reads an IDX file of `u8` (type code 0x08) with `rank` dimensions; gzip is detected by magic.
pub fn read_idx(path: &Path, rank: usize) -> Result<Idx, DataError> {
    let raw = std::fs::read(path).map_err(|cause| DataError::Io { path: path.to_path_buf(), cause })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Idx { path: path.to_path_buf(), reason: format!("gzip stream is corrupt: {e}") })?;
        out
    } else {
        raw
    };
    parse_idx(&bytes, rank).map_err(|reason| DataError::Idx { path: path.to_path_buf(), reason })
}

/// Parses IDX bytes (already decompressed).
pub fn parse_idx(bytes: &[u8], rank: usize) -> Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!("file is {} bytes, too short for a header", bytes.len()));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(format!(
            "bad magic {:02x} {:02x} {:02x} {:02x} (expected 00 00 08 {rank:02x}: unsigned bytes)",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[3] as usize != rank {
        return Err(format!("rank {} in the header, expected {rank}", bytes[3]));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err("truncated header".into());
    }
    let dims: Vec<usize> =
        (0..rank).map(|i| u32::from_be_bytes([bytes[4 + 4 * i], bytes[5 + 4 * i], bytes[6 + 4 * i], bytes[7 + 4 * i]]) as usize).collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("dimensions overflow")?;
    let body = bytes.len() - header;
    if body != n {
        return Err(format!(
            "header promises {n} bytes of data ({dims:?}) but {body} follow{}",
            if body < n { " (truncated)" } else { "" }
        ));
    }
    Ok(Idx { dims, data: bytes[header..].to_vec() })
}

/// Reads a 28×28 greyscale PNG (8-bit grey, or 16-bit grey scaled to 8 bits).
pub fn read_png(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|cause| DataError::Io { path: path.to_path_buf(), cause })?;
    parse_png(&bytes, path)
}

/// Decodes a 28×28 greyscale PNG held in memory; `origin` names it in errors.
pub fn parse_png(bytes: &[u8], origin: &Path) -> Result<Vec<u8>, DataError> {
    let path = origin;
    let err = |reason: String| DataError::Image { path: path.to_path_buf(), reason };
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).map_err(|e| err(format!("not a readable PNG: {e}")))?;
    if (img.width() as usize, img.height() as usize) != (SIDE, SIDE) {
        return Err(err(format!("{}×{} pixels, expected 28×28", img.width(), img.height())));
    }
    match img {
        image::DynamicImage::ImageLuma8(g) => Ok(g.into_raw()),
        image::DynamicImage::ImageLuma16(g) => Ok(g.into_raw().into_iter().map(|v| ((v as u32 * 255 + 32767) / 65535) as u8).collect()),
        other => Err(err(format!(
            "colour type {:?}: expected 8-bit greyscale (convert with e.g. `convert in.png -colorspace Gray out.png`)",
            other.color()
        ))),
    }
}

/// Writes a 28×28 greyscale PNG.
pub fn write_png(path: &Path, pixels: &[u8]) -> Result<(), DataError> {
    image::save_buffer_with_format(path, pixels, SIDE as u32, SIDE as u32, image::ExtendedColorType::L8, image::ImageFormat::Png)
        .map_err(|e| DataError::Image { path: path.to_path_buf(), reason: e.to_string() })
}

/// Maps bytes to the model's input scale: `b / 255`, correctly rounded to `T` (not exact:
/// sound analyses widen the input by one ulp).
pub fn to_unit<T: crate::kernels::Real>(bytes: &[u8]) -> Vec<T> {
    bytes.iter().map(|&b| T::cast(b as f64 / 255.0)).collect()
}
