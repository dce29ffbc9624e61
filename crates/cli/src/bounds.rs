//! `zonocert bounds`: classic L∞ robustness certification of one image.

use crate::common::{check_classifier, ImageArg, ModelArg};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::time::Instant;
use zonocert_domain::{SymbolPool, Zonotope};
use zonocert_network::exec::argmax;
use zonocert_transform::sensitivity::Region;
use zonocert_transform::softmax::{logit_differences, probability_bounds};
use zonocert_transform::{forward, Domain};

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
        BoundsMethod::Zonotope => (Domain::Zonotope { budget: args.budget }, true),
    };
    let input = Zonotope::from_box(&region.input_box(), &mut pool, symbols);
    let maps = zonocert_transform::maps::PreparedMaps::new(&net);
    let fwd = forward(&net, &maps, input, &mut pool, domain, false);
    let logits = fwd.output.bounds();
    let diffs = logit_differences(&fwd.output);
    let probs = probability_bounds(classes, &|j, c| diffs[j][c]);
    // The class the model predicts at the centre image (concrete f64 execution): the one a
    // robustness certificate must be about.
    let exec = zonocert_network::Executor::<f64>::new(&net);
    let centre = exec.forward(&zonocert_network::data::to_unit::<f64>(&img.pixels), 1);
    let predicted = argmax(&centre);
    let verified = (0..classes).filter(|&j| j != predicted).all(|j| diffs[j][predicted].hi < 0.0);
    let secs = t0.elapsed().as_secs_f64();
    let method = match args.method {
        BoundsMethod::Interval => "interval",
        BoundsMethod::Zonotope => "zonotope",
    };
    if args.json {
        let v = json!({
            "image": img.origin, "label": img.label, "eps": args.eps, "method": method,
            "logits": {"lower": logits.iter().map(|b| b.lo).collect::<Vec<_>>(), "upper": logits.iter().map(|b| b.hi).collect::<Vec<_>>()},
            "probabilities": {"lower": probs.iter().map(|b| b.lo).collect::<Vec<_>>(), "upper": probs.iter().map(|b| b.hi).collect::<Vec<_>>()},
            "predicted": predicted, "verified": verified, "time_s": secs, "peak_generators": fwd.peak_generators,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("image {} (label {:?}), eps {}, method {method}", img.origin, img.label, args.eps);
        for c in 0..classes {
            println!(
                "  class {c}: logit [{:>11.5}, {:>11.5}]  p [{:.6}, {:.6}]",
                logits[c].lo, logits[c].hi, probs[c].lo, probs[c].hi
            );
        }
        println!("predicted {predicted}: {}", if verified { "VERIFIED robust" } else { "not verified" });
        println!("time {secs:.2} s, peak generators {}", fwd.peak_generators);
    }
    Ok(())
}
