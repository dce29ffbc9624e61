//! zonocert's `diff-interval` method against the bound the training script differentiates
//! (`training/global_bound.py`), on small torchvision EfficientNets exported to ONNX
//! (`tests/vectors/bounds/`, written by `training/bound_vectors.py`).
//!
//! Both run the interval form of the differential analysis over the global region; zonocert
//! adds outward rounding and takes, per neuron, the tighter of the mean-value form and the
//! difference of interval images, so its certified max |Δ(z_c − z_j)| must never be above the
//! training number beyond rounding: a relative 10⁻⁶ covers zonocert's documented margins
//! (swish slope ranges widened by 10⁻⁹ at their turning points, function values by 10⁻¹⁴,
//! γₙ for every dot product; measured excess 2·10⁻⁸), while a structural difference shows as
//! tens of percent (before the logit layer kept the boxed terms' correlation: +25 %). And what
//! it certifies must hold: sampled image pairs stay below it.

use serde_json::Value;
use std::path::{Path, PathBuf};
use zonocert_network::{onnx, Executor};
use zonocert_transform::sensitivity::{Certifier, Method, Region, Settings};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/bounds")
}

/// max over c ≠ j of the certified |Δ(z_c − z_j)| for `pixel`.
fn certified(cert: &Certifier, pixel: usize) -> f64 {
    let dd = cert.logit_difference_bounds(pixel, cert.settings().diff_budget);
    dd.iter().flatten().map(|d| d.mag()).fold(0.0, |a, b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.max(b) })
}

#[test]
fn diff_interval_is_never_above_the_training_bound() {
    let mut checked = 0;
    let mut worst_ratio = 0.0f64;
    let mut zonotope_gain = vec![];
    for k in 0..3 {
        let meta: Value = serde_json::from_slice(&std::fs::read(dir().join(format!("net{k}.json"))).expect("vector")).expect("json");
        let net = onnx::load(&dir().join(format!("net{k}.onnx"))).expect("model imports");
        let exec = Executor::<f64>::new(&net);
        for case in meta["cases"].as_array().expect("cases") {
            let bit = case["bit"].as_u64().expect("bit") as u8;
            let settings = |method| Settings { method, bit, screen: None, ..Settings::default() };
            let interval = Certifier::new(&net, Region::Global, settings(Method::DiffInterval));
            let zonotope = Certifier::new(&net, Region::Global, settings(Method::DiffZonotope));
            let pixels = case["pixels"].as_array().expect("pixels");
            let torch = case["max_logit_difference"].as_array().expect("bounds");
            for (p, t) in pixels.iter().zip(torch) {
                let (pixel, t) = (p.as_u64().expect("pixel") as usize, t.as_f64().expect("bound"));
                let ours = certified(&interval, pixel);
                assert!(
                    ours.is_finite() && ours <= t * (1.0 + 1e-6),
                    "net{k} bit {bit} pixel {pixel}: diff-interval certifies {ours:e}, above the training bound {t:e}"
                );
                worst_ratio = worst_ratio.max(ours / t);
                zonotope_gain.push(certified(&zonotope, pixel) / ours);
                // Sampled pairs on the 8-bit grid (black, white, random bytes) stay below it.
                let mut state = (k as u64 + 1) * 0x9E37_79B9 + pixel as u64;
                let mut byte = || {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                };
                for s in 0..40 {
                    let img: Vec<u8> = (0..784)
                        .map(|_| match s {
                            0 => 0,
                            1 => 255,
                            _ => byte(),
                        })
                        .collect();
                    let mut flipped = img.clone();
                    flipped[pixel] ^= 1 << bit;
                    let x: Vec<f64> = img.iter().chain(&flipped).map(|&b| b as f64 / 255.0).collect();
                    let z = exec.forward(&x, 2);
                    for c in 0..10 {
                        for j in 0..10 {
                            let change = ((z[10 + c] - z[10 + j]) - (z[c] - z[j])).abs();
                            assert!(
                                change <= ours,
                                "net{k} bit {bit} pixel {pixel}: sampled |Δ(z_{c} − z_{j})| {change:e} above the certified {ours:e}"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    zonotope_gain.sort_by(f64::total_cmp);
    println!(
        "{checked} (net, bit, pixel) cases; largest diff-interval / training bound {worst_ratio:.6}; diff-zonotope / diff-interval: median {:.3}, max {:.3}",
        zonotope_gain[zonotope_gain.len() / 2],
        zonotope_gain[zonotope_gain.len() - 1]
    );
    assert_eq!(checked, 45);
}

/// The same comparison for a float32 execution: zonocert's `diff-interval` under
/// `--semantics f32` (K = 4) against the training bound with its float32 term
/// (`global_bound.F32`), which mirrors zonocert's rounding per layer; zonocert must never be
/// above it, and the rounding must be what dominates at these sizes (so that the check sees it).
#[test]
fn f32_diff_interval_is_never_above_the_f32_training_bound() {
    use zonocert_transform::float32::{F32Model, Semantics};
    let (mut checked, mut worst_ratio, mut smallest_growth) = (0, 0.0f64, f64::INFINITY);
    for k in 0..3 {
        let meta: Value = serde_json::from_slice(&std::fs::read(dir().join(format!("net{k}.json"))).expect("vector")).expect("json");
        let net = onnx::load(&dir().join(format!("net{k}.onnx"))).expect("model imports");
        for case in meta["cases"].as_array().expect("cases") {
            let bit = case["bit"].as_u64().expect("bit") as u8;
            let settings = |semantics| Settings { method: Method::DiffInterval, bit, screen: None, semantics, ..Settings::default() };
            let f32c = Certifier::new(&net, Region::Global, settings(Semantics::F32(F32Model::default())));
            let real = Certifier::new(&net, Region::Global, settings(Semantics::Real));
            let pixels = case["pixels"].as_array().expect("pixels");
            let torch = case["max_logit_difference_f32"].as_array().expect("f32 bounds (python training/bound_vectors.py)");
            for (p, t) in pixels.iter().zip(torch) {
                let (pixel, t) = (p.as_u64().expect("pixel") as usize, t.as_f64().expect("bound"));
                let ours = certified(&f32c, pixel);
                assert!(
                    ours.is_finite() && ours <= t * (1.0 + 1e-6),
                    "net{k} bit {bit} pixel {pixel}: f32 diff-interval certifies {ours:e}, above the f32 training bound {t:e}"
                );
                worst_ratio = worst_ratio.max(ours / t);
                smallest_growth = smallest_growth.min(ours / certified(&real, pixel));
                checked += 1;
            }
        }
    }
    println!("{checked} cases; largest f32 diff-interval / f32 training bound {worst_ratio:.6}; smallest f32 / real {smallest_growth:.3}");
    assert_eq!(checked, 45);
    // Against a bound that left out a layer's rounding, the ratio would be far below 1.
    assert!(worst_ratio > 0.5, "zonocert's f32 bound is far below the training one ({worst_ratio}): a term differs");
}
