//! `zonocert attack`: lower bounds by searching for images whose bit flip moves a class
//! probability the most.

use crate::common::{check_classifier, write_atomic, ModelArg, QuestionArgs};
use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;
use zonocert_network::data::{write_png, SIDE};
use zonocert_network::Executor;
use zonocert_transform::falsify::{search_pixels, SearchSettings};
use zonocert_transform::float32::Semantics;

/// Arguments of `zonocert attack`.
#[derive(Args)]
pub struct AttackArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    question: QuestionArgs,
    /// Random restarts per pixel.
    #[arg(long, default_value_t = SearchSettings::default().restarts)]
    restarts: usize,
    /// Ascent rounds per restart.
    #[arg(long, default_value_t = SearchSettings::default().rounds)]
    rounds: usize,
    /// Candidates per round.
    #[arg(long, default_value_t = SearchSettings::default().batch)]
    batch: usize,
    /// Signed-gradient ascent steps per restart (0: coordinate ascent only).
    #[arg(long, default_value_t = SearchSettings::default().ascent_steps)]
    ascent_steps: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Save the best pair (x, x′) as PNGs into this directory.
    #[arg(long)]
    save: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `attack`.
pub fn run(args: AttackArgs) -> Result<()> {
    let q = args.question.resolve()?;
    let (region, pixels) = (q.region, q.pixels);
    // The search scores pairs over the reals (f64), where a zero branch contributes exactly 0.
    let net = args.model.load_for(Semantics::Real)?;
    check_classifier(&net)?;
    let settings = SearchSettings {
        restarts: args.restarts,
        rounds: args.rounds,
        batch: args.batch,
        seed: args.seed,
        ascent_steps: args.ascent_steps,
    };
    let t0 = Instant::now();
    let exec = Executor::<f64>::new(&net);
    let found = search_pixels(&exec, &region, &pixels, args.question.bit, settings);
    let secs = t0.elapsed().as_secs_f64();
    let best = found.iter().max_by(|a, b| a.value.total_cmp(&b.value)).context("no pixel searched")?;
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut flipped = best.image.clone();
        flipped[best.pixel] ^= 1 << args.question.bit;
        write_png(&dir.join("x.png"), &best.image)?;
        write_png(&dir.join("x_flipped.png"), &flipped)?;
        let meta = json!({"pixel": best.pixel, "bit": args.question.bit, "value": best.value, "class": best.class});
        write_atomic(&dir.join("witness.json"), serde_json::to_string_pretty(&meta)?.as_bytes())?;
    }
    if args.json {
        let v = json!({
            "pixels": found.iter().map(|w| json!({"pixel": w.pixel, "row": w.pixel / SIDE, "col": w.pixel % SIDE, "lower": w.value, "class": w.class, "evaluations": w.evaluations})).collect::<Vec<_>>(),
            "max_lower": best.value, "max_pixel": best.pixel, "time_s": secs,
            "note": "lower bounds from f64 evaluations of concrete image pairs on the 8-bit grid",
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "best |Δp| found = {:.6e} at pixel {} (class {}), {} pixels in {secs:.1} s",
            best.value,
            best.pixel,
            best.class,
            found.len()
        );
    }
    Ok(())
}
