//! `zonocert certify`: certified per-pixel bit-flip sensitivity, with JSON, CSV and heatmap.

use crate::common::{check_classifier, write_atomic, ImageArg, ModelArg};
use crate::heatmap;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;
use zonocert_network::data::PIXELS;
use zonocert_network::Executor;
use zonocert_transform::sensitivity::{exact_point, Certifier, Method, Region, Settings};

/// The method that bounds the difference between an image and its flipped twin.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MethodArg {
    /// Both images bounded with intervals, then subtracted.
    Interval,
    /// Both images as zonotopes over shared input symbols, then subtracted.
    TwinZonotope,
    /// Differential zonotope: the difference carried by mean-value transformers.
    DiffZonotope,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Interval => Method::Interval,
            MethodArg::TwinZonotope => Method::TwinZonotope,
            MethodArg::DiffZonotope => Method::DiffZonotope,
        }
    }
}

/// Which region: one image / ball around it (with an image), or every image.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum RegionArg {
    /// Every 28×28 image: [0, 1]^784.
    Global,
}

/// Arguments of `zonocert certify`.
#[derive(Args)]
pub struct CertifyArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    image: ImageArg,
    /// `global`: every image (no --image/--mnist needed).
    #[arg(long, value_enum, conflicts_with_all = ["image", "mnist"])]
    region: Option<RegionArg>,
    /// L∞ radius of the ball around the image ([0, 1] scale); 0 = the image alone.
    #[arg(long, default_value_t = 0.0)]
    eps: f64,
    /// Which bit flips (0 = least significant; bit B moves a pixel by 2^B/255).
    #[arg(long, default_value_t = 0)]
    bit: u8,
    /// Pixels to certify: `all`, or a list like `0,5,100-120,0-783:37` (row-major indices
    /// 0–783; `a-b:s` takes every s-th pixel of the range).
    #[arg(long, default_value = "all")]
    pixels: String,
    /// Method.
    #[arg(long, value_enum, default_value = "diff-zonotope")]
    method: MethodArg,
    /// Generator budget of the region zonotope.
    #[arg(long, default_value_t = Settings::default().region_budget)]
    region_budget: usize,
    /// Generator budget of the difference zonotope.
    #[arg(long, default_value_t = Settings::default().diff_budget)]
    diff_budget: usize,
    /// Also compute the exact value (single image only, f64 execution) beside each bound.
    #[arg(long)]
    with_exact: bool,
    /// Colour the heatmap by log10 of the bound.
    #[arg(long)]
    log_scale: bool,
    /// Output directory (report.json, bounds.csv, heatmap.png).
    #[arg(long)]
    out: PathBuf,
    /// Print the report to stdout as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many seconds, leaving a report marked `"complete": false` with the
    /// pixels done so far (continue it with --resume).
    #[arg(long)]
    timeout: Option<f64>,
    /// Continue the run whose report is in --out: pixels already there are not redone.
    #[arg(long)]
    resume: bool,
}

/// One certified pixel as stored in the report.
#[derive(Clone, Copy)]
struct Done {
    pixel: usize,
    upper: f64,
    class: usize,
}

/// Pixels already certified by an earlier, interrupted run with the same question.
fn resumed(path: &std::path::Path, method: &str, region_kind: &str, bit: u8) -> Result<Vec<Done>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(_) => return Ok(vec![]),
    };
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("--resume: {} is not a report", path.display()))?;
    if v["method"] != method || v["region"]["kind"] != region_kind || v["bit"] != bit {
        bail!("--resume: {} was made with another method, region or bit; use a fresh --out", path.display());
    }
    let px = v["pixels"].as_array().cloned().unwrap_or_default();
    px.iter()
        .map(|p| {
            Ok(Done {
                pixel: p["pixel"].as_u64().context("--resume: pixel entry without index")? as usize,
                upper: p["upper"].as_f64().context("--resume: pixel entry without bound")?,
                class: p["class"].as_u64().unwrap_or(0) as usize,
            })
        })
        .collect()
}

/// Parses `all` or `0,5,10-20,0-783:37`.
pub fn parse_pixels(s: &str) -> Result<Vec<usize>> {
    if s.trim() == "all" {
        return Ok((0..PIXELS).collect());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |t: &str| -> Result<usize> {
            let v: usize = t.trim().parse().with_context(|| format!("--pixels: '{t}' is not a pixel index"))?;
            if v >= PIXELS {
                bail!("--pixels: {v} is out of range (pixels are 0–783)");
            }
            Ok(v)
        };
        let (range, step) = match part.split_once(':') {
            Some((r, st)) => (r, st.trim().parse::<usize>().ok().filter(|&v| v > 0).with_context(|| format!("--pixels: bad step in '{part}'"))?),
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    bail!("--pixels: empty range {a}-{b}");
                }
                out.extend((a..=b).step_by(step));
            }
            None => out.push(parse(range)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("--pixels selects no pixel");
    }
    Ok(out)
}

/// Runs `certify`.
pub fn run(args: CertifyArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.eps) {
        bail!("--eps must lie in [0, 1], got {}", args.eps);
    }
    if args.bit > 7 {
        bail!("--bit must be 0–7 (8-bit pixels), got {}", args.bit);
    }
    let pixels = parse_pixels(&args.pixels)?;
    let pixels_requested = pixels.len();
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let net = args.model.load()?;
    check_classifier(&net)?;
    let (region, origin, label) = match (args.region, args.image.given()) {
        (Some(RegionArg::Global), _) => (Region::Global, "global".to_string(), None),
        (None, true) => {
            let img = args.image.load()?;
            let r = if args.eps == 0.0 { Region::Point(img.pixels) } else { Region::Ball(img.pixels, args.eps) };
            (r, img.origin, img.label)
        }
        (None, false) => bail!("no region: pass --region global, or an image (--image F.png | --mnist DIR --index I) with --eps"),
    };
    if args.with_exact && !matches!(region, Region::Point(_)) {
        bail!("--with-exact needs a single image (--eps 0)");
    }
    let settings = Settings { method: args.method.into(), region_budget: args.region_budget, diff_budget: args.diff_budget, bit: args.bit };
    let t0 = Instant::now();
    let certifier = Certifier::new(&net, region.clone(), settings);
    let region_secs = t0.elapsed().as_secs_f64();

    let method_name = Method::from(args.method).name();
    let region_kind = match &region {
        Region::Point(_) => "point",
        Region::Ball(..) => "ball",
        Region::Global => "global",
    };
    let region_json = match &region {
        Region::Point(_) => json!({"kind": "point", "image": origin, "label": label, "eps": 0.0}),
        Region::Ball(_, e) => json!({"kind": "ball", "image": origin, "label": label, "eps": e}),
        Region::Global => json!({"kind": "global"}),
    };
    let report_path = args.out.join("report.json");
    let mut results: Vec<Done> = if args.resume { resumed(&report_path, method_name, region_kind, args.bit)? } else { vec![] };
    results.retain(|d| pixels.contains(&d.pixel));
    let todo: Vec<usize> = pixels.iter().copied().filter(|p| !results.iter().any(|d| d.pixel == *p)).collect();
    let deadline = args.timeout.map(|t| t0 + std::time::Duration::from_secs_f64(t.max(0.0)));

    let bar = ProgressBar::new(pixels.len() as u64);
    if args.quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} pixels  {elapsed} elapsed, ETA {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_position(results.len() as u64);
    // Chunks bound how much work an interruption can lose: after each one a partial report
    // (complete: false) replaces the previous one atomically.
    for chunk in todo.chunks(32) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let part: Vec<Done> = chunk
            .par_iter()
            .map(|&i| {
                let r = certifier.pixel(i);
                bar.inc(1);
                Done { pixel: r.pixel, upper: r.upper, class: r.class }
            })
            .collect();
        results.extend(part);
        let partial = json!({
            "complete": false, "model": args.model.model.display().to_string(), "method": method_name,
            "region": region_json, "bit": args.bit,
            "pixels": results.iter().map(|r| json!({"pixel": r.pixel, "row": r.pixel / 28, "col": r.pixel % 28, "upper": r.upper, "class": r.class})).collect::<Vec<_>>(),
            "pixels_requested": pixels.len(),
        });
        write_atomic(&report_path, serde_json::to_string_pretty(&partial)?.as_bytes())?;
    }
    bar.finish_and_clear();
    results.sort_by_key(|r| r.pixel);
    let complete = results.len() == pixels.len();
    let pixels: Vec<usize> = results.iter().map(|r| r.pixel).collect();
    if results.is_empty() {
        bail!("--timeout reached before any pixel was certified; {} holds no bounds", report_path.display());
    }
    let exact: Option<Vec<(f64, usize)>> = match (&region, args.with_exact) {
        (Region::Point(px), true) => {
            let exec = Executor::<f64>::new(&net);
            Some(pixels.par_iter().map(|&i| exact_point(&exec, px, i, args.bit)).collect())
        }
        _ => None,
    };
    let secs = t0.elapsed().as_secs_f64();

    let (max_i, max_upper) = results.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (k, r)| if r.upper > b.1 { (k, r.upper) } else { b });
    let mut csv = String::from("pixel,row,col,upper,class,exact\n");
    let mut pix_json = Vec::with_capacity(results.len());
    for (k, r) in results.iter().enumerate() {
        let ex = exact.as_ref().map(|e| e[k].0);
        csv.push_str(&format!("{},{},{},{:e},{},{}\n", r.pixel, r.pixel / 28, r.pixel % 28, r.upper, r.class, ex.map(|v| format!("{v:e}")).unwrap_or_default()));
        let mut p = json!({"pixel": r.pixel, "row": r.pixel / 28, "col": r.pixel % 28, "upper": r.upper, "class": r.class});
        if let Some(v) = ex {
            p["exact"] = json!(v);
        }
        pix_json.push(p);
    }
    let mut grid = vec![None; PIXELS];
    for r in &results {
        grid[r.pixel] = Some(r.upper);
    }
    let (w, h, lo, hi) = heatmap::write(&args.out.join("heatmap.png"), &grid, args.log_scale)?;
    let report = json!({
        "complete": complete,
        "pixels_requested": pixels_requested,
        "model": args.model.model.display().to_string(),
        "method": method_name,
        "region": region_json,
        "bit": args.bit,
        "flip_size": (1u32 << args.bit) as f64 / 255.0,
        "semantics": "upper bounds on max over x in region, class c of |p_c(x with the bit flipped) - p_c(x)| for the real-valued function the model's weights define; the analysis's own f64 rounding is accounted for",
        "settings": {"region_budget": certifier.settings().region_budget, "diff_budget": certifier.settings().diff_budget},
        "pixels": pix_json,
        "max_upper": max_upper,
        "max_pixel": results[max_i].pixel,
        "time_s": secs,
        "region_analysis_s": region_secs,
        "region_peak_generators": certifier.region_analysis().peak_generators,
        "heatmap": {"file": "heatmap.png", "width": w, "height": h, "colour_map": "viridis", "log_scale": args.log_scale, "min": lo, "max": hi},
    });
    write_atomic(&args.out.join("bounds.csv"), csv.as_bytes())?;
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&report_path, text.as_bytes())?;
    if args.json {
        println!("{text}");
    } else {
        println!(
            "{} pixels, method {}, region {}: max certified |Δp| = {:.6e} at pixel {} (row {}, col {}), {:.1} s",
            results.len(),
            Method::from(args.method).name(),
            origin,
            max_upper,
            results[max_i].pixel,
            results[max_i].pixel / 28,
            results[max_i].pixel % 28,
            secs
        );
        println!("wrote {}/{{report.json, bounds.csv, heatmap.png}}", args.out.display());
    }
    if !complete {
        bail!(
            "--timeout reached: {} holds {} of {pixels_requested} pixels (\"complete\": false); rerun with --resume to continue",
            report_path.display(),
            results.len()
        );
    }
    Ok(())
}
