//! Pictures: per-pixel heatmaps (the 28×28 grid, a perceptual viridis colour map, a colour bar
//! with values, a title naming model, region and method) and sensitivity curves (log scale).
//! Drawn with plotters and an embedded DejaVu font, so no system fonts are needed. Files are
//! written to a temporary name and renamed: a failed drawing never leaves a partial PNG.

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

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
pub fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 1.0 };
    let x = t * (VIRIDIS.len() - 1) as f64;
    let i = (x.floor() as usize).min(VIRIDIS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    RGBColor(mix(VIRIDIS[i][0], VIRIDIS[i + 1][0]), mix(VIRIDIS[i][1], VIRIDIS[i + 1][1]), mix(VIRIDIS[i][2], VIRIDIS[i + 1][2]))
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid; should registration ever fail, drawing text reports it.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// Draws to `path.tmp.png` with `draw`, then renames it to `path`.
fn atomic_png(path: &Path, size: (u32, u32), draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>) -> Result<()> {
    fonts();
    let tmp = path.with_extension("tmp.png");
    let written = (|| {
        let root = BitMapBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err).with_context(|| format!("writing {}", tmp.display()))?;
        drop(root);
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    })();
    if written.is_err() {
        // Never leave a partial file behind (the temporary may not exist: ignore that).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A short, readable number for axes and colour bars.
fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-2..1e3).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// Draws `values` (28×28, row-major; `None` = pixel not analysed, drawn grey) to `path`,
/// titled `title`. With `log`, colours follow log10 of the value. Returns the image size and
/// the value range the colours span.
pub fn write(path: &Path, values: &[Option<f64>], log: bool, title: &str) -> Result<(u32, u32, f64, f64)> {
    let (width, height) = (640u32, 560u32);
    let map = |v: f64| if log { v.max(1e-300).log10() } else { v };
    let present: Vec<f64> = values.iter().flatten().map(|&v| map(v)).collect();
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let unmap = |v: f64| if log { 10f64.powf(v) } else { v };
    atomic_png(path, (width, height), |root| {
        let root = root.titled(title, ("sans-serif", 16)).map_err(draw_err)?;
        let (left, right) = root.split_horizontally(width - 130);
        let mut chart = ChartBuilder::on(&left)
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(36)
            .build_cartesian_2d(0.0..28.0, 0.0..28.0)
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(8)
            .y_labels(8)
            .x_desc("column")
            .y_desc("row")
            .x_label_formatter(&|v| format!("{}", *v as i64))
            .y_label_formatter(&|v| format!("{}", 28 - *v as i64))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let (r, c) = ((i / 28) as f64, (i % 28) as f64);
                let colour = match v {
                    Some(v) => viridis((map(*v) - lo) / span),
                    None => RGBColor(200, 200, 200),
                };
                Rectangle::new([(c, 28.0 - r), (c + 1.0, 27.0 - r)], colour.filled())
            }))
            .map_err(draw_err)?;
        let mut bar = ChartBuilder::on(&right)
            .margin_top(8)
            .margin_bottom(44)
            .margin_left(4)
            .set_label_area_size(LabelAreaPosition::Right, 84)
            .caption(if log { "bound (log)" } else { "bound" }, ("sans-serif", 13))
            .build_cartesian_2d(0.0..1.0, lo..lo + span)
            .map_err(draw_err)?;
        bar.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(7)
            .y_label_formatter(&|v| fmt_value(unmap(*v)))
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
        let steps = 256;
        bar.draw_series((0..steps).map(|k| {
            let (a, b) = (lo + span * k as f64 / steps as f64, lo + span * (k + 1) as f64 / steps as f64);
            Rectangle::new([(0.0, a), (1.0, b)], viridis(k as f64 / (steps - 1) as f64).filled())
        }))
        .map_err(draw_err)?;
        Ok(())
    })?;
    Ok((width, height, unmap(lo), unmap(lo + span)))
}

/// One line of a curve plot.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Points `(x, y)`; non-positive `y` are left out (log scale).
    pub points: Vec<(f64, f64)>,
    /// Colour index.
    pub colour: usize,
}

/// A log-scale line plot of `series` against `x_desc`.
pub fn curve(path: &Path, title: &str, x_desc: &str, series: &[Series]) -> Result<()> {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.1 > 0.0 && p.1.is_finite());
    let (x_lo, x_hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y_lo, y_hi) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let (x_lo, x_hi) = if x_lo.is_finite() && x_hi > x_lo { (x_lo, x_hi) } else { (0.0, 1.0) };
    let integer_x = pts().all(|p| p.0.fract() == 0.0);
    let (y_lo, y_hi) = if y_lo.is_finite() { (y_lo / 3.0, y_hi * 3.0) } else { (1e-12, 1.0) };
    let palette = [RGBColor(68, 1, 84), RGBColor(33, 144, 141), RGBColor(230, 120, 20), RGBColor(200, 30, 60)];
    atomic_png(path, (720, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("max over pixels of |Δp|")
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_label_formatter(&|v| if integer_x { format!("{}", v.round() as i64) } else { fmt_value(*v) })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(draw_err)?;
        for s in series {
            let colour = palette[s.colour % palette.len()];
            let points: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1 > 0.0 && p.1.is_finite()).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(draw_err)?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled()))).map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(draw_err)?;
        Ok(())
    })
}
