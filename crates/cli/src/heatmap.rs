//! Per-pixel heatmaps as PNG: the 28×28 grid upscaled, a perceptual (viridis) colour map, and a
//! colour bar whose ends carry the minimum and maximum values as tick marks. Numbers and titles
//! live in `report.json`; the picture is for seeing where the model is sensitive.

use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// Viridis control points (matplotlib), interpolated linearly.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

/// The viridis colour of `t ∈ [0, 1]`.
pub fn viridis(t: f64) -> Rgb<u8> {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 1.0 };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    Rgb([mix(VIRIDIS[i][0], VIRIDIS[i + 1][0]), mix(VIRIDIS[i][1], VIRIDIS[i + 1][1]), mix(VIRIDIS[i][2], VIRIDIS[i + 1][2])])
}

/// Draws `values` (28×28, row-major; `None` = pixel not analysed, drawn grey) to `path`.
/// With `log`, colours follow log10 of the value.
pub fn write(path: &Path, values: &[Option<f64>], log: bool) -> Result<(u32, u32, f64, f64)> {
    let scale = 16u32;
    let side = 28 * scale;
    let (bar_gap, bar_w, margin) = (16u32, 24u32, 12u32);
    let width = margin + side + bar_gap + bar_w + margin;
    let height = margin + side + margin;
    let map = |v: f64| if log { v.max(1e-300).log10() } else { v };
    let present: Vec<f64> = values.iter().flatten().map(|&v| map(v)).collect();
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    for (i, v) in values.iter().enumerate() {
        let (r, c) = ((i / 28) as u32, (i % 28) as u32);
        let colour = match v {
            Some(v) => viridis((map(*v) - lo) / span),
            None => Rgb([200, 200, 200]),
        };
        for y in 0..scale {
            for x in 0..scale {
                img.put_pixel(margin + c * scale + x, margin + r * scale + y, colour);
            }
        }
    }
    let bx = margin + side + bar_gap;
    for y in 0..side {
        let t = 1.0 - y as f64 / (side - 1) as f64;
        for x in 0..bar_w {
            img.put_pixel(bx + x, margin + y, viridis(t));
        }
    }
    let path_tmp = path.with_extension("png.tmp");
    img.save_with_format(&path_tmp, image::ImageFormat::Png).with_context(|| format!("writing {}", path_tmp.display()))?;
    std::fs::rename(&path_tmp, path).with_context(|| format!("writing {}", path.display()))?;
    let unmap = |v: f64| if log { 10f64.powf(v) } else { v };
    Ok((width, height, unmap(lo), unmap(hi)))
}
