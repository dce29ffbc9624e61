//! `zonocert curve --region global`: the global sensitivity curves, over every image.
//!
//! Against the flipped bit: each bit's largest per-pixel global bound over the selected pixels,
//! with the largest change a search found. Against the number `k` of pixels flipped at once
//! (the chosen bit, any set of at most `k` of the selected pixels): flipping the pixels one at a
//! time passes through `k` single-pixel flips, each at some image, each within its pixel's
//! global bounds. So a probability moves by at most the sum of the `k` largest per-pixel
//! bounds, and (real semantics) every logit difference by at most the sum `m` of the `k` largest
//! per-pixel logit bounds, which moves a probability by at most `tanh(m/4)`; the curve takes the
//! smaller;
//! beside it the largest change found by growing the best single-pixel pair one pixel at a time
//! (each step adds the pixel whose flip moves a probability most, evaluated in f64).

use super::{parse_list, summarise, CurveArgs, Loaded, PixelRow, Point};
use crate::certify::MethodArg;
use crate::common::{self, parse_pixels, progress_bar, write_atomic};
use crate::heatmap::{self, curve, Scale, Series};
use crate::report::{CurveReport, FlipsPoint};
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::time::Instant;
use zonocert_domain::gamma;
use zonocert_network::Executor;
use zonocert_transform::falsify::{float32_change, search, PairScore, SearchSettings, Witness};
use zonocert_transform::float32::Semantics;
use zonocert_transform::sensitivity::{largest_change, probabilities, Region};
use zonocert_transform::softmax::logit_shift_bound;

const GLOBAL_SEMANTICS: &str = "by_bit.certified_max: max over the pixels of a certified upper bound on max_c |p_c(x') - p_c(x)| over every image x, x' = x with the bit flipped at the pixel; by_flips.certified_max: the same for x' = x with the bit flipped at any at most `flips` of the selected pixels (the least of 1, the sum of the `flips` largest per-pixel bounds and, under real semantics, tanh(m/4) with m the sum of the `flips` largest per-pixel logit bounds); lower_max: attained by a concrete image pair found by search (f64 evaluation; under --semantics f32, one float32 execution of the pair)";

/// Without `--model`: the certified model with its certificate's settings
/// ([`common::certified_defaults`]); says so on stderr.
fn certified_defaults(args: &mut CurveArgs) {
    if common::certified_defaults(&mut args.model, &mut args.budgets, &mut args.carry_errors) && !args.quiet && !args.json {
        eprintln!("{}", common::certified_defaults_note(&args.model, &args.budgets, ""));
    }
}

/// Runs `curve --region global`.
pub(super) fn run(mut args: CurveArgs) -> Result<()> {
    if args.image.given() {
        bail!("--region global is over every image: drop --image / --mnist / --index");
    }
    if args.eps.is_some() || args.point_method.is_some() {
        bail!("--eps and --point-method belong to --region image (balls around one image); --region global uses --ball-method");
    }
    if args.ball_method == MethodArg::Precise {
        bail!("--ball-method precise: the precise method answers single images only, not --region global");
    }
    let bits: Vec<u8> = parse_list(&args.bits, "--bits")?;
    let flips: Vec<usize> = parse_list(&args.flips, "--flips")?;
    if let Some(b) = bits.iter().chain(std::iter::once(&args.bit)).find(|&&b| b > 7) {
        bail!("bits must be 0–7 (8-bit pixels), got {b}");
    }
    let pixels = parse_pixels(&args.pixels)?;
    if let Some(k) = flips.iter().find(|&&k| k == 0 || k > pixels.len()) {
        bail!("--flips values must lie in 1..={} (the selected pixels), got {k}", pixels.len());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| anyhow::anyhow!("creating output directory {}: {e}", args.out.display()))?;
    certified_defaults(&mut args);
    let model = Loaded::new(&args)?;
    let Loaded { exec, score, semantics, .. } = &model;

    let extra = usize::from(!flips.is_empty() && !bits.contains(&args.bit));
    let bar = progress_bar(((bits.len() + extra) * pixels.len()) as u64, "pixel analyses", args.quiet);
    let t0 = Instant::now();
    let sweep = model.sweep(&args, &pixels, &bar);
    // One region analysis serves every bit: only the pixels' passes depend on it.
    let mut engine = sweep.engine(&Region::Global, bits.first().copied().unwrap_or(args.bit), args.ball_method)?;
    let name = engine.method().name();
    let mut at_bit: Option<Vec<PixelRow>> = None;
    let mut by_bit: Vec<Point> = Vec::with_capacity(bits.len());
    for &b in &bits {
        // A point's time is its pixels' passes' (the shared region analysis counts in the total).
        let t = Instant::now();
        engine.set_bit(b);
        let mut rows = sweep.rows(&engine, &Region::Global, b);
        strengthen(exec, score, &mut rows, b);
        by_bit.push(summarise(&rows, b, 0.0, name, t.elapsed().as_secs_f64()));
        if b == args.bit {
            at_bit = Some(rows);
        }
    }
    let rows = match at_bit {
        Some(rows) => rows,
        None => {
            engine.set_bit(args.bit);
            let mut rows = sweep.rows(&engine, &Region::Global, args.bit);
            strengthen(exec, score, &mut rows, args.bit);
            rows
        }
    };
    let by_flips = flips_curve(exec, score, &rows, args.bit, &flips, matches!(semantics, Semantics::Real));
    bar.finish_and_clear();

    let model_name = args.model.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let certified_and_lower = |cert: Vec<(f64, f64)>, low: Vec<(f64, f64)>| {
        vec![
            Series { label: "certified".into(), points: cert, colour: 0 },
            Series { label: "lower bound (pair found)".into(), points: low, colour: 2 },
        ]
    };
    if !by_bit.is_empty() {
        curve(
            &args.out.join("curve_bits.png"),
            &format!("{model_name} | every image | flipped bit (max over pixels)"),
            "flipped bit (moves a pixel by 2^b/255)",
            &certified_and_lower(
                by_bit.iter().map(|p| (p.bit as f64, p.upper)).collect(),
                by_bit.iter().map(|p| (p.bit as f64, p.lower)).collect(),
            ),
        )?;
    }
    if !by_flips.is_empty() {
        curve(
            &args.out.join("curve_flips.png"),
            &format!("{model_name} | every image | bit {} | pixels flipped at once", args.bit),
            "pixels flipped at once (at most)",
            &certified_and_lower(
                by_flips.iter().map(|p| (p.flips as f64, p.certified_max)).collect(),
                by_flips.iter().map(|p| (p.flips as f64, p.lower_max)).collect(),
            ),
        )?;
    }
    let mut grid: Vec<Option<f64>> = vec![None; 784];
    let mut csv = String::from("pixel,row,col,upper,lower,logit_delta_bound\n");
    for r in &rows {
        grid[r.pixel] = Some(r.upper);
        let logit = r.logit_delta.map(|m| format!("{m:e}")).unwrap_or_default();
        csv.push_str(&format!("{},{},{},{:e},{:e},{logit}\n", r.pixel, r.pixel / 28, r.pixel % 28, r.upper, r.lower));
    }
    let title = format!("{model_name} | every image | bit {} | certified max_c |dp_c| per pixel", args.bit);
    heatmap::write(&args.out.join("heatmap.png"), &grid, None, Scale::Auto, &title)?;
    write_atomic(&args.out.join("bounds.csv"), csv.as_bytes())?;

    let report = CurveReport {
        model: args.model.path().display().to_string(),
        image: "every image".to_string(),
        label: None,
        pixels: pixels.len(),
        by_bit: by_bit.iter().map(Point::record).collect(),
        by_eps: vec![],
        region: "global".to_string(),
        by_flips: by_flips.clone(),
        time_s: t0.elapsed().as_secs_f64(),
        execution: semantics.name().to_string(),
        carry_errors: args.carry_errors,
        region_backsub: args.budgets.region_backsub,
        diff_backsub: args.budgets.diff_backsub,
        region_budget: Some(args.budgets.region_budget()),
        diff_budget: Some(args.budgets.diff_budget()),
        semantics: GLOBAL_SEMANTICS.to_string(),
    };
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&args.out.join("curve.json"), text.as_bytes())?;
    if args.json {
        println!("{text}");
    } else {
        for p in &by_bit {
            println!(
                "every image, bit {}: certified {:.4e} (pixel {}), lower {:.4e} (pixel {}), {} {:.1} s",
                p.bit, p.upper, p.upper_pixel, p.lower, p.lower_pixel, p.method, p.secs
            );
        }
        for p in &by_flips {
            println!(
                "every image, bit {}, at most {} pixels at once: certified {:.4e}, lower {:.4e} (pixels {:?})",
                p.bit, p.flips, p.certified_max, p.lower_max, p.lower_pixels
            );
        }
        println!("wrote {}/{{curve.json, curve_bits.png, curve_flips.png, heatmap.png, bounds.csv}}", args.out.display());
    }
    Ok(())
}

/// Reruns the lower-bound search at full strength (the `attack` defaults, more restarts) on the
/// pixels that matter most: the four with the largest certified bounds and the four with the
/// largest changes found, keeping what is better. Over every image the light per-pixel search
/// starts from one random image, which flatters the certified bounds.
fn strengthen(exec: &Executor<f64>, score: &PairScore, rows: &mut [PixelRow], bit: u8) {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| rows[b].upper.total_cmp(&rows[a].upper));
    let mut chosen: Vec<usize> = order.iter().take(4).copied().collect();
    order.sort_by(|&a, &b| rows[b].lower.total_cmp(&rows[a].lower));
    chosen.extend(order.iter().take(4).filter(|i| !chosen.contains(i)).copied().collect::<Vec<_>>());
    let settings = SearchSettings { restarts: 4, seed: 1, ..SearchSettings::default() };
    let found: Vec<(usize, Witness)> =
        chosen.par_iter().map(|&r| (r, search(exec, &Region::Global, rows[r].pixel, bit, settings))).collect();
    for (r, w) in found {
        let value = score.of(&w, bit);
        if value > rows[r].lower {
            rows[r].lower = value;
            rows[r].witness = Some(w.image);
        }
    }
}

/// The curve against the number of pixels flipped at once (see the module docs). `real`: the
/// logit bounds hold for the real-valued logits, so the logit route applies.
fn flips_curve(exec: &Executor<f64>, score: &PairScore, rows: &[PixelRow], bit: u8, flips: &[usize], real: bool) -> Vec<FlipsPoint> {
    // A bound that is not a number says nothing: count it as the trivial 1.
    let mut uppers: Vec<f64> = rows.iter().map(|r| if r.upper.is_nan() { 1.0 } else { r.upper }).collect();
    uppers.sort_by(|a, b| b.total_cmp(a));
    // A pixel without a finite logit bound makes the logit route say nothing.
    let mut logit: Vec<f64> = rows.iter().map(|r| r.logit_delta.filter(|m| m.is_finite()).unwrap_or(f64::INFINITY)).collect();
    logit.sort_by(|a, b| b.total_cmp(a));
    // The f64 sum of more than one bound is rounded: a relative margin covers it.
    let sum_up = |top: &[f64]| -> f64 {
        let s: f64 = top.iter().sum();
        if top.len() > 1 {
            (s * (1.0 + gamma(top.len() + 1))).next_up()
        } else {
            s
        }
    };
    let certified = |k: usize| -> f64 {
        let by_probability = sum_up(&uppers[..k.min(uppers.len())]);
        let by_logits = if real { logit_shift_bound(sum_up(&logit[..k.min(logit.len())]), 0.0, f64::INFINITY) } else { f64::INFINITY };
        by_probability.min(by_logits).min(1.0)
    };
    let largest = flips.iter().copied().max().unwrap_or(0);
    let mut grown = grow_pair(exec, rows, bit, largest);
    if let PairScore::Float32(exec32) = score {
        // Under f32 each grown pair counts by what a float32 execution of it does.
        grown.iter_mut().for_each(|g| g.0 = float32_change(exec32, &g.2, &g.1, bit));
    }
    flips
        .iter()
        .map(|&k| {
            let (lower, pixels, image) = grown.iter().take(k).fold((0.0, vec![], vec![]), |b, g| if g.0 > b.0 { g.clone() } else { b });
            let cert = certified(k);
            FlipsPoint {
                flips: k,
                bit,
                certified_max: cert,
                lower_max: lower,
                lower_pixels: pixels,
                lower_image: image,
                ratio: Some(cert / lower).filter(|r| lower > 0.0 && r.is_finite()),
            }
        })
        .collect()
}

/// Grows the best single-pixel pair to `largest` pixels, one pixel at a time: entry `s` is the
/// pair with `s + 1` flipped pixels (its change, pixels and first image).
fn grow_pair(exec: &Executor<f64>, rows: &[PixelRow], bit: u8, largest: usize) -> Vec<(f64, Vec<usize>, Vec<u8>)> {
    let Some(start) = rows.iter().filter(|r| r.witness.is_some()).max_by(|a, b| a.lower.total_cmp(&b.lower)) else {
        return vec![];
    };
    let image = start.witness.clone().unwrap_or_default();
    let unit = |b: &[u8]| -> Vec<f64> { b.iter().map(|&v| v as f64 / 255.0).collect() };
    let p0 = probabilities(exec, &exec.forward(&unit(&image), 1));
    let mut chosen = vec![start.pixel];
    let mut out = vec![(start.lower, chosen.clone(), image.clone())];
    while chosen.len() < largest {
        let candidates: Vec<usize> = rows.iter().map(|r| r.pixel).filter(|p| !chosen.contains(p)).collect();
        if candidates.is_empty() {
            break;
        }
        let mut input = Vec::with_capacity(candidates.len() * 784);
        for &j in &candidates {
            let mut x = image.clone();
            for &i in chosen.iter().chain(std::iter::once(&j)) {
                x[i] ^= 1 << bit;
            }
            input.extend(unit(&x));
        }
        let z = exec.forward(&input, candidates.len());
        let classes = z.len() / candidates.len();
        let (value, best) = z
            .chunks(classes)
            .zip(&candidates)
            .map(|(zj, &j)| (largest_change(&p0, &probabilities(exec, zj)).0, j))
            .fold((f64::NEG_INFINITY, candidates[0]), |b, c| if c.0 > b.0 { c } else { b });
        chosen.push(best);
        out.push((value, chosen.clone(), image.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        curve: CurveArgs,
    }

    fn defaults(argv: &[&str]) -> CurveArgs {
        let mut args = Cli::try_parse_from([&["curve", "--quiet", "--out", "o"][..], argv].concat()).expect("parses").curve;
        certified_defaults(&mut args);
        args
    }

    /// Without `--model` the global curve is the certified model's with its certificate's
    /// settings, budgets given on the command line still win, and an explicit `--model`
    /// (even the shipped one) changes nothing.
    #[test]
    fn a_global_curve_defaults_to_the_certified_model_and_its_settings() {
        let a = defaults(&["--region", "global"]);
        assert_eq!(a.model.path(), std::path::Path::new(crate::common::CERTIFIED_MODEL));
        assert_eq!((a.budgets.region_budget(), a.budgets.diff_budget()), (1024, 4096));
        assert!(a.carry_errors && a.budgets.region_backsub);
        let b = defaults(&["--region", "global", "--diff-budget", "512"]);
        assert_eq!((b.budgets.region_budget(), b.budgets.diff_budget()), (1024, 512));
        let c = defaults(&["--region", "global", "--model", crate::common::DEFAULT_MODEL]);
        assert_eq!(c.model.path(), std::path::Path::new(crate::common::DEFAULT_MODEL));
        assert_eq!((c.budgets.region_budget(), c.budgets.diff_budget()), (512, 256));
        assert!(!c.carry_errors && !c.budgets.region_backsub);
    }
}
