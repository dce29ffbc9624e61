//! `zonocert curve`: sensitivity curves — the largest certified bound over the chosen pixels,
//! and the largest lower bound found. For one image (`--region image`): against the flipped bit
//! (at the image itself) and against the radius ε of the ball around it (for the chosen bit);
//! writes `curve.json`, `curve_bits.png` and `curve_eps.png`. Over every image (`--region
//! global`): against the flipped bit and against the number of pixels flipped at once; writes
//! `curve.json`, `curve_bits.png`, `curve_flips.png`, and the per-pixel global bounds of the
//! chosen bit as `heatmap.png` and `bounds.csv`.

use crate::certify::MethodArg;
use crate::common::{check_classifier, parse_pixels, progress_bar, write_atomic, BudgetArgs, ImageArg, ModelArg, SemanticsArgs};
use crate::heatmap::{curve, Series};
use crate::report::{CurvePoint, CurveReport};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::ProgressBar;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;
use zonocert_network::{Executor, Network};
use zonocert_refine::engine::{Engine, EngineSettings};
use zonocert_transform::falsify::{search, PairScore, SearchSettings};
use zonocert_transform::float32::Semantics;
use zonocert_transform::sensitivity::{CertifyPixel, Region};

mod global;

/// Arguments of `zonocert curve`.
#[derive(Args)]
pub struct CurveArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    semantics: SemanticsArgs,
    #[command(flatten)]
    image: ImageArg,
    /// `image`: the curves of one image (--mnist/--index or --image); `global`: over every
    /// image, against the bit and against the number of pixels flipped at once.
    #[arg(long, value_enum, default_value = "image")]
    region: CurveRegion,
    /// With `--region global`: how many pixels flip bit --bit at once, for the curve against
    /// it (any set of at most that many of the selected pixels).
    #[arg(long, default_value = "1,2,4,8")]
    flips: String,
    /// Flipped bits for the curve against the bit (at the image itself, ε = 0).
    #[arg(long, default_value = "0,1,2,3,4,5,6,7")]
    bits: String,
    /// Radii ([0, 1] scale) for the curve against ε (with --bit); empty to skip. Default
    /// `0,0.00196078431372549,0.00392156862745098,0.00784313725490196` (`--region image` only).
    #[arg(long)]
    eps: Option<String>,
    /// The bit flipped along the ε curve.
    #[arg(long, default_value_t = 0)]
    bit: u8,
    /// Pixels (same syntax as `certify --pixels`); the curve is the maximum over them.
    #[arg(long, default_value = "all")]
    pixels: String,
    /// Method at ε = 0 (`precise` encloses the exact value; default). `--region image` only.
    #[arg(long, value_enum)]
    point_method: Option<MethodArg>,
    /// Method for ε > 0 and for `--region global` (`precise` is for single images only).
    #[arg(long, value_enum, default_value = "diff-zonotope")]
    ball_method: MethodArg,
    /// Lower-bound search effort for ε > 0 (ascent rounds per pixel).
    #[arg(long, default_value_t = 4)]
    attack_rounds: usize,
    /// `diff-zonotope` without its screening pass (as `certify --no-screen`).
    #[arg(long)]
    no_screen: bool,
    /// Carry the difference's boxed error terms beside it (as `certify --carry-errors`).
    #[arg(long)]
    carry_errors: bool,
    #[command(flatten)]
    budgets: BudgetArgs,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Print the curve as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// The radii of the curve against ε when `--eps` is not given.
const DEFAULT_EPS: &str = "0,0.00196078431372549,0.00392156862745098,0.00784313725490196";

/// Which curves `curve` draws.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CurveRegion {
    /// One image and balls around it.
    Image,
    /// Every image.
    Global,
}

/// One point of a curve.
#[derive(Clone, Copy)]
struct Point {
    bit: u8,
    eps: f64,
    method: &'static str,
    upper: f64,
    upper_pixel: usize,
    lower: f64,
    lower_pixel: usize,
    secs: f64,
}

impl Point {
    fn record(&self) -> CurvePoint {
        CurvePoint {
            bit: self.bit,
            eps: self.eps,
            method: self.method.to_string(),
            certified_max: self.upper,
            certified_pixel: self.upper_pixel,
            lower_max: self.lower,
            lower_pixel: self.lower_pixel,
            ratio: Some(self.upper / self.lower).filter(|r| self.lower > 0.0 && r.is_finite()),
            time_s: self.secs,
        }
    }
}

fn parse_list<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.parse::<T>().ok().with_context(|| format!("{what}: '{t}' is not a valid value")))
        .collect()
}

/// The curves' x values, `--bits` and `--eps`, checked.
fn checked_axes(args: &CurveArgs) -> Result<(Vec<u8>, Vec<f64>)> {
    let bits: Vec<u8> = parse_list(&args.bits, "--bits")?;
    let eps: Vec<f64> = parse_list(args.eps.as_deref().unwrap_or(DEFAULT_EPS), "--eps")?;
    if let Some(b) = bits.iter().chain(std::iter::once(&args.bit)).find(|&&b| b > 7) {
        bail!("bits must be 0–7 (8-bit pixels), got {b}");
    }
    if let Some(e) = eps.iter().find(|e| !(0.0..=1.0).contains(*e)) {
        bail!("--eps values must lie in [0, 1], got {e}");
    }
    if args.ball_method == MethodArg::Precise && eps.iter().any(|&e| e > 0.0) {
        bail!("--ball-method precise: the precise method answers single images only (ε = 0)");
    }
    Ok((bits, eps))
}

/// The model a curve runs on, with what its points need of it.
struct Loaded {
    net: Network,
    /// The f64 executor the lower-bound search runs.
    exec: Executor<f64>,
    semantics: Semantics,
    /// How a found pair is scored (a float32 execution's change under `--semantics f32`).
    score: PairScore,
}

impl Loaded {
    /// Loads `--model` (a classifier) for `--semantics`.
    fn new(args: &CurveArgs) -> Result<Self> {
        let net = args.model.load_for(args.semantics.semantics()?)?;
        check_classifier(&net)?;
        let semantics = args.semantics.semantics()?;
        Ok(Loaded { exec: Executor::new(&net), score: PairScore::new(&net, semantics), semantics, net })
    }

    /// The sweep of `pixels` that `args` asks for.
    fn sweep<'a>(&'a self, args: &CurveArgs, pixels: &'a [usize], bar: &'a ProgressBar) -> Sweep<'a> {
        Sweep {
            model: self,
            pixels,
            rounds: args.attack_rounds,
            screen: !args.no_screen,
            carry_errors: args.carry_errors,
            budgets: args.budgets,
            bar,
        }
    }
}

/// What every point of the curves shares: the model, the pixels, the search effort, screening
/// and the progress bar.
struct Sweep<'a> {
    model: &'a Loaded,
    pixels: &'a [usize],
    rounds: usize,
    screen: bool,
    carry_errors: bool,
    budgets: BudgetArgs,
    bar: &'a ProgressBar,
}

/// One pixel's certified bound and lower bound (with the image of the pair found, when a
/// search found it).
struct PixelRow {
    pixel: usize,
    upper: f64,
    lower: f64,
    /// The certified `max_{c,j} |Δ(z_c − z_j)|` (abstract methods, when finite).
    logit_delta: Option<f64>,
    witness: Option<Vec<u8>>,
}

/// Every pixel's certified and lower bound for one (region, bit), the method's name and the
/// time taken.
fn pixel_rows(sweep: &Sweep, region: &Region, bit: u8, method: MethodArg) -> Result<(Vec<PixelRow>, &'static str, f64)> {
    let t0 = Instant::now();
    let engine = sweep.engine(region, bit, method)?;
    let rows = sweep.rows(&engine, region, bit);
    Ok((rows, engine.method().name(), t0.elapsed().as_secs_f64()))
}

impl<'a> Sweep<'a> {
    /// The engine for one (region, bit) with the sweep's settings (the region analysis runs
    /// here; [`Engine::set_bit`] reuses it for another bit).
    fn engine(&self, region: &Region, bit: u8, method: MethodArg) -> Result<Engine<'a>> {
        let (region_budget, diff_budget) = (self.budgets.region_budget(), self.budgets.diff_budget());
        let BudgetArgs { region_backsub, diff_backsub, .. } = self.budgets;
        let Loaded { net, semantics, .. } = self.model;
        let method = method.engine().resolve(region, *semantics);
        let screen = if self.screen { EngineSettings::default().screen } else { None };
        Ok(Engine::new(
            net,
            region,
            method,
            &EngineSettings {
                bit,
                screen,
                semantics: *semantics,
                carry_errors: self.carry_errors,
                region_backsub,
                diff_backsub,
                region_budget,
                diff_budget,
                ..EngineSettings::default()
            },
        )?)
    }

    /// Every pixel's certified bound from `engine` (set to `bit`) and its lower bound.
    fn rows(&self, engine: &Engine, region: &Region, bit: u8) -> Vec<PixelRow> {
        let Loaded { exec, score, .. } = self.model;
        let search_settings = SearchSettings::per_pixel(self.rounds);
        // The precise method's enclosure has a certified lower end, the others get the search's.
        self.pixels
            .par_iter()
            .map(|&i| {
                let r = engine.certify(i);
                let row = match r.lower {
                    Some(lower) => PixelRow { pixel: i, upper: r.upper, lower, logit_delta: r.logit_delta_bound, witness: None },
                    None => {
                        let w = search(exec, region, i, bit, search_settings);
                        PixelRow {
                            pixel: i,
                            upper: r.upper,
                            lower: score.of(&w, bit),
                            logit_delta: r.logit_delta_bound,
                            witness: Some(w.image),
                        }
                    }
                };
                self.bar.inc(1);
                row
            })
            .collect()
    }
}

/// The row with the largest `f` (the first on ties).
fn best_row(rows: &[PixelRow], f: fn(&PixelRow) -> f64) -> Option<&PixelRow> {
    rows.iter().fold(None, |b: Option<&PixelRow>, r| if b.is_none_or(|b| f(r) > f(b)) { Some(r) } else { b })
}

/// The curve point of a set of rows.
fn summarise(rows: &[PixelRow], bit: u8, eps: f64, method: &'static str, secs: f64) -> Point {
    let (up, low) = (best_row(rows, |r| r.upper), best_row(rows, |r| r.lower));
    Point {
        bit,
        eps,
        method,
        upper: up.map_or(f64::NEG_INFINITY, |r| r.upper),
        upper_pixel: up.map_or(0, |r| r.pixel),
        lower: low.map_or(f64::NEG_INFINITY, |r| r.lower),
        lower_pixel: low.map_or(0, |r| r.pixel),
        secs,
    }
}

/// Certified and lower bounds, maximised over the sweep's pixels, for one (region, bit).
fn point(sweep: &Sweep, region: &Region, bit: u8, method: MethodArg) -> Result<Point> {
    let eps = match region {
        Region::Ball(_, e) => *e,
        _ => 0.0,
    };
    let (rows, name, secs) = pixel_rows(sweep, region, bit, method)?;
    Ok(summarise(&rows, bit, eps, name, secs))
}

/// Runs `curve`.
pub fn run(args: CurveArgs) -> Result<()> {
    if args.region == CurveRegion::Global {
        return global::run(args);
    }
    let (bits, eps) = checked_axes(&args)?;
    let pixels = parse_pixels(&args.pixels)?;
    let img = args.image.load()?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let model = Loaded::new(&args)?;

    let bar = progress_bar(((bits.len() + eps.len()) * pixels.len()) as u64, "pixel analyses", args.quiet);
    let t0 = Instant::now();
    let point_region = Region::Point(img.pixels.clone());
    let sweep = model.sweep(&args, &pixels, &bar);
    let point_method = args.point_method.unwrap_or(MethodArg::Precise);
    // One analysis of the image serves every bit (only the pixels' passes, and under f32 the
    // flip hull, depend on it); a point's time is its pixels' passes' and its `set_bit`.
    let by_bit: Vec<Point> = match bits.first() {
        None => vec![],
        Some(&first) => {
            let mut engine = sweep.engine(&point_region, first, point_method)?;
            let name = engine.method().name();
            let mut points = Vec::with_capacity(bits.len());
            for &b in &bits {
                let t = Instant::now();
                engine.set_bit(b);
                let rows = sweep.rows(&engine, &point_region, b);
                points.push(summarise(&rows, b, 0.0, name, t.elapsed().as_secs_f64()));
            }
            points
        }
    };
    let by_eps: Vec<Point> = eps
        .iter()
        .map(|&e| {
            // ε = 0 at the curve's bit was already computed along the bit curve.
            if let Some(p) = by_bit.iter().find(|p| e == 0.0 && p.bit == args.bit) {
                bar.inc(pixels.len() as u64);
                return Ok(Point { ..*p });
            }
            let (region, method) =
                if e == 0.0 { (point_region.clone(), point_method) } else { (Region::Ball(img.pixels.clone(), e), args.ball_method) };
            point(&sweep, &region, args.bit, method)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();

    let model_name = args.model.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lines = |pts: &[Point], x: fn(&Point) -> f64| {
        vec![
            Series { label: "certified (max over pixels)".into(), points: pts.iter().map(|p| (x(p), p.upper)).collect(), colour: 0 },
            Series { label: "lower bound (max over pixels)".into(), points: pts.iter().map(|p| (x(p), p.lower)).collect(), colour: 2 },
        ]
    };
    if !by_bit.is_empty() {
        curve(
            &args.out.join("curve_bits.png"),
            &format!("{model_name} | {} | eps 0 | flipped bit", img.origin),
            "flipped bit (moves a pixel by 2^b/255)",
            &lines(&by_bit, |p| p.bit as f64),
        )?;
    }
    if !by_eps.is_empty() {
        curve(
            &args.out.join("curve_eps.png"),
            &format!("{model_name} | {} | bit {} | ball radius", img.origin, args.bit),
            "eps (pixel scale [0, 1])",
            &lines(&by_eps, |p| p.eps),
        )?;
    }
    let report = CurveReport {
        model: args.model.path().display().to_string(),
        image: img.origin.clone(),
        label: img.label,
        pixels: pixels.len(),
        by_bit: by_bit.iter().map(Point::record).collect(),
        by_eps: by_eps.iter().map(Point::record).collect(),
        region: "image".to_string(),
        by_flips: vec![],
        time_s: t0.elapsed().as_secs_f64(),
        execution: model.semantics.name().to_string(),
        carry_errors: args.carry_errors,
        region_backsub: args.budgets.region_backsub,
        diff_backsub: args.budgets.diff_backsub,
        region_budget: Some(args.budgets.region_budget()),
        diff_budget: Some(args.budgets.diff_budget()),
        semantics: CURVE_SEMANTICS.to_string(),
    };
    const CURVE_SEMANTICS: &str = "certified_max: max over the pixels of a certified upper bound on max_c |p_c(x with the bit flipped) - p_c(x)| over the region; lower_max: max over the pixels of a lower bound (at eps 0 with method precise, a certified lower bound on the exact value; otherwise a value attained by a concrete image pair found by search)";
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&args.out.join("curve.json"), text.as_bytes())?;
    if args.json {
        println!("{text}");
    } else {
        for p in by_bit.iter().chain(&by_eps) {
            println!(
                "bit {} eps {:.5}: certified {:.4e} (pixel {}), lower {:.4e} (pixel {}), {} {:.1} s",
                p.bit, p.eps, p.upper, p.upper_pixel, p.lower, p.lower_pixel, p.method, p.secs
            );
        }
        println!("wrote {}/{{curve.json, curve_bits.png, curve_eps.png}}", args.out.display());
    }
    Ok(())
}
