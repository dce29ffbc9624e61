//! `zonocert`: certified bounds on how much an EfficientNet's class probabilities can change
//! when the least significant bit of one pixel flips. See `zonocert --help`.

mod attack;
mod bench;
mod bounds;
mod certify;
mod common;
mod curve;
mod heatmap;
mod info;
mod merge;
mod refine;
mod report;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Certified LSB-flip sensitivity of MNIST EfficientNets, by zonotope abstract interpretation.
#[derive(Parser)]
#[command(name = "zonocert", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: layers, shapes, parameters, neurons per layer.
    Info(info::InfoArgs),
    /// Accuracy on the MNIST test set (IDX files).
    Eval(run::EvalArgs),
    /// Logits and probabilities for one image.
    Predict(run::PredictArgs),
    /// Certified logit and probability bounds over an L∞ ball (robustness).
    Bounds(bounds::BoundsArgs),
    /// Certified per-pixel bit-flip sensitivity: JSON report, CSV and heatmap.
    Certify(certify::CertifyArgs),
    /// Lower bounds: search for image pairs whose bit flip moves a probability the most.
    Attack(attack::AttackArgs),
    /// Every method side by side with lower bounds: JSON, CSV and Markdown tables.
    Bench(bench::BenchArgs),
    /// The sensitivity curve of one image: max bound against the flipped bit and against ε.
    Curve(curve::CurveArgs),
    /// Combine the reports of `certify --shard K/N` runs into one report, CSV and heatmap.
    Merge(merge::MergeArgs),
}

/// A closed pipe (`zonocert info | head`) ends the process quietly, as Unix tools do, instead
/// of a panic in `println!`: restore the default SIGPIPE action that Rust's runtime ignores.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Eval(a) => run::eval(a),
        Command::Predict(a) => run::predict(a),
        Command::Bounds(a) => bounds::run(a),
        Command::Certify(a) => certify::run(a),
        Command::Attack(a) => attack::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Curve(a) => curve::run(a),
        Command::Merge(a) => merge::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
