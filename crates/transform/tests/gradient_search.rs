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

/// `logit_difference_ascent`: its witness lies in the region (a ball: every byte within the
/// radius), its value is the pair's own `Δ(z_c − z_j)` (and the largest over class pairs at
/// that image), the climb beats its own starting images (0 steps, same seed), and it stays
/// within the certified logit movement of the same pixel (`logit_delta_bound`).
#[test]
fn logit_difference_ascent_climbs_and_stays_below_the_certificate() {
    use zonocert_transform::falsify::logit_difference_ascent;
    use zonocert_transform::sensitivity::{Certifier, Settings};
    let mut climbed_higher = 0;
    for k in 0..4u64 {
        let net = tiny_net(0x10617 + k * 31, 2 + (k % 3) as usize, 1 + (k % 2) as usize, false);
        let exec = Executor::<f64>::new(&net);
        let mut rng = Rng(k ^ 0x1A);
        let img = image(&mut rng);
        for region in [Region::Global, Region::Ball(img.clone(), 8.0 / 255.0)] {
            let cert = Certifier::new(&net, region.clone(), Settings::default());
            for pixel in [406usize, 100] {
                let base = SearchSettings { restarts: 3, ascent_steps: 0, seed: k, ..SearchSettings::default() };
                let start = logit_difference_ascent(&exec, &region, pixel, 0, base);
                let w = logit_difference_ascent(&exec, &region, pixel, 0, SearchSettings { ascent_steps: 25, ..base });
                if let Region::Ball(x, _) = &region {
                    assert!(w.image.iter().zip(x).all(|(a, b)| (*a as i32 - *b as i32).abs() <= 8), "net {k}: witness outside the ball");
                }
                let x: Vec<f64> = w.image.iter().map(|&b| b as f64 / 255.0).collect();
                let mut xp = w.image.clone();
                xp[pixel] ^= 1;
                let xp: Vec<f64> = xp.iter().map(|&b| b as f64 / 255.0).collect();
                let (z, zp) = (exec.forward(&x, 1), exec.forward(&xp, 1));
                let (c, j) = w.classes;
                let own = (zp[c] - zp[j]) - (z[c] - z[j]);
                assert!(
                    (w.value - own).abs() <= 1e-12 * own.abs().max(1e-300),
                    "net {k} pixel {pixel}: value {:e}, the pair's own {own:e}",
                    w.value
                );
                for a in 0..z.len() {
                    for b in 0..z.len() {
                        assert!(
                            (zp[a] - zp[b]) - (z[a] - z[b]) <= w.value + 1e-12,
                            "net {k}: ({a}, {b}) moves more than the reported pair"
                        );
                    }
                }
                assert!(w.value >= start.value, "net {k} pixel {pixel}: climbing lost ground ({:e} < {:e})", w.value, start.value);
                climbed_higher += (w.value > start.value) as usize;
                let bound = cert.pixel(pixel).logit_delta_bound();
                assert!(w.value <= bound, "net {k} pixel {pixel}: found {:e} above the certified {bound:e}", w.value);
            }
        }
    }
    assert!(climbed_higher >= 12, "the climb improved on its starts in only {climbed_higher} of 16 searches");
}
