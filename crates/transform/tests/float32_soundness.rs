//! Soundness of `--semantics f32` against float32 executions.
//!
//! A reference float32 evaluator of the IR ([`Exec32`], written here, independent of the
//! analyses) runs sampled inputs with every sum accumulated in one of several orders (forward,
//! reversed, pairwise), and with `sigmoid` and `exp` results pushed to either edge of the
//! allowed error (`±(K − ½)·2⁻²³` before rounding to float32). Then:
//!
//! * every value of every layer must lie in the forward analysis's bounds (interval and
//!   zonotope domains; points and balls), for each order and perturbation;
//! * for every method, flipped bit and pixel, the certified `f32` bound must be at least the
//!   `|Δp̂|` of sampled byte-image pairs where the two images run with *different* orders and
//!   opposite perturbations, through a float32 softmax (the overflow-safe form);
//! * on small networks where one error term dominates (a sigmoid near 0 behind large gains;
//!   constant logits with the softmax's exps pushed apart), the pushed pair reaches a large part
//!   of the bound, so dropping the sigmoid's error, `x′`'s own rounding, or the softmax's error
//!   makes the test fail (checked by mutation; halving γₙ is not caught: no sampled order comes
//!   near the worst case);
//! * ONNX Runtime's own outputs (`tests/vectors/f32_pairs.json`) lie inside the bounds;
//! * a network built with the float32-underflow trick (first-layer weights near 2⁻¹⁴⁹ and a
//!   large gain after them) answers differently in `real` and `f32`, and the `f32` bound covers
//!   what float32 executions do.
//!
//! The networks are the small EfficientNet-like nets of `support` (stems and gates cycling
//! through swish, ReLU, ReLU6, Hardtanh, sigmoid and HardSigmoid), with every weight rounded
//! to float32 (as an ONNX file stores them) and the normalisation a single division, and the
//! exported `tests/vectors/tiny_effnet_tv.onnx`.

use zonocert_domain::{Interval, SymbolPool, Zonotope};
use zonocert_network::ir::{ChannelAffine, Op};
use zonocert_network::Executor;
use zonocert_network::{onnx, Act};
use zonocert_transform::analysis::{forward_keeping, Domain, Keep};
use zonocert_transform::carried::difference_direction;
use zonocert_transform::float32::{F32Model, Semantics};
use zonocert_transform::maps::PreparedMaps;
use zonocert_transform::sensitivity::{largest_change, probabilities, Certifier, Method, Region, Settings};

mod support;
use support::exec32::{chain, executions, f32_image, f32_net, pair_change, two_class_net, Exec32, Order, MODEL};
use support::{image, Rng};

/// Every layer's float32 values lie in the f32 forward analysis's bounds.
#[test]
fn float32_executions_stay_inside_the_forward_bounds() {
    let mut checked = 0usize;
    for k in 0..6u64 {
        let net = f32_net(k);
        let maps = PreparedMaps::new(&net).with_semantics(Semantics::F32(MODEL));
        let mut rng = Rng(0xF0F0 + k);
        let img = image(&mut rng);
        for (eps, domain) in [
            (0.0, Domain::Interval),
            (0.0, Domain::zonotope(64)),
            (2.0 / 255.0, Domain::zonotope(64)),
            (8.0 / 255.0, Domain::Interval),
            // Few generators, so the rounding and boxed terms are bounded by reverse passes.
            (0.0, Domain::Zonotope { budget: 4, backsub: true }),
            (8.0 / 255.0, Domain::Zonotope { budget: 4, backsub: true }),
        ] {
            let region = Region::Ball(img.clone(), eps);
            let mut pool = SymbolPool::new();
            let input = Zonotope::from_box(&region.input_box(), &mut pool, true);
            let (fwd, _) = forward_keeping(&net, &maps, input, &mut pool, domain, Keep { bounds: true, values: &[] });
            for s in 0..4 {
                // Bytes within the ball (on the 8-bit grid), converted to float32.
                let x: Vec<f32> = img
                    .iter()
                    .map(|&b| {
                        let r = (eps * 255.0).floor() as i64;
                        let v = (b as i64 + if s == 0 { 0 } else { rng.below(2 * r as usize + 1) as i64 - r }).clamp(0, 255);
                        v as f32 / 255.0
                    })
                    .collect();
                for ex in executions() {
                    let vals = ex.run(&net, &x);
                    for (v, (got, b)) in vals.iter().zip(&fwd.bounds).enumerate() {
                        for (j, (&g, b)) in got.iter().zip(b).enumerate() {
                            assert!(
                                b.lo <= g as f64 && g as f64 <= b.hi,
                                "net {k} eps {eps} {domain:?} {ex:?}: value {v}[{j}] = {g:e} outside {b:?}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    println!("{checked} float32 values checked");
    assert!(checked > 1_000_000);
}

/// Certified f32 bounds are at least the |Δp̂| of float32 executions of sampled pairs, the two
/// images run with different orders and opposite perturbations.
#[test]
fn certified_f32_bounds_cover_float32_pairs() {
    let mut pairs = 0usize;
    let mut worst: f64 = 0.0;
    for k in 0..6u64 {
        let net = f32_net(k);
        let mut rng = Rng(0xD1FF + k);
        let img = image(&mut rng);
        let regions = [Region::Global, Region::Ball(img.clone(), 2.0 / 255.0), Region::Point(img.clone())];
        for (r, region) in regions.iter().enumerate() {
            for (m, method) in [Method::Interval, Method::TwinZonotope, Method::DiffZonotope, Method::DiffInterval].into_iter().enumerate()
            {
                let bit = [0u8, 3, 7][(k as usize + m) % 3];
                let settings = Settings {
                    method,
                    region_budget: 64,
                    diff_budget: 32,
                    bit,
                    screen: None,
                    semantics: Semantics::F32(MODEL),
                    carry_errors: false,
                    // Half the networks: the region's terms bounded again by reverse passes.
                    region_backsub: k % 2 == 1,
                    // A third of the networks: the carried rounding bounded again at
                    // relaxation inputs.
                    diff_backsub: k % 3 == 0,
                };
                let cert = Certifier::new(&net, region.clone(), settings);
                for pixel in [rng.below(784), 14 * 28 + 14] {
                    let bound = cert.pixel(pixel);
                    for s in 0..8 {
                        let x: Vec<u8> = match region {
                            Region::Global => (0..784).map(|_| rng.below(256) as u8).collect(),
                            Region::Ball(c, e) => {
                                let rad = (e * 255.0).floor() as i64;
                                c.iter().map(|&b| (b as i64 + rng.below(2 * rad as usize + 1) as i64 - rad).clamp(0, 255) as u8).collect()
                            }
                            Region::Point(c) => c.clone(),
                        };
                        let mut xp = x.clone();
                        xp[pixel] ^= 1 << bit;
                        let ex = executions();
                        let (a, b) = (ex[s % ex.len()], ex[(s * 5 + 4) % ex.len()]);
                        let change = pair_change(&net, (a, &x), (b, &xp));
                        assert!(
                            change <= bound.upper,
                            "net {k} region {r} {method:?} bit {bit} pixel {pixel}: float32 pair moves a probability by {change:e} > certified {:e}",
                            bound.upper
                        );
                        if bound.upper < 1.0 && change / bound.upper > worst {
                            worst = change / bound.upper;
                            println!(
                                "new worst {worst:.4}: net {k} region {r} {method:?} bit {bit} pixel {pixel} change {change:e} bound {:e}",
                                bound.upper
                            );
                        }
                        pairs += 1;
                    }
                }
            }
        }
    }
    println!("{pairs} float32 pairs checked; largest sampled/certified ratio {worst:.3e}");
    assert!(pairs > 1000);
}

/// The flip hull (every pixel's bound at an image or in a ball is at most the width of each
/// class's probability over the region and all its flips, from one forward analysis): it is
/// there under `f32` at images and in balls only, every pixel's certified bound is at most it,
/// it covers float32 pairs run with different orders, and a certifier switched to another bit
/// recomputes it. Taking the hull of the image alone (dropping the flipped byte) fails it
/// (checked by mutation).
#[test]
fn the_flip_hull_bound_covers_float32_pairs() {
    let (mut pairs, mut worst) = (0usize, 0.0f64);
    for k in 0..6u64 {
        let net = f32_net(k);
        let mut rng = Rng(0x4B11 + k);
        let img = image(&mut rng);
        for region in [Region::Point(img.clone()), Region::Ball(img.clone(), 2.0 / 255.0)] {
            for method in [Method::DiffZonotope, Method::Interval] {
                let settings = Settings {
                    method,
                    region_budget: 64,
                    diff_budget: 32,
                    bit: 0,
                    screen: None,
                    semantics: Semantics::F32(MODEL),
                    carry_errors: false,
                    region_backsub: k % 2 == 1,
                    diff_backsub: false,
                };
                let mut shared = Certifier::new(&net, region.clone(), settings);
                for bit in [7u8, 0, 3] {
                    shared.set_bit(bit);
                    let cert = Certifier::new(&net, region.clone(), Settings { bit, ..settings });
                    let hull = cert.flip_hull_bound().expect("a hull at an image and in a ball under f32");
                    assert_eq!(shared.flip_hull_bound(), Some(hull), "net {k} {method:?} bit {bit}: set_bit keeps a stale hull");
                    for pixel in [rng.below(784), 14 * 28 + 14, rng.below(784)] {
                        let upper = cert.pixel(pixel).upper;
                        assert!(upper <= hull, "net {k} {method:?} bit {bit} pixel {pixel}: bound {upper:e} above the hull's {hull:e}");
                        for s in 0..6 {
                            let x: Vec<u8> = match &region {
                                Region::Ball(c, e) => {
                                    let rad = (e * 255.0).floor() as i64;
                                    c.iter()
                                        .map(|&b| (b as i64 + rng.below(2 * rad as usize + 1) as i64 - rad).clamp(0, 255) as u8)
                                        .collect()
                                }
                                _ => img.clone(),
                            };
                            let mut xp = x.clone();
                            xp[pixel] ^= 1 << bit;
                            let ex = executions();
                            let change = pair_change(&net, (ex[s % ex.len()], &x), (ex[(s * 5 + 4) % ex.len()], &xp));
                            assert!(
                                change <= hull,
                                "net {k} {method:?} bit {bit} pixel {pixel}: float32 pair moves a probability by {change:e} > the hull's {hull:e}"
                            );
                            if hull < 1.0 {
                                worst = worst.max(change / hull);
                            }
                            pairs += 1;
                        }
                    }
                }
            }
        }
        let global = Settings { semantics: Semantics::F32(MODEL), ..Settings::default() };
        assert!(Certifier::new(&net, Region::Global, global).flip_hull_bound().is_none());
        assert!(Certifier::new(&net, Region::Point(img), Settings::default()).flip_hull_bound().is_none());
    }
    println!("{pairs} float32 pairs checked against the flip hull; largest sampled/hull ratio {worst:.3e}");
    assert!(worst > 1e-3, "no sampled pair came near the hull bound ({worst:e}): the check cannot tell a wrong hull");
}

/// The float32-underflow construction: first-layer weights so small that every product
/// underflows in float32 (to 0 or a subnormal) while the real products do not, then a large
/// gain. `real` and `f32` differ, and each covers its own semantics.
#[test]
fn the_underflow_trick_is_seen_by_f32_and_not_by_real() {
    use zonocert_network::ir::Linear;
    // input (784) → dense 2 with weights 2^-140 (products ≤ 2^-140: representable only as
    // subnormals in float32, with an absolute error up to 2^-150 each) → ×2^120 → dense 10.
    let w1 = 2f64.powi(-140);
    let tiny = Linear {
        weight: (0..2 * 784).map(|i| if i % 3 == 0 { w1 } else { -w1 * 0.75 }).collect(),
        bias: vec![0.0; 2],
        in_features: 784,
        out_features: 2,
    };
    let gain = ChannelAffine { scale: vec![2f64.powi(120)], shift: vec![0.0], divide: false };
    let head = Linear {
        weight: (0..20).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 } * (1.0 + i as f64 / 8.0)).collect(),
        bias: vec![0.0; 10],
        in_features: 2,
        out_features: 10,
    };
    let net =
        chain(vec![("tiny", Op::Linear(tiny), vec![2]), ("gain", Op::ChannelAffine(gain), vec![2]), ("head", Op::Linear(head), vec![10])]);
    // In float32 each product w·x (≤ 2^-140 · 1) is a subnormal with an absolute rounding
    // error up to 2^-150, amplified by 2^120 to ~2^-30 per term: real and f32 differ.
    let settings = |semantics| Settings {
        method: Method::DiffZonotope,
        region_budget: 64,
        diff_budget: 32,
        bit: 0,
        screen: None,
        semantics,
        carry_errors: false,
        region_backsub: false,
        diff_backsub: false,
    };
    let real = Certifier::new(&net, Region::Global, settings(Semantics::Real));
    let f32c = Certifier::new(&net, Region::Global, settings(Semantics::F32(MODEL)));
    let mut rng = Rng(0x0F10);
    let mut differs = false;
    for pixel in [0usize, 100, 400, 783] {
        let (r, f) = (real.pixel(pixel).upper, f32c.pixel(pixel).upper);
        assert!(f >= r, "pixel {pixel}: f32 bound {f:e} below the real one {r:e}");
        differs |= f > r * (1.0 + 1e-6);
        for s in 0..20 {
            let x: Vec<u8> = (0..784).map(|_| rng.below(256) as u8).collect();
            let mut xp = x.clone();
            xp[pixel] ^= 1;
            let ex = executions();
            let (a, b) = (ex[s % ex.len()], ex[(s + 3) % ex.len()]);
            let change = pair_change(&net, (a, &x), (b, &xp));
            assert!(change <= f, "pixel {pixel}: float32 pair moves a probability by {change:e} > certified f32 {f:e}");
            // The real semantics: the f64 execution (a reference for the reals here: its own
            // rounding is far below the real bound's scale).
            let exec = Executor::<f64>::new(&net);
            let to64 = |v: &[u8]| v.iter().map(|&b| b as f64 / 255.0).collect::<Vec<f64>>();
            let (z, zp) = (exec.forward(&to64(&x), 1), exec.forward(&to64(&xp), 1));
            let (real_change, _) = largest_change(&probabilities(&exec, &z), &probabilities(&exec, &zp));
            assert!(real_change <= r, "pixel {pixel}: real pair moves a probability by {real_change:e} > certified real {r:e}");
        }
    }
    assert!(differs, "the underflow construction should make the f32 bound differ from the real one");
    // Flush-to-zero / denormals-are-zero: the weights read as zero, the logits are constant.
    // The setting matters for the bound (it must cover dropping every subnormal term) and
    // covers such executions.
    let flush = F32Model { flush_subnormals: true, ..MODEL };
    let ftz_cert = Certifier::new(&net, Region::Global, settings(Semantics::F32(flush)));
    let ftz_exec = Exec32 { order: Order::Pairwise, push: 0.0, alternate: false, flush: true };
    for pixel in [0usize, 400] {
        let (keep_bound, flush_bound) = (f32c.pixel(pixel).upper, ftz_cert.pixel(pixel).upper);
        assert!(flush_bound > keep_bound, "pixel {pixel}: flushing should loosen the bound ({flush_bound:e} vs {keep_bound:e})");
        for _ in 0..10 {
            let x: Vec<u8> = (0..784).map(|_| rng.below(256) as u8).collect();
            let mut xp = x.clone();
            xp[pixel] ^= 1;
            // One image with gradual underflow, its twin flushed: still inside the flush bound.
            let change = pair_change(&net, (executions()[0], &x), (ftz_exec, &xp));
            assert!(change <= flush_bound, "pixel {pixel}: FTZ pair moves a probability by {change:e} > certified {flush_bound:e}");
        }
    }
}

/// The exported EfficientNet vector: a float32 execution of its ONNX graph stays inside the
/// f32 forward bounds at its own input.
#[test]
fn exported_network_runs_inside_its_f32_bounds() {
    let net = onnx::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/tiny_effnet_tv.onnx"))
        .expect("vector loads");
    MODEL.check(&net).expect("exported with BatchNorm folded: inside the model");
    let maps = PreparedMaps::new(&net).with_semantics(Semantics::F32(MODEL));
    let mut rng = Rng(0xE0);
    for _ in 0..3 {
        let img = image(&mut rng);
        let region = Region::Ball(img.clone(), 1.0 / 255.0);
        let mut pool = SymbolPool::new();
        let input = Zonotope::from_box(&region.input_box(), &mut pool, true);
        let (fwd, _) = forward_keeping(&net, &maps, input, &mut pool, Domain::zonotope(64), Keep { bounds: true, values: &[] });
        for ex in executions() {
            let out = ex.run(&net, &f32_image(&img)).pop().expect("output");
            let b: &[Interval] = &fwd.bounds[net.output.0];
            for (j, (&g, b)) in out.iter().zip(b).enumerate() {
                assert!(b.lo <= g as f64 && g as f64 <= b.hi, "{ex:?}: logit {j} = {g:e} outside {b:?}");
            }
        }
    }
}

/// ONNX Runtime's own float32 executions (`tests/vectors/f32_pairs.py`: graph optimisations
/// off and fully on, one image per run) of sampled pairs on the exported EfficientNet: their
/// logits lie in the f32 forward bounds at each image, and their `|Δp̂|` is at most the
/// certified f32 bound over the global region (every method) and at the image.
#[test]
fn onnx_runtime_pairs_are_inside_the_f32_bounds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors");
    let net = onnx::load(&dir.join("tiny_effnet_tv.onnx")).expect("vector loads");
    let text = std::fs::read_to_string(dir.join("f32_pairs.json")).expect("tests/vectors/f32_pairs.json (tests/vectors/f32_pairs.py)");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let floats = |x: &serde_json::Value| -> Vec<f64> { x.as_array().expect("array").iter().map(|f| f.as_f64().expect("number")).collect() };
    let images: Vec<Vec<u8>> =
        v["images"].as_array().expect("images").iter().map(|i| floats(i).into_iter().map(|b| b as u8).collect()).collect();
    let maps = PreparedMaps::new(&net).with_semantics(Semantics::F32(MODEL));
    let settings = |method, bit, diff_backsub| Settings {
        method,
        region_budget: 128,
        diff_budget: 64,
        bit,
        screen: None,
        semantics: Semantics::F32(MODEL),
        carry_errors: false,
        region_backsub: false,
        diff_backsub,
    };
    let mut global: std::collections::HashMap<(&str, u8), Certifier> = std::collections::HashMap::new();
    let (mut checked, mut worst) = (0usize, 0.0f64);
    for case in v["cases"].as_array().expect("cases") {
        let img = &images[case["image"].as_u64().expect("index") as usize];
        let (pixel, bit) = (case["pixel"].as_u64().expect("pixel") as usize, case["bit"].as_u64().expect("bit") as u8);
        let (p, q) = (floats(&case["p"]), floats(&case["p_flipped"]));
        let change = p.iter().zip(&q).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        // ORT's logits of the image inside the f32 forward bounds at that image.
        let mut pool = SymbolPool::new();
        let input = Zonotope::from_box(&Region::Point(img.clone()).input_box(), &mut pool, false);
        let (fwd, _) = forward_keeping(&net, &maps, input, &mut pool, Domain::Interval, Keep { bounds: true, values: &[] });
        for (j, (z, b)) in floats(&case["logits"]).iter().zip(&fwd.bounds[net.output.0]).enumerate() {
            assert!(b.lo <= *z && *z <= b.hi, "ORT logit {j} = {z:e} outside the f32 bounds {b:?}");
        }
        for method in [Method::Interval, Method::TwinZonotope, Method::DiffZonotope, Method::DiffInterval] {
            let cert =
                global.entry((method.name(), bit)).or_insert_with(|| Certifier::new(&net, Region::Global, settings(method, bit, false)));
            let u = cert.pixel(pixel).upper;
            assert!(change <= u, "{method:?} global, pixel {pixel} bit {bit}: ORT moves a probability by {change:e} > certified f32 {u:e}");
        }
        // For bit 7, the carried rounding bounded again at relaxation inputs.
        let at_image = Certifier::new(&net, Region::Point(img.clone()), settings(Method::DiffZonotope, bit, bit == 7)).pixel(pixel).upper;
        assert!(
            change <= at_image,
            "at the image, pixel {pixel} bit {bit}: ORT moves a probability by {change:e} > certified f32 {at_image:e}"
        );
        worst = worst.max(change / at_image);
        checked += 1;
    }
    println!("{checked} ONNX Runtime pairs checked; largest |Δp̂| / certified at the image {worst:.3e}");
    assert!(checked >= 100);
}

/// Each error term of the f32 model is needed, on networks where it dominates. At one image,
/// the image runs with every sigmoid and exp pushed up by `K − ½` units and its flipped twin
/// with them pushed down: the certified bound must hold. On a sigmoid near 0 (σ ≈ 2·10⁻⁹, so
/// its absolute error of up to K·2⁻²³ is all there is) amplified by gains ±2¹⁰, this fails
/// without the sigmoid's error or without `x′`'s own rounding in the differential analysis; on
/// constant logits (ReLU of a negative number) with the odd class's exp pushed the other way,
/// it fails without the softmax's error.
#[test]
fn each_f32_error_term_is_needed() {
    let mut rng = Rng(0x5EED);
    let img = image(&mut rng);
    let k = MODEL.ulp - 0.5;
    let cases = [
        (
            "sigmoid",
            two_class_net(-20.0, Act::Sigmoid, [1024.0, -1024.0]),
            false,
            0.5,
            vec![Method::Interval, Method::TwinZonotope, Method::DiffZonotope, Method::DiffInterval],
        ),
        // The softmax's relative bound θ·(p(x) + p(x′)) is about 2.7 times this worst push.
        ("softmax", two_class_net(-1.0, Act::Relu, [1.0, 1.0]), true, 0.25, vec![Method::DiffZonotope, Method::DiffInterval]),
    ];
    for (name, net, alternate, floor, methods) in cases {
        let (up, down) = (
            Exec32 { order: Order::Forward, push: k, alternate, flush: false },
            Exec32 { order: Order::Forward, push: -k, alternate, flush: false },
        );
        let mut tightest: f64 = 0.0;
        for method in methods {
            let settings = Settings {
                method,
                region_budget: 16,
                diff_budget: 16,
                bit: 0,
                screen: None,
                semantics: Semantics::F32(MODEL),
                carry_errors: false,
                region_backsub: false,
                diff_backsub: false,
            };
            let cert = Certifier::new(&net, Region::Point(img.clone()), settings);
            for pixel in [0usize, 300] {
                let bound = cert.pixel(pixel).upper;
                let mut flipped = img.clone();
                flipped[pixel] ^= 1;
                let change = pair_change(&net, (up, &img), (down, &flipped));
                assert!(
                    change <= bound,
                    "{name}, {method:?} pixel {pixel}: pushed pair moves a probability by {change:e} > certified {bound:e}"
                );
                tightest = tightest.max(change / bound);
            }
        }
        println!("{name}: largest pushed/certified ratio {tightest:.3}");
        // The pushes must be a large part of the bound, or dropping a term could go unseen.
        assert!(tightest > floor, "{name}: the construction no longer makes its rounding term dominate ({tightest})");
    }
}

/// The differential analysis carries the float32 rounding beside `D` and bounds it along each
/// logit difference by reverse passes (`zonocert_transform::carried`). Check it against the
/// model's worst case made concrete: both images run in f64 with, after every layer, each
/// neuron moved by the model's whole rounding bound there (`F32Model::layer_error` at the values
/// the layer actually reads), in the direction that grows `Δ(z_c − z_j)` to first order (the
/// sign of the reverse-mode gradient; opposite signs for `x`). Such a run is inside the f32
/// model, so `Δ(z_c − z_j)` must lie in the certified bounds. Because the push follows the
/// gradient, it reaches a large part of the carried bound, and dropping any path of the reverse
/// pass (the gate of a squeeze-excite product, a residual branch) fails the test (checked by
/// mutation).
#[test]
fn carried_rounding_covers_gradient_aligned_rounding() {
    let exported = onnx::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vectors/tiny_effnet_tv.onnx")))
        .expect("tests/vectors/tiny_effnet_tv.onnx");
    let nets: Vec<zonocert_network::Network> = (0..6u64).map(f32_net).chain(std::iter::once(exported)).collect();
    let (mut checked, mut reach): (usize, f64) = (0, 0.0);
    for (n, net) in nets.iter().enumerate() {
        let exec = Executor::<f64>::new(net);
        let maps = PreparedMaps::new(net);
        let mut rng = Rng(0xCA77 + n as u64);
        let img = image(&mut rng);
        for region in [Region::Point(img.clone()), Region::Ball(img.clone(), 2.0 / 255.0)] {
            let f32_settings =
                Settings { method: Method::DiffZonotope, screen: None, semantics: Semantics::F32(MODEL), ..Settings::default() };
            let cert = Certifier::new(net, region.clone(), f32_settings);
            let real = Certifier::new(net, region.clone(), Settings { semantics: Semantics::Real, ..f32_settings });
            for pixel in [rng.below(784), 14 * 28 + 14] {
                let dd = cert.logit_difference_bounds(pixel, f32_settings.diff_budget);
                let dd_real = real.logit_difference_bounds(pixel, f32_settings.diff_budget);
                let mut flipped = img.clone();
                flipped[pixel] ^= 1;
                let unit = |b: &[u8]| -> Vec<f64> { b.iter().map(|&v| v as f64 / 255.0).collect() };
                let (x, xp) = (unit(&img), unit(&flipped));
                let classes = dd.len();
                for c in 0..classes {
                    for j in c + 1..classes {
                        let v = difference_direction(classes, c, j);
                        // z_c − z_j of one image run with every layer pushed by `sign`·bound
                        // along the gradient of z_c − z_j at that image.
                        let pushed = |input: &[f64], sign: f64| -> f64 {
                            let values = exec.forward_all_values(input, 1, true);
                            let grads = exec.value_gradients(&values, 1, v.clone());
                            let out = exec.forward_all_values_with(input, 1, true, &mut |k, held, out| {
                                let layer = &net.layers[k];
                                let point = |id: usize| -> Vec<Interval> {
                                    held[id].as_ref().expect("kept").iter().map(|&t| Interval::point(t)).collect()
                                };
                                let second = layer.inputs.get(1).map(|id| point(id.0));
                                let e = MODEL.layer_error(net, &maps, k, (&point(layer.inputs[0].0), second.as_deref()));
                                if let Some(g) = &grads[k + 1] {
                                    for ((o, e), g) in out.iter_mut().zip(e).zip(g) {
                                        *o += sign * g.signum() * e;
                                    }
                                }
                            });
                            let z = out.last().and_then(|z| z.clone()).expect("output");
                            z[c] - z[j]
                        };
                        let change = pushed(&xp, 1.0) - pushed(&x, -1.0);
                        assert!(
                            dd[c][j].lo <= change && change <= dd[c][j].hi,
                            "net {n} {region:?} pixel {pixel}: pushed Δ(z_{c} − z_{j}) = {change:e} outside the certified [{:e}, {:e}]",
                            dd[c][j].lo,
                            dd[c][j].hi
                        );
                        // How much of the f32 bound's extra width the push reaches.
                        let extra = dd[c][j].hi - dd_real[c][j].hi;
                        if extra > 0.0 {
                            reach = reach.max((change - dd_real[c][j].hi) / extra);
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} pushed logit differences checked; largest reach into the f32 widening {reach:.5}");
    assert!(checked > 200);
    // The push must come close to the bound, or a dropped path could go unseen.
    assert!(reach > 0.9, "the gradient-aligned push reaches only {reach} of the f32 widening");
}
