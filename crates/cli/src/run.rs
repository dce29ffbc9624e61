//! `zonocert eval` and `zonocert predict`: the concrete executor from the terminal.

use crate::common::{check_classifier, load_mnist, median, ImageArg, ModelArg};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use zonocert_network::data::{to_unit, PIXELS};
use zonocert_network::exec::argmax;
use zonocert_network::kernels::{softmax, Real};
use zonocert_network::{Executor, Network};

/// Arithmetic used by the concrete executor.
#[derive(Clone, Copy, ValueEnum)]
pub enum Precision {
    /// Single precision, as the model runs in deployment.
    F32,
    /// Double precision.
    F64,
}

/// Arguments of `zonocert eval`.
#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Directory holding the MNIST IDX files.
    #[arg(long)]
    mnist: PathBuf,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Arithmetic precision.
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Run the images in sequential batches of this size (for latency measurements);
    /// by default all at once, parallel over chunks.
    #[arg(long)]
    batch: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `zonocert predict`.
#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    image: ImageArg,
    /// Arithmetic precision.
    #[arg(long, value_enum, default_value = "f32")]
    precision: Precision,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn logits<T: Real>(exec: &Executor<T>, bytes: &[u8], n: usize) -> Vec<f64> {
    exec.forward(&to_unit::<T>(bytes), n).into_iter().map(|v| v.widen()).collect()
}

fn logits_batched<T: Real>(exec: &Executor<T>, bytes: &[u8], batch: usize) -> Vec<f64> {
    bytes.chunks(batch * PIXELS).flat_map(|c| logits(exec, c, c.len() / PIXELS)).collect()
}

/// What a model does on the MNIST test images, beyond accuracy: how confident it is.
pub struct TestStatistics {
    /// Images evaluated.
    pub images: usize,
    /// Images classified correctly.
    pub correct: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Median gap between the largest and the second-largest logit.
    pub median_logit_margin: f64,
    /// Median largest class probability.
    pub median_max_probability: f64,
}

impl TestStatistics {
    /// The statistics of `logits` (`classes` per image) against `labels`.
    pub fn of(logits: &[f64], classes: usize, labels: &[u8]) -> TestStatistics {
        let (mut margins, mut maxp) = (Vec::new(), Vec::new());
        let mut correct = 0;
        for (l, &y) in logits.chunks(classes).zip(labels) {
            let top = argmax(l);
            correct += usize::from(top == usize::from(y));
            let second = l.iter().enumerate().filter(|&(j, _)| j != top).map(|(_, v)| *v).fold(f64::NEG_INFINITY, f64::max);
            margins.push(l[top] - second);
            maxp.push(softmax(l, classes).into_iter().fold(0.0, f64::max));
        }
        let images = margins.len();
        TestStatistics {
            images,
            correct,
            accuracy: if images > 0 { correct as f64 / images as f64 } else { 0.0 },
            median_logit_margin: median(&mut margins),
            median_max_probability: median(&mut maxp),
        }
    }
}

/// [`TestStatistics`] of `net` (float32 executor, as the model runs) on every MNIST test image
/// in `dir`.
pub fn test_statistics(net: &Network, dir: &Path) -> Result<TestStatistics> {
    let classes = check_classifier(net)?;
    let set = load_mnist(dir)?;
    if set.is_empty() {
        bail!("{}: no test images", dir.display());
    }
    let logits = logits(&Executor::<f32>::new(net), &set.images, set.len());
    Ok(TestStatistics::of(&logits, classes, &set.labels))
}

/// Runs `eval`.
pub fn eval(args: EvalArgs) -> Result<()> {
    let net = args.model.load()?;
    let classes = check_classifier(&net)?;
    let set = load_mnist(&args.mnist)?;
    let n = args.limit.unwrap_or(set.len()).min(set.len());
    let bytes = &set.images[..n * PIXELS];
    let batch = args.batch.unwrap_or(n).max(1);
    let (e32, e64) = match args.precision {
        Precision::F32 => (Some(Executor::<f32>::new(&net)), None),
        Precision::F64 => (None, Some(Executor::<f64>::new(&net))),
    };
    let t0 = Instant::now();
    let out = match (&e32, &e64) {
        (Some(e), _) => logits_batched(e, bytes, batch),
        (_, Some(e)) => logits_batched(e, bytes, batch),
        _ => unreachable!("one executor is built"),
    };
    let secs = t0.elapsed().as_secs_f64();
    let stats = TestStatistics::of(&out, classes, &set.labels[..n]);
    let (accuracy, correct) = (stats.accuracy, stats.correct);
    if args.json {
        let batches = n.div_ceil(batch).max(1);
        println!(
            "{}",
            json!({"accuracy": accuracy, "n": n, "correct": correct, "time_s": secs, "batch": batch,
                   "images_per_s": n as f64 / secs, "latency_ms_per_batch": 1e3 * secs / batches as f64,
                   "median_logit_margin": stats.median_logit_margin, "median_max_probability": stats.median_max_probability})
        );
    } else {
        println!(
            "accuracy {accuracy:.4} ({correct}/{n}) in {secs:.1} s; median logit margin {:.3}, median max-probability {:.4}",
            stats.median_logit_margin, stats.median_max_probability
        );
    }
    Ok(())
}

/// Runs `predict`.
pub fn predict(args: PredictArgs) -> Result<()> {
    let net = args.model.load()?;
    let classes = check_classifier(&net)?;
    let img = args.image.load()?;
    let z = match args.precision {
        Precision::F32 => logits(&Executor::<f32>::new(&net), &img.pixels, 1),
        Precision::F64 => logits(&Executor::<f64>::new(&net), &img.pixels, 1),
    };
    // A model that ends with Softmax already outputs probabilities.
    let p = if net.ends_with_softmax() { z.clone() } else { softmax(&z, classes) };
    let k = argmax(&z);
    if args.json {
        println!("{}", json!({"logits": z, "probabilities": p, "predicted": k, "label": img.label, "image": img.origin}));
    } else {
        println!("image      {}", img.origin);
        println!("predicted  {k} (p = {:.6}){}", p[k], img.label.map(|l| format!(", label {l}")).unwrap_or_default());
        for c in 0..classes {
            println!("  class {c}: logit {:>10.5}  p {:.6}", z[c], p[c]);
        }
    }
    Ok(())
}
