//! `Certifier::logit_input_difference`, the difference zonotope `D` at the input of the logit
//! layer that `certify --export-logit-input` writes for refitting a classifier against the
//! certified bound (`training/refit_classifier.py`).
//!
//! Over the global region of small random EfficientNet-like networks, for a few pixels:
//! - every sampled pair's difference of the classifier's inputs lies in `D`'s bounds (the
//!   export is sound);
//! - `D` mapped through the last dense layer along `w_c − w_j` (centre, generators, error box:
//!   what the refit script computes) is at least the certified bound on `Δ(z_c − z_j)`
//!   (the refit minimises an upper bound of what zonocert then certifies) and at most a small
//!   factor above it: equal up to rounding without carried terms, within 3× with them (the
//!   export boxes them; zonocert bounds them by reverse passes).

use zonocert_network::exec::Executor;
use zonocert_network::{Network, Op};
use zonocert_transform::sensitivity::{Certifier, Method, Region, Settings};

mod support;
use support::{act_variant, image, tiny_net_with, Rng};

const PIXELS: usize = 784;

/// The logit layer's index and its weights (row-major `[classes, inputs]`).
fn logit_layer(net: &Network) -> (usize, Vec<f64>, usize) {
    let k = net.output.0 - 1;
    match &net.layers[k].op {
        Op::Linear(l) => (k, l.weight.clone(), l.in_features),
        op => panic!("the test nets end in a dense layer, not {}", op.kind()),
    }
}

#[test]
fn exported_logit_input_difference_is_sound_and_matches_the_certified_bound() {
    let mut checked_pairs = 0usize;
    let mut informative = 0usize;
    for k in 0..4u64 {
        let (stem, gate) = act_variant(k);
        let net = tiny_net_with(0x5EED_0000 + 31 * k, 2 + (k % 2) as usize, 1, stem, gate);
        let (layer, w, n_in) = logit_layer(&net);
        let input_id = net.layers[layer].inputs[0].0;
        let classes = w.len() / n_in;
        let settings = Settings {
            method: Method::DiffZonotope,
            region_budget: 256,
            diff_budget: 64,
            bit: 0,
            screen: None,
            semantics: Default::default(),
            carry_errors: k % 2 == 1,
            region_backsub: k % 3 == 2,
            diff_backsub: k % 4 == 3,
        };
        let cert = Certifier::new(&net, Region::Global, settings);
        let exec = Executor::<f64>::new(&net);
        let mut rng = Rng(0xD1FF + k);
        for pixel in [0usize, 14 * 28 + 13, rng.below(PIXELS)] {
            let d = cert.logit_input_difference(pixel).expect("a differential method over a dense classifier");
            assert_eq!(d.dim(), n_in);
            let bounds = d.bounds();

            // Sampled pairs: all-black, all-white and MNIST-like images and their twins.
            let mut images = vec![vec![0u8; PIXELS], vec![255u8; PIXELS]];
            images.extend((0..60).map(|_| image(&mut rng)));
            for img in &images {
                let mut twin = img.clone();
                twin[pixel] ^= 1;
                let mut input: Vec<f64> = img.iter().map(|&b| f64::from(b) / 255.0).collect();
                input.extend(twin.iter().map(|&b| f64::from(b) / 255.0));
                let values = exec.forward_all_values(&input, 2, true);
                let v = values[input_id].as_ref().expect("kept");
                for (j, b) in bounds.iter().enumerate() {
                    let diff = v[n_in + j] - v[j];
                    assert!(b.lo <= diff && diff <= b.hi, "net {k} pixel {pixel} input {j}: {diff:e} outside [{:e}, {:e}]", b.lo, b.hi);
                    checked_pairs += 1;
                }
            }

            // Through the last layer, as the refit script computes it.
            let certified = cert.logit_difference_bounds(pixel, settings.diff_budget);
            let n_gens = d.gens.len() / n_in;
            for c in 0..classes {
                for j in 0..classes {
                    if c == j {
                        continue;
                    }
                    let u: Vec<f64> = (0..n_in).map(|i| w[c * n_in + i] - w[j * n_in + i]).collect();
                    let dot = |row: &[f64]| row.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>();
                    let through: f64 = dot(&d.centre).abs()
                        + (0..n_gens).map(|g| dot(&d.gens[g * n_in..(g + 1) * n_in]).abs()).sum::<f64>()
                        + u.iter().zip(&d.err).map(|(a, e)| a.abs() * e).sum::<f64>();
                    let cb = certified[c][j].lo.abs().max(certified[c][j].hi.abs());
                    assert!(through >= cb * (1.0 - 1e-9), "net {k} pixel {pixel} ({c},{j}): export gives {through:e} < certified {cb:e}");
                    // Without carried terms the export is the certified analysis itself; with them
                    // it boxes what zonocert bounds by reverse passes.
                    let slack = if settings.carry_errors { 3.0 } else { 1.0 + 1e-9 };
                    assert!(
                        through <= slack * cb + 1e-300,
                        "net {k} pixel {pixel} ({c},{j}): export gives {through:e}, above {slack} × certified {cb:e}"
                    );
                    informative += usize::from(through < 1.0);
                }
            }
        }
    }
    assert!(checked_pairs > 1000, "only {checked_pairs} sampled differences checked");
    assert!(informative > 0, "no finite, informative exported bound: the comparison says nothing");
}

#[test]
fn no_export_without_a_differential_method() {
    let net = tiny_net_with(0x5EED_0001, 2, 1, act_variant(0).0, act_variant(0).1);
    let settings = Settings {
        method: Method::TwinZonotope,
        region_budget: 64,
        diff_budget: 16,
        bit: 0,
        screen: None,
        semantics: Default::default(),
        carry_errors: false,
        region_backsub: false,
        diff_backsub: false,
    };
    assert!(Certifier::new(&net, Region::Global, settings).logit_input_difference(0).is_none());
}

/// `pixel_with_logit_input` (the one pass `certify --export-logit-input` runs) gives exactly
/// what the two separate calls give: the same certified bounds as `pixel` (no screening) and
/// the same exported zonotope as `logit_input_difference`.
#[test]
fn one_pass_export_equals_the_separate_certificate_and_export() {
    for k in 0..2u64 {
        let (stem, gate) = act_variant(k);
        let net = tiny_net_with(0x5EED_0100 + k, 2, 1, stem, gate);
        for screen in [None, Some(Default::default())] {
            let settings = Settings {
                method: if k == 0 { Method::DiffZonotope } else { Method::DiffInterval },
                region_budget: 128,
                diff_budget: 32,
                bit: 0,
                screen,
                semantics: Default::default(),
                carry_errors: true,
                region_backsub: false,
                diff_backsub: false,
            };
            let cert = Certifier::new(&net, Region::Global, settings);
            for pixel in [3usize, 14 * 28 + 13] {
                let (bound, z) = cert.pixel_with_logit_input(pixel);
                let z = z.expect("a differential method over a dense classifier");
                assert_eq!(Some(&z), cert.logit_input_difference(pixel).as_ref(), "net {k} pixel {pixel}: exported zonotope");
                let alone = cert.pixel(pixel);
                if !alone.screened {
                    assert_eq!(bound, alone, "net {k} pixel {pixel}: certified bound");
                } else {
                    // The screening pass settled at the trivial bound: the full pass can only say more.
                    assert!(bound.upper <= alone.upper, "net {k} pixel {pixel}: {} above the screened {}", bound.upper, alone.upper);
                }
                assert!(!bound.screened);
            }
        }
    }
}
