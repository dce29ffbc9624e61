//! The reverse-mode gradient through the IR (`Executor::input_gradient`) against central finite
//! differences, and the lower-bound search that climbs with it: every witness is re-evaluated
//! alone, lies in its region, and the gradient ascent finds at least what coordinate ascent
//! alone finds with the same seed.

use zonocert_network::exec::Executor;
use zonocert_transform::falsify::{search, SearchSettings};
use zonocert_transform::sensitivity::{probabilities, Region};

mod support;
use support::{image, tiny_net, Rng};

const PIXELS: usize = 784;

/// A scalar of the output that exercises every class: Σ_j w_j p_j (softmax of the logits).
fn scalar(exec: &Executor<f64>, input: &[f64], weights: &[f64]) -> f64 {
    let z = exec.forward(input, 1);
    probabilities(exec, &z).iter().zip(weights).map(|(p, w)| p * w).sum()
}

#[test]
fn input_gradient_matches_finite_differences() {
    for k in 0..6u64 {
        let net = tiny_net(0x9A4D_0000 + k * 131, 2 + (k % 3) as usize, 1 + (k % 2) as usize, k % 3 == 1);
        let exec = Executor::<f64>::new(&net);
        let mut rng = Rng(k + 7);
        let input: Vec<f64> = image(&mut rng).iter().map(|&b| b as f64 / 255.0).collect();
        let weights: Vec<f64> = (0..10).map(|_| rng.sym()).collect();
        let values = exec.forward_all_values(&input, 1, true);
        let z = values.last().and_then(|v| v.clone()).expect("output");
        let p = probabilities(&exec, &z);
        // d(Σ w_j p_j)/dz_i = p_i (w_i − Σ w_j p_j)
        let mean: f64 = p.iter().zip(&weights).map(|(a, b)| a * b).sum();
        let seed: Vec<f64> = p.iter().zip(&weights).map(|(pi, wi)| pi * (wi - mean)).collect();
        let g = exec.input_gradient(&values, 1, seed);
        assert_eq!(g.len(), PIXELS);
        let scale = g.iter().fold(0.0f64, |a, v| a.max(v.abs()));
        assert!(scale > 0.0, "net {k}: the gradient is identically zero");
        let h = 1e-5;
        let mut checked = 0;
        for j in (0..PIXELS).step_by(7).chain([0, 406, 783]) {
            let (mut up, mut down) = (input.clone(), input.clone());
            up[j] += h;
            down[j] -= h;
            let fd = (scalar(&exec, &up, &weights) - scalar(&exec, &down, &weights)) / (2.0 * h);
            // ReLU kinks and rounding: an absolute tolerance scaled by the gradient's size.
            assert!((fd - g[j]).abs() <= 1e-5 * scale + 1e-9, "net {k}, pixel {j}: finite difference {fd:e}, reverse mode {:e}", g[j]);
            checked += 1;
        }
        assert!(checked > 100);
    }
}

#[test]
fn gradient_ascent_witnesses_are_real_and_not_weaker() {
    let mut improved = 0;
    let mut cases = 0;
    for k in 0..6u64 {
        let net = tiny_net(0x51E_A000 + k * 977, 3, 1, false);
        let exec = Executor::<f64>::new(&net);
        for (pixel, bit) in [(406usize, 0u8), (100, 3)] {
            let base = SearchSettings { restarts: 2, rounds: 4, batch: 8, seed: k, ascent_steps: 0 };
            let coordinate = search(&exec, &Region::Global, pixel, bit, base);
            let climbed = search(&exec, &Region::Global, pixel, bit, SearchSettings { ascent_steps: 20, ..base });
            for w in [&coordinate, &climbed] {
                assert_eq!(w.image.len(), PIXELS);
                assert_eq!(w.recheck(&exec, &Region::Global, bit), Some(w.value), "witness value is its own evaluation");
            }
            assert!(
                climbed.value >= 0.9 * coordinate.value,
                "net {k} pixel {pixel}: ascent {:e} far below coordinate search {:e}",
                climbed.value,
                coordinate.value
            );
            improved += (climbed.value > coordinate.value) as usize;
            cases += 1;
        }
    }
    assert!(2 * improved >= cases, "gradient ascent improved only {improved} of {cases} searches");
}
