//! `zonocert bounds`: classic L∞ robustness certification of one image.

use crate::common::{check_classifier, progress_bar, ImageArg, ModelArg, SemanticsArgs};
use crate::refine::RefineArgs;
use crate::report::{BoundsReport, RangeRecord};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use std::time::Instant;
use zonocert_domain::{Interval, SymbolPool, Zonotope};
use zonocert_network::exec::argmax;
use zonocert_refine::window::Window;
use zonocert_refine::{refine_logit_differences, WindowProblem};
use zonocert_transform::analysis::{forward_keeping, Keep};
use zonocert_transform::float32::below_top;
use zonocert_transform::float32::Semantics;
use zonocert_transform::sensitivity::Region;
use zonocert_transform::softmax::{logit_differences, probability_bounds};
use zonocert_transform::Domain;

/// Abstract domain for `bounds`.
#[derive(Clone, Copy, ValueEnum)]
pub enum BoundsMethod {
    /// Interval bound propagation.
    Interval,
    /// Zonotopes (DeepZ transformers).
    Zonotope,
}

/// Arguments of `zonocert bounds`.
#[derive(Args)]
pub struct BoundsArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    semantics: SemanticsArgs,
    #[command(flatten)]
    image: ImageArg,
    /// L∞ radius on the [0, 1] pixel scale (the ball is clipped to [0, 1]).
    #[arg(long)]
    eps: f64,
    /// Abstract domain.
    #[arg(long, value_enum, default_value = "zonotope")]
    method: BoundsMethod,
    /// Generator budget per tensor (zonotope only).
    #[arg(long, default_value_t = 1024)]
    budget: usize,
    /// Bound the error terms of each activation's and product's input by reverse passes
    /// (zonotope only; as `certify --region-backsub`).
    #[arg(long)]
    region_backsub: bool,
    #[command(flatten)]
    refine: RefineArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `bounds`.
pub fn run(args: BoundsArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&args.eps) {
        bail!("--eps must lie in [0, 1], got {}", args.eps);
    }
    let net = args.model.load()?;
    let classes = check_classifier(&net)?;
    let img = args.image.load()?;
    let t0 = Instant::now();
    let region = Region::Ball(img.pixels.clone(), args.eps);
    let mut pool = SymbolPool::new();
    let (domain, symbols) = match args.method {
        BoundsMethod::Interval => (Domain::Interval, false),
        BoundsMethod::Zonotope => (Domain::Zonotope { budget: args.budget, backsub: args.region_backsub }, true),
    };
    let lp = args.refine.settings(&net)?;
    if lp.is_some() && !symbols {
        bail!("--refine lp needs --method zonotope (the LP window is tied to the zonotope's noise symbols)");
    }
    let semantics = args.semantics.semantics()?;
    if let Semantics::F32(m) = semantics {
        m.check(&net).map_err(|why| anyhow::anyhow!("--semantics f32: {why}"))?;
    }
    let input = Zonotope::from_box(&region.input_box(), &mut pool, symbols);
    let maps = zonocert_transform::maps::PreparedMaps::new(&net).with_semantics(semantics);
    let window = lp.map(|s| Window::new(&net, s.window));
    let keep = window.as_ref().map_or(&[][..], |w| &w.inputs[..]);
    let (fwd, kept) = forward_keeping(&net, &maps, input, &mut pool, domain, Keep { bounds: lp.is_some(), values: keep });
    let logits = fwd.output.bounds();
    let mut diffs = logit_differences(&fwd.output);
    // The class the model predicts at the centre image (concrete f64 execution): the one a
    // robustness certificate must be about.
    let exec = zonocert_network::Executor::<f64>::new(&net);
    let centre = exec.forward(&zonocert_network::data::to_unit::<f64>(&img.pixels), 1);
    let predicted = argmax(&centre);
    // Verification needs only the differences against the predicted class (each LP costs
    // about a second on a head window): those pairs are refined, both ways.
    let refinement = match (lp, &window) {
        (Some(s), Some(w)) => {
            let pairs: Vec<(usize, usize)> = (0..classes).filter(|&j| j != predicted).map(|j| (j, predicted)).collect();
            let bar = progress_bar(pairs.len() as u64, "logit differences by LP", args.json);
            let progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let s = zonocert_refine::LpSettings { semantics, ..s };
            let problem = WindowProblem { net: &net, maps: &maps, window: w, x_kept: &kept, settings: &s };
            let stats = refine_logit_differences(problem, &fwd.bounds, &mut diffs, &pairs, &progress);
            bar.finish_and_clear();
            Some(crate::refine::report(&net, w, &stats))
        }
        _ => None,
    };
    let mut probs = probability_bounds(classes, &|j, c| diffs[j][c]);
    if let Semantics::F32(m) = semantics {
        // The float32 softmax: |p̂_c − p_c| ≤ θ_c·p_c + a.
        let p_hi: Vec<f64> = probs.iter().map(|p| p.hi).collect();
        let (theta, a) = m.softmax_errors(&below_top(&[&diffs]), &p_hi);
        for (p, theta) in probs.iter_mut().zip(theta) {
            let grow = |v: f64| (theta * v + a) * (1.0 + 1e-12);
            *p = Interval::new((p.lo - grow(p.hi)).max(0.0), (p.hi + grow(p.hi)).min(1.0));
        }
    }
    let verified = (0..classes).filter(|&j| j != predicted).all(|j| diffs[j][predicted].hi < 0.0);
    let secs = t0.elapsed().as_secs_f64();
    let method = match args.method {
        BoundsMethod::Interval => "interval",
        BoundsMethod::Zonotope if args.region_backsub => "zonotope+backsub",
        BoundsMethod::Zonotope => "zonotope",
    };
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let range =
        |b: &[Interval]| RangeRecord { lower: b.iter().map(|b| finite(b.lo)).collect(), upper: b.iter().map(|b| finite(b.hi)).collect() };
    let v = BoundsReport {
        image: img.origin.clone(),
        label: img.label,
        eps: args.eps,
        method: method.to_string(),
        execution: semantics.name().to_string(),
        logits: range(&logits),
        probabilities: range(&probs),
        predicted,
        verified,
        time_s: secs,
        peak_generators: fwd.peak_generators,
        refinement,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_text(&v);
    }
    Ok(())
}

/// The human-readable form of a `bounds --json` record.
fn print_text(v: &BoundsReport) {
    let f = |x: Option<f64>| x.unwrap_or(f64::NAN);
    let label = v.label.map_or("null".to_string(), |l| l.to_string());
    println!("image {} (label {label}), eps {}, method {}", v.image, serde_json::json!(v.eps), v.method);
    let (logits, probs) = (&v.logits, &v.probabilities);
    for c in 0..logits.lower.len() {
        println!(
            "  class {c}: logit [{:>11.5}, {:>11.5}]  p [{:.6}, {:.6}]",
            f(logits.lower[c]),
            f(logits.upper[c]),
            f(probs.lower[c]),
            f(probs.upper[c])
        );
    }
    let verdict = if v.verified { "VERIFIED robust" } else { "not verified" };
    println!("predicted {}: {verdict}", v.predicted);
    println!("time {:.2} s, peak generators {}", v.time_s, v.peak_generators);
    if let Some(r) = &v.refinement {
        println!(
            "LP refinement over {} layers from layer {}: {} LPs, {} improved, {} timed out, {:.1} % of the width gained, {:.2} s",
            r.window.layers.len(),
            r.window.start_layer,
            r.lps,
            r.improved,
            r.timeouts,
            100.0 * r.width_gained_fraction,
            r.seconds
        );
    }
}
