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
fn atomic_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
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

/// How heatmap colours follow the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// `log` when the bounds span more than two decades, `linear` otherwise.
    Auto,
    /// Colours linear in the bound.
    Linear,
    /// Colours linear in log10 of the bound.
    Log,
}

/// What a drawn heatmap shows, for the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Drawn {
    /// Image size in pixels.
    pub width: u32,
    /// Image size in pixels.
    pub height: u32,
    /// Whether the colours follow log10 of the bound.
    pub log: bool,
    /// The bound at the bottom of the colour bar.
    pub min: f64,
    /// The bound at the top of the colour bar.
    pub max: f64,
    /// `(row step, column step)` when the analysed pixels form that regular grid and each was
    /// drawn as a block covering the pixels up to the next one.
    pub blocks: Option<(usize, usize)>,
}

/// Side of the 28×28 grid.
const SIDE: usize = zonocert_network::data::SIDE;

/// The `(row step, column step)` of a regular grid starting at (0, 0) that the analysed pixels
/// (`Some`) form exactly, when not every pixel is analysed.
fn regular_grid(values: &[Option<f64>]) -> Option<(usize, usize)> {
    let present: Vec<usize> = (0..values.len()).filter(|&i| values[i].is_some()).collect();
    if present.len() == values.len() || present.first() != Some(&0) {
        return None;
    }
    let col_step = present.get(1).map(|&p| if p < SIDE { p } else { SIDE }).unwrap_or(SIDE);
    let row_step = present.iter().find(|&&p| p >= SIDE).map(|&p| p / SIDE).unwrap_or(SIDE);
    let is_grid = (0..values.len()).all(|i| values[i].is_some() == ((i / SIDE) % row_step == 0 && (i % SIDE) % col_step == 0));
    is_grid.then_some((row_step, col_step))
}

/// Draws `values` (28×28, row-major; `None` = pixel not analysed, drawn grey) to `path`,
/// titled `title`, with the input `image` (bytes) beside it when there is one. Analysed pixels
/// that form a regular strided grid are drawn as blocks (a sampled run, on purpose), other
/// gaps grey. Returns what was drawn.
pub fn write(path: &Path, values: &[Option<f64>], image: Option<&[u8]>, scale: Scale, title: &str) -> Result<Drawn> {
    let positive: Vec<f64> = values.iter().flatten().copied().filter(|v| *v > 0.0).collect();
    let decades = match (positive.iter().copied().reduce(f64::min), positive.iter().copied().reduce(f64::max)) {
        (Some(a), Some(b)) => (b / a).log10(),
        _ => 0.0,
    };
    let log = match scale {
        Scale::Auto => decades > 2.0,
        Scale::Linear => false,
        Scale::Log => true,
    };
    let blocks = regular_grid(values);
    let filled: Vec<Option<f64>> = match blocks {
        Some((rs, cs)) => (0..values.len()).map(|i| values[(i / SIDE) / rs * rs * SIDE + (i % SIDE) / cs * cs]).collect(),
        None => values.to_vec(),
    };
    // Square grids: the heatmap (and the input image, when shown) get 530 × 530 pixels each.
    let grid_side = 530u32;
    let panel = if image.is_some() { grid_side } else { 0 };
    let (width, height) = (panel + grid_side + 130, 560u32);
    let map = |v: f64| if log { v.max(1e-300).log10() } else { v };
    let present: Vec<f64> = values.iter().flatten().map(|&v| map(v)).collect();
    let lo = present.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = present.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = if lo.is_finite() && hi.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let unmap = |v: f64| if log { 10f64.powf(v) } else { v };
    let bar_caption = match (log, scale) {
        (true, Scale::Auto) => format!("bound (log; {decades:.0} decades)"),
        (true, _) => "bound (log)".to_string(),
        (false, _) => "bound".to_string(),
    };
    atomic_png(path, (width, height), |root| {
        let root = root.titled(title, ("sans-serif", 16)).map_err(draw_err)?;
        let (input_area, rest) = root.split_horizontally(panel);
        if let Some(img) = image {
            grid_panel(&input_area, "input image", |i| {
                let g = img.get(i).copied().unwrap_or(0);
                RGBColor(g, g, g)
            })?;
        }
        let (left, right) = rest.split_horizontally(width - panel - 130);
        let caption = match blocks {
            Some((r, c)) => format!("sampled: one pixel per {r}x{c} block (its top-left), drawn over the block"),
            None if values.iter().any(Option::is_none) => "grey: not analysed".to_string(),
            None => String::new(),
        };
        grid_panel(&left, &caption, |i| match filled[i] {
            Some(v) => viridis((map(v) - lo) / span),
            None => RGBColor(200, 200, 200),
        })?;
        let mut bar = ChartBuilder::on(&right)
            .margin_top(8)
            .margin_bottom(44)
            .margin_left(4)
            .set_label_area_size(LabelAreaPosition::Right, 84)
            .caption(bar_caption, ("sans-serif", 12))
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
    Ok(Drawn { width, height, log, min: unmap(lo), max: unmap(lo + span), blocks })
}

/// One 28×28 grid with row/column axes on `area`, each cell coloured by `colour(index)`.
fn grid_panel(area: &DrawingArea<BitMapBackend, plotters::coord::Shift>, caption: &str, colour: impl Fn(usize) -> RGBColor) -> Result<()> {
    let side = SIDE as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .caption(caption, ("sans-serif", 12))
        .x_label_area_size(36)
        .y_label_area_size(36)
        .build_cartesian_2d(0.0..side, 0.0..side)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_desc("column")
        .y_desc("row")
        .x_label_formatter(&|v| format!("{}", *v as i64))
        .y_label_formatter(&|v| format!("{}", SIDE as i64 - *v as i64))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(draw_err)?;
    chart
        .draw_series((0..SIDE * SIDE).map(|i| {
            let (r, c) = ((i / SIDE) as f64, (i % SIDE) as f64);
            Rectangle::new([(c, side - r), (c + 1.0, side - 1.0 - r)], colour(i).filled())
        }))
        .map_err(draw_err)?;
    Ok(())
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
