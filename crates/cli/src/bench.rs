//! `zonocert bench`: every method side by side on the same images, regions and pixels, with
//! the best lower bound (and, for single images, the exact value) beside each certified bound.
//! Writes `bench.json`, `bench.csv` and `bench.md`; exits non-zero when any certified bound
//! falls below a lower bound (a soundness failure).

use crate::common::{
    check_classifier, load_mnist, machine, median, parse_pixels, peak_rss_mib, write_atomic, BudgetArgs, ModelArg, SemanticsArgs,
};
use crate::report::{BenchReport, BenchRow};
use anyhow::{bail, Context, Result};
use clap::Args;
use rayon::prelude::*;
use std::path::PathBuf;
use std::time::Instant;
use zonocert_network::data::Mnist;
use zonocert_network::{Executor, Network};
use zonocert_refine::engine::{Engine, EngineError, EngineMethod, EngineSettings};
use zonocert_transform::falsify::{search, PairScore, SearchSettings};
use zonocert_transform::sensitivity::{exact_point, CertifyPixel, Region};

/// Arguments of `zonocert bench`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    semantics: SemanticsArgs,
    /// Directory holding the MNIST IDX files.
    #[arg(long)]
    mnist: PathBuf,
    /// Test-image indices, comma separated.
    #[arg(long, default_value = "0,1")]
    images: String,
    /// Radii, comma separated ([0, 1] scale); `global` adds the global region once.
    #[arg(long, default_value = "0,0.00392156862745098,0.00784313725490196,global")]
    eps: String,
    /// Pixels (same syntax as `certify --pixels`).
    #[arg(long, default_value = "0-783:97")]
    pixels: String,
    /// Methods, comma separated: interval, twin-zonotope, diff-zonotope, diff-zonotope+lp
    /// (LP refinement with `certify --refine lp`'s defaults), diff-interval, precise.
    #[arg(long, default_value = "interval,twin-zonotope,diff-zonotope")]
    methods: String,
    /// Search effort for lower bounds (ascent rounds per pixel; 0 keeps only the centre image).
    #[arg(long, default_value_t = 4)]
    attack_rounds: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// `diff-zonotope` without its screening pass: the full pass on every pixel (as
    /// `certify --no-screen`).
    #[arg(long)]
    no_screen: bool,
    /// Carry the difference's boxed error terms beside it (as `certify --carry-errors`).
    #[arg(long)]
    carry_errors: bool,
    #[command(flatten)]
    budgets: BudgetArgs,
    /// Multiply every certified bound by this factor before the soundness check (tests use
    /// a factor below 1 to check that an unsound bound is caught).
    #[arg(long, default_value_t = 1.0, hide = true)]
    inject_scale: f64,
}

/// Lower bounds and exact values are plain `f64` evaluations of both images: each carries an
/// absolute error of a few 10⁻¹⁶ on a probability difference. A certified bound counts as
/// below one only beyond this slack (the `precise` method is tight enough to meet it).
const REFERENCE_SLACK: f64 = 1e-12;

/// Runs `bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let net = args.model.load_for(args.semantics.semantics()?)?;
    check_classifier(&net)?;
    if let zonocert_transform::float32::Semantics::F32(m) = args.semantics.semantics()? {
        m.check(&net).map_err(|why| anyhow::anyhow!("--semantics f32: {why}"))?;
    }
    let set = load_mnist(&args.mnist)?;
    let pixels = parse_pixels(&args.pixels)?;
    let regions = parse_regions(&args, &set)?;
    let methods = parse_methods(&args.methods)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let exec = Executor::<f64>::new(&net);
    let search_settings = SearchSettings::per_pixel(args.attack_rounds);
    // Under f32 a lower bound is what a float32 execution of the pair does.
    let score = PairScore::new(&net, args.semantics.semantics()?);

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (eps_label, image, region) in &regions {
        // Lower bounds (and exact values for single images) are shared by all methods.
        let t0 = Instant::now();
        let lower: Vec<f64> = pixels.par_iter().map(|&p| score.of(&search(&exec, region, p, 0, search_settings), 0)).collect();
        let lower_s = t0.elapsed().as_secs_f64();
        let exact: Option<Vec<f64>> = match region {
            Region::Point(px) => Some(pixels.par_iter().map(|&p| exact_point(&exec, px, p, 0).0).collect()),
            _ => None,
        };
        for &method in &methods {
            let t0 = Instant::now();
            let name = method.name();
            // The precise method answers single images only.
            let Some(results) = uppers(&net, region, &pixels, method, &args)? else { continue };
            let secs = t0.elapsed().as_secs_f64();
            let uppers: Vec<f64> = results.iter().map(|r| r.0).collect();
            let screened = results.iter().filter(|r| r.1).count();
            for (k, (&u, &l)) in uppers.iter().zip(&lower).enumerate() {
                if u < l - REFERENCE_SLACK {
                    failures.push(format!("{name} eps {eps_label} image {image:?} pixel {}: upper {u:e} < lower {l:e}", pixels[k]));
                }
            }
            let ratios: Vec<f64> = uppers.iter().zip(&lower).filter(|(_, &l)| l > 0.0).map(|(u, l)| u / l).collect();
            let finite = |v: f64| Some(v).filter(|v| v.is_finite());
            let row = BenchRow {
                method: name.to_string(),
                eps: eps_label.clone(),
                image: *image,
                pixels: pixels.len(),
                median_upper: finite(median(&mut uppers.clone())),
                max_upper: uppers.iter().copied().fold(0.0, f64::max),
                median_lower: finite(median(&mut lower.clone())),
                max_lower: lower.iter().copied().fold(0.0, f64::max),
                max_exact: exact.as_ref().map(|e| e.iter().copied().fold(0.0, f64::max)),
                median_ratio_upper_over_lower: finite(median(&mut ratios.clone())),
                time_s: secs,
                time_per_pixel_s: secs / pixels.len() as f64,
                lower_search_s: lower_s,
                peak_rss_mib: peak_rss_mib(),
                screened_pixels: screened,
            };
            eprintln!("{}", serde_json::to_string(&row)?);
            rows.push(row);
        }
    }
    let (md, csv) = tables(&rows);
    let report = BenchReport {
        model: args.model.path().display().to_string(),
        execution: args.semantics.semantics()?.name().to_string(),
        machine: machine(),
        carry_errors: args.carry_errors,
        region_backsub: args.budgets.region_backsub,
        diff_backsub: args.budgets.diff_backsub,
        region_budget: Some(args.budgets.region_budget()),
        diff_budget: Some(args.budgets.diff_budget()),
        rows,
        soundness_failures: failures,
    };
    write_atomic(&args.out.join("bench.json"), serde_json::to_string_pretty(&report)?.as_bytes())?;
    write_atomic(&args.out.join("bench.csv"), csv.as_bytes())?;
    write_atomic(&args.out.join("bench.md"), md.as_bytes())?;
    print!("{md}");
    if !report.soundness_failures.is_empty() {
        let failures = &report.soundness_failures;
        bail!("SOUNDNESS FAILURE: {} certified bound(s) below a lower bound:\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

/// The regions of `--eps` × `--images`, labelled: (ε label, image index, region).
fn parse_regions(args: &BenchArgs, set: &Mnist) -> Result<Vec<(String, Option<usize>, Region)>> {
    let images: Vec<usize> =
        args.images.split(',').map(|s| s.trim().parse::<usize>().with_context(|| format!("--images: '{s}'"))).collect::<Result<_>>()?;
    let mut regions = Vec::new();
    for e in args.eps.split(',').map(str::trim) {
        if e == "global" {
            regions.push(("global".into(), None, Region::Global));
            continue;
        }
        let eps: f64 = e.parse().with_context(|| format!("--eps: '{e}' is neither a number nor 'global'"))?;
        if !(0.0..=1.0).contains(&eps) {
            bail!("--eps values must lie in [0, 1], got {eps}");
        }
        for &i in &images {
            let px = set.image(i)?.to_vec();
            let r = if eps == 0.0 { Region::Point(px) } else { Region::Ball(px, eps) };
            regions.push((format!("{eps:.6}"), Some(i), r));
        }
    }
    Ok(regions)
}

/// `--methods`, by the library's names (`auto` is not a column of a comparison).
fn parse_methods(list: &str) -> Result<Vec<EngineMethod>> {
    list.split(',')
        .map(|m| match EngineMethod::parse(m.trim()) {
            Some(EngineMethod::Auto) | None => bail!(
                "--methods: unknown method '{}' (one of {})",
                m.trim(),
                EngineMethod::ALL.iter().filter(|m| **m != EngineMethod::Auto).map(|m| m.name()).collect::<Vec<_>>().join(", ")
            ),
            Some(method) => Ok(method),
        })
        .collect()
}

/// (certified upper bound × `--inject-scale`, screened) per pixel for one method on one region;
/// `None` where the method does not apply (precise off a single image).
fn uppers(net: &Network, region: &Region, pixels: &[usize], method: EngineMethod, args: &BenchArgs) -> Result<Option<Vec<(f64, bool)>>> {
    let settings = EngineSettings {
        screen: if args.no_screen { None } else { EngineSettings::default().screen },
        semantics: args.semantics.semantics()?,
        carry_errors: args.carry_errors,
        region_backsub: args.budgets.region_backsub,
        diff_backsub: args.budgets.diff_backsub,
        region_budget: args.budgets.region_budget(),
        diff_budget: args.budgets.diff_budget(),
        ..EngineSettings::default()
    };
    let engine = match Engine::new(net, region, method, &settings) {
        Ok(e) => e,
        Err(EngineError::PreciseNeedsPoint) => return Ok(None),
        Err(e @ EngineError::F32Unsupported(_)) => {
            eprintln!("{}: skipped ({e})", method.name());
            return Ok(None);
        }
    };
    Ok(Some(
        pixels
            .par_iter()
            .map(|&p| {
                let b = engine.certify(p);
                (b.upper * args.inject_scale, b.screened)
            })
            .collect(),
    ))
}

/// The rows as a Markdown table and as CSV.
/// A number as JSON writes it (shortest round-trip form, `null` for none): the CSV's form.
fn j<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn tables(rows: &[BenchRow]) -> (String, String) {
    let mut md = String::from("| method | eps | image | pixels | median upper | max upper | max lower | max exact | median upper/lower | time/pixel (s) | peak RSS (MiB) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let mut csv =
        String::from("method,eps,image,pixels,median_upper,max_upper,max_lower,max_exact,median_ratio,time_per_pixel_s,peak_rss_mib\n");
    for r in rows {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3e}")).unwrap_or_else(|| "–".into());
        let img = r.image.map(|v| v.to_string()).unwrap_or_else(|| "all".into());
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            r.method,
            r.eps,
            img,
            r.pixels,
            f(r.median_upper),
            f(Some(r.max_upper)),
            f(Some(r.max_lower)),
            f(r.max_exact),
            f(r.median_ratio_upper_over_lower),
            f(Some(r.time_per_pixel_s)),
            r.peak_rss_mib
        ));
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{}\n",
            r.method,
            r.eps,
            img,
            r.pixels,
            j(&r.median_upper),
            j(&r.max_upper),
            j(&r.max_lower),
            j(&r.max_exact),
            j(&r.median_ratio_upper_over_lower),
            j(&r.time_per_pixel_s),
            j(&r.peak_rss_mib)
        ));
    }
    (md, csv)
}
