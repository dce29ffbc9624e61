//! Sampled soundness of the certified bit-flip sensitivity over the GLOBAL region (every image
//! of `[0,1]^784`), on small random EfficientNet-like networks (no MNIST needed).
//!
//! For each network, method (`interval`, `twin-zonotope`, `diff-zonotope` without screening,
//! `diff-zonotope` with a screening pass forced to decide), flipped bit (0, 3, 7) and pixel (one
//! random, the centre, one corner), the certified `upper` must bound `max_c |p_c(x′) − p_c(x)|`
//! of every sampled pair `x`, `x′ = x` with that bit of that pixel flipped, both on the 8-bit
//! grid: cube vertices (every byte 0 or 255), uniform random bytes, MNIST-like images
//! (`support::image`), and the witness of the lower-bound search (`falsify::search`, whose
//! claimed value is re-evaluated here). The certified bounds on every `Δ(z_c − z_j)`
//! (`Certifier::logit_difference_bounds`) must contain the sampled `Δ(z_c − z_j)` too: the
//! probability bound is capped (at the probability ranges and at 1), which can hide an unsound
//! logit-difference bound.
//!
//! The reference is the `f64` executor with no tolerance (as in `layer_soundness.rs`): the
//! analyses' rounding slack dwarfs the executor's own rounding at these widths. To keep the
//! check from being vacuous, most certified bounds must be informative (< 0.5).
//!
//! A last test checks that the thread count does not change any result (bit for bit).

use rayon::ThreadPoolBuilder;
use zonocert_domain::Interval;
use zonocert_network::exec::Executor;
use zonocert_network::{Act, Network};
use zonocert_transform::falsify::{search, SearchSettings};
use zonocert_transform::sensitivity::{probabilities, Certifier, Method, PixelBound, Region, Screen, Settings};

mod support;
use support::{act_variant, image, tiny_net, tiny_net_with, Rng};

const PIXELS: usize = 784;
const BITS: [u8; 3] = [0, 3, 7];
/// Random pairs per (network, bit, pixel) besides the search witness: a third cube vertices, a
/// third uniform bytes, a third MNIST-like images.
const PAIRS_PER_KIND: usize = 100;

/// The certifier variants checked, by name.
const VARIANTS: [&str; 8] = [
    "interval",
    "twin-zonotope",
    "diff-zonotope",
    "diff-zonotope (screening pass forced)",
    "diff-interval",
    "diff-zonotope (errors carried)",
    "diff-zonotope (region back-substituted)",
    "diff-zonotope (carried term back-substituted)",
];

fn settings(variant: usize, bit: u8) -> Settings {
    let base = Settings {
        method: Method::DiffZonotope,
        region_budget: 512,
        diff_budget: 256,
        bit,
        screen: None,
        semantics: Default::default(),
        carry_errors: false,
        region_backsub: false,
        diff_backsub: false,
    };
    match variant {
        0 => Settings { method: Method::Interval, ..base },
        1 => Settings { method: Method::TwinZonotope, ..base },
        2 => base,
        3 => Settings { screen: Some(Screen { budget: 0, factor: 1e-300 }), ..base },
        4 => Settings { method: Method::DiffInterval, ..base },
        // A small budget, so that many terms are boxed and then carried.
        5 => Settings { diff_budget: 4, carry_errors: true, ..base },
        // A small region budget, so that many region terms are boxed and then bounded again.
        6 => Settings { region_budget: 8, region_backsub: true, carry_errors: true, ..base },
        // Variant 5's budget, the carried term bounded again at every relaxation input.
        _ => Settings { diff_budget: 4, diff_backsub: true, ..base },
    }
}

/// The difference budget the variant's bounds come from (the screening pass's when forced).
fn budget_of(variant: usize, cert: &Certifier) -> usize {
    if variant == 3 {
        0
    } else {
        cert.settings().diff_budget
    }
}

/// A network of the sweep: seeds, widths, SE widths, stem activations and gates varied.
fn net_config(k: u64) -> (u64, usize, usize, (Act, Act)) {
    let seed = 0x6C0B_A100 + k * 7919;
    (seed, 2 + (k % 3) as usize, 1 + ((k / 3) % 2) as usize, act_variant(k))
}

fn n_nets() -> u64 {
    std::env::var("ZONOCERT_GLOBAL_NETS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// Logits of `x` and of `x` with `bit` of `pixel` flipped, for a batch of byte images.
fn pair_logits(exec: &Executor<f64>, images: &[Vec<u8>], pixel: usize, bit: u8) -> (Vec<f64>, Vec<f64>) {
    let n = images.len();
    let mut input = Vec::with_capacity(2 * n * PIXELS);
    for img in images {
        input.extend(img.iter().map(|&b| b as f64 / 255.0));
    }
    for img in images {
        input.extend(img.iter().enumerate().map(|(j, &b)| (if j == pixel { b ^ (1 << bit) } else { b }) as f64 / 255.0));
    }
    let z = exec.forward(&input, 2 * n);
    let k = z.len() / (2 * n);
    (z[..n * k].to_vec(), z[n * k..].to_vec())
}

/// `max_c |p_c(x′) − p_c(x)|` and its class, from the two logit vectors.
fn sensitivity(exec: &Executor<f64>, z: &[f64], zp: &[f64]) -> (f64, usize) {
    let (p, q) = (probabilities(exec, z), probabilities(exec, zp));
    p.iter().zip(&q).map(|(a, b)| (a - b).abs()).enumerate().fold((0.0, 0), |best, (c, v)| if v > best.0 { (v, c) } else { best })
}

/// The sampled images for one (network, bit, pixel): cube vertices, uniform bytes, MNIST-like.
fn sample_images(rng: &mut Rng) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(3 * PAIRS_PER_KIND + 2);
    out.push(vec![0u8; PIXELS]);
    out.push(vec![255u8; PIXELS]);
    for _ in 0..PAIRS_PER_KIND {
        out.push((0..PIXELS).map(|_| if rng.next() & 1 == 0 { 0 } else { 255 }).collect());
    }
    for _ in 0..PAIRS_PER_KIND {
        out.push((0..PIXELS).map(|_| rng.below(256) as u8).collect());
    }
    for _ in 0..PAIRS_PER_KIND {
        out.push(image(rng));
    }
    out
}

#[derive(Default)]
struct Tally {
    bounds: usize,
    informative: usize,
    per_variant: [(usize, usize, f64); 8],
    pairs: usize,
    logit_checks: usize,
    /// Smallest relative margin of a sampled Δ(z_c − z_j) inside its certified bounds.
    min_logit_margin: f64,
    /// Largest sampled / certified ratio of the probability bound.
    max_ratio: [f64; 8],
    /// Largest |sampled Δ(z_c − z_j)| / magnitude of its certified bounds, per variant.
    max_logit_ratio: [f64; 8],
    /// Certified logit-difference bounds that were not finite, per variant.
    infinite_logit: [usize; 8],
    /// Bounds of the back-substituted carried term (variant 7) below and above the boxed
    /// ones at the same budget (variant 5), by more than one part in 10⁹.
    backsub_vs_boxed: (usize, usize),
}

/// Checks one network over every bit, pixel and variant; returns the tallies.
fn check_net(k: u64, tally: &mut Tally) {
    let (seed, channels, se, (stem, gate)) = net_config(k);
    let net: Network = tiny_net_with(seed, channels, se, stem, gate);
    let exec = Executor::<f64>::new(&net);
    let mut rng = Rng(seed ^ 0x610B_A15E);
    let corners = [0, 27, 27 * 28, 783];
    let pixels = [rng.below(PIXELS), 14 * 28 + 14, corners[(k % 4) as usize]];
    let ctx = |bit: u8, pixel: usize| {
        format!("net {k} (seed {seed:#x}, channels {channels}, se {se}, stem {stem:?}, gate {gate:?}) bit {bit} pixel {pixel}")
    };
    for bit in BITS {
        let certs: Vec<Certifier> = (0..VARIANTS.len()).map(|v| Certifier::new(&net, Region::Global, settings(v, bit))).collect();
        for &pixel in &pixels {
            let bounds: Vec<PixelBound> = certs.iter().map(|c| c.pixel(pixel)).collect();
            let dd: Vec<Vec<Vec<Interval>>> =
                certs.iter().enumerate().map(|(v, c)| c.logit_difference_bounds(pixel, budget_of(v, c))).collect();
            let mut images = sample_images(&mut rng);
            // The lower-bound search's witness, re-evaluated here.
            let s = SearchSettings { restarts: 2, rounds: 12, batch: 16, seed: seed ^ bit as u64, ascent_steps: 10 };
            let w = search(&exec, &Region::Global, pixel, bit, s);
            assert_eq!(w.pixel, pixel, "{}: witness for the wrong pixel", ctx(bit, pixel));
            assert_eq!(w.image.len(), PIXELS, "{}: witness image has {} bytes", ctx(bit, pixel), w.image.len());
            let (wz, wzp) = pair_logits(&exec, std::slice::from_ref(&w.image), pixel, bit);
            let (wv, _) = sensitivity(&exec, &wz, &wzp);
            assert!((wv - w.value).abs() <= 1e-12, "{}: witness claims {:e}, re-evaluated {:e}", ctx(bit, pixel), w.value, wv);
            images.push(w.image.clone());
            let n = images.len();
            let (z, zp) = pair_logits(&exec, &images, pixel, bit);
            let classes = z.len() / n;
            let mut worst = (0.0f64, 0usize);
            for s in 0..n {
                let (zs, zps) = (&z[s * classes..(s + 1) * classes], &zp[s * classes..(s + 1) * classes]);
                let (v, _) = sensitivity(&exec, zs, zps);
                if v > worst.0 {
                    worst = (v, s);
                }
                for (var, d) in dd.iter().enumerate() {
                    for c in 0..classes {
                        for j in 0..classes {
                            if c == j {
                                continue;
                            }
                            let delta = (zps[c] - zps[j]) - (zs[c] - zs[j]);
                            let b = d[c][j];
                            assert!(
                                b.contains(delta),
                                "{} {}: sampled Δ(z_{c} − z_{j}) = {:e} outside certified {:?} (sample {s} of {n}, the last is the witness)",
                                VARIANTS[var],
                                ctx(bit, pixel),
                                delta,
                                b
                            );
                            // The per-pixel summary reported as `logit_delta_bound`.
                            let reported = bounds[var].logit_delta_bound();
                            assert!(
                                delta.abs() <= reported,
                                "{} {}: sampled |Δ(z_{c} − z_{j})| = {:e} above the reported logit_delta_bound {:e}",
                                VARIANTS[var],
                                ctx(bit, pixel),
                                delta.abs(),
                                reported
                            );
                            if b.is_finite() {
                                tally.max_logit_ratio[var] = tally.max_logit_ratio[var].max(delta.abs() / b.mag());
                            } else if s == 0 {
                                tally.infinite_logit[var] += 1;
                            }
                            let w = b.hi - b.lo;
                            if w > 0.0 {
                                tally.min_logit_margin = tally.min_logit_margin.min((delta - b.lo).min(b.hi - delta) / w);
                            }
                            tally.logit_checks += 1;
                        }
                    }
                }
            }
            tally.pairs += n;
            let (tight, boxed) = (bounds[7].upper, bounds[5].upper);
            if tight < boxed * (1.0 - 1e-9) {
                tally.backsub_vs_boxed.0 += 1;
            } else if tight > boxed * (1.0 + 1e-9) {
                tally.backsub_vs_boxed.1 += 1;
            }
            for (var, b) in bounds.iter().enumerate() {
                assert!(
                    worst.0 <= b.upper,
                    "{} {}: sampled |Δp| = {:e} (sample {} of {n}, the last is the witness) > certified {:e}",
                    VARIANTS[var],
                    ctx(bit, pixel),
                    worst.0,
                    worst.1,
                    b.upper
                );
                if var == 3 {
                    assert!(b.screened, "{} {}: a screening pass with factor 1e-300 must decide", VARIANTS[var], ctx(bit, pixel));
                }
                tally.bounds += 1;
                tally.per_variant[var].0 += 1;
                if b.upper < 0.5 {
                    tally.informative += 1;
                    tally.per_variant[var].1 += 1;
                }
                tally.per_variant[var].2 += b.upper;
                tally.max_ratio[var] = tally.max_ratio[var].max(worst.0 / b.upper);
            }
            println!(
                "net {k:2} bit {bit} pixel {pixel:3}: sampled {:.4e} (witness {:.4e}) certified interval {:.4e} twin {:.4e} diff {:.4e} screened {:.4e}",
                worst.0, w.value, bounds[0].upper, bounds[1].upper, bounds[2].upper, bounds[3].upper
            );
        }
    }
}

/// Every sampled pair's |Δp_c| and Δ(z_c − z_j) lie within the certified bounds of every method,
/// and most bounds are informative.
#[test]
fn global_region_bounds_sampled_pairs() {
    let mut tally = Tally { min_logit_margin: f64::INFINITY, ..Tally::default() };
    let nets = n_nets();
    for k in 0..nets {
        check_net(k, &mut tally);
    }
    let frac = tally.informative as f64 / tally.bounds as f64;
    println!(
        "{} bounds over {nets} nets, {} pairs, {} logit-difference checks; bounds < 0.5: {} ({:.1} %); smallest relative margin of a sampled Δ(z_c − z_j) inside its bounds: {:e}",
        tally.bounds,
        tally.pairs,
        tally.logit_checks,
        tally.informative,
        100.0 * frac,
        tally.min_logit_margin
    );
    for (v, name) in VARIANTS.iter().enumerate() {
        let (n, inf, sum) = tally.per_variant[v];
        println!(
            "  {name}: {inf}/{n} < 0.5, mean upper {:.4}, largest sampled/certified |Δp| {:.4}, largest sampled/certified |Δ(z_c − z_j)| {:.4}, non-finite Δ(z_c − z_j) bounds {}",
            sum / n as f64,
            tally.max_ratio[v],
            tally.max_logit_ratio[v],
            tally.infinite_logit[v]
        );
    }
    // Non-vacuity. Over all of [0,1]^784 the interval and twin methods only ever certify 1 here
    // (measured: 0 of 180 bounds below 0.5); their checks bite through the logit differences,
    // which must then all be finite. The diff-zonotope bounds must mostly be informative.
    for (v, name) in VARIANTS.iter().enumerate() {
        let (n, inf, _) = tally.per_variant[v];
        let need = MIN_INFORMATIVE[v];
        assert!(
            inf as f64 >= need * n as f64,
            "{name}: only {inf} of {n} certified bounds are < 0.5 (need {:.0} %): the check is close to vacuous",
            100.0 * need
        );
        assert_eq!(tally.infinite_logit[v], 0, "{name}: non-finite logit-difference bounds: the containment check is vacuous there");
    }
    // The carried term's reverse passes must pay for themselves: at the same small budget, the
    // back-substituted bounds are tighter on average than the boxed ones, and seldom looser (a
    // narrower relaxation can change which terms the budget keeps).
    let mean = |v: usize| tally.per_variant[v].2 / tally.per_variant[v].0 as f64;
    let (tighter, looser) = tally.backsub_vs_boxed;
    println!("{} against {}: {tighter} bounds tighter, {looser} looser", VARIANTS[7], VARIANTS[5]);
    assert!(
        mean(7) < mean(5) && tighter >= 4 * looser.max(1),
        "{}: mean upper {:.4} against {}'s {:.4}; {tighter} bounds tighter, {looser} looser",
        VARIANTS[7],
        mean(7),
        VARIANTS[5],
        mean(5)
    );
}

/// Fraction of the (network, bit, pixel) bounds of each variant that must be below 0.5
/// (measured with 20 networks: 0 %, 0 %, 96 %, 92 %, 92 %, 96 %, 97 %).
const MIN_INFORMATIVE: [f64; 8] = [0.0, 0.0, 0.8, 0.7, 0.7, 0.8, 0.8, 0.8];

/// The thread count changes no bit of any result: every method on a point, a ball and the
/// global region, with 1, 2 and 3 threads.
#[test]
fn results_do_not_depend_on_thread_count() {
    let net = tiny_net(0x7EAD, 3, 2, false);
    let mut rng = Rng(0x7EAD);
    let img = image(&mut rng);
    let pixels = [rng.below(PIXELS), 14 * 28 + 14, 0, 400];
    let regions =
        [("point", Region::Point(img.clone())), ("ball 2/255", Region::Ball(img.clone(), 2.0 / 255.0)), ("global", Region::Global)];
    let run = |threads: usize, region: &Region, variant: usize, bit: u8| -> Vec<(PixelBound, Vec<Vec<Interval>>)> {
        let pool = ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| {
            let cert = Certifier::new(&net, region.clone(), settings(variant, bit));
            pixels.iter().map(|&i| (cert.pixel(i), cert.logit_difference_bounds(i, budget_of(variant, &cert)))).collect()
        })
    };
    // The default screening too (which on these nets never decides).
    for (name, region) in &regions {
        for variant in 0..VARIANTS.len() {
            for bit in [0u8, 7] {
                let one = run(1, region, variant, bit);
                for threads in [2, 3] {
                    let many = run(threads, region, variant, bit);
                    for ((a, da), (b, db)) in one.iter().zip(&many) {
                        assert_eq!(a, b, "{} {name} bit {bit} pixel {}: 1 thread vs {threads} threads differ", VARIANTS[variant], a.pixel);
                        assert_eq!(
                            da, db,
                            "{} {name} bit {bit} pixel {}: logit-difference bounds differ between 1 and {threads} threads",
                            VARIANTS[variant], a.pixel
                        );
                    }
                }
            }
        }
        let default = |threads: usize| {
            let pool = ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            pool.install(|| {
                let cert = Certifier::new(&net, region.clone(), Settings::default());
                pixels.iter().map(|&i| cert.pixel(i)).collect::<Vec<_>>()
            })
        };
        assert_eq!(default(1), default(2), "default settings {name}: 1 thread vs 2 threads differ");
    }
}

/// A two-class linear network `z = W·x + b` with small weights, its logit difference centred on
/// the cube: over the global region `p_0` stays near ½, the certified logit differences are
/// exact (affine), and the softmax mean-value form `p(1 − p)·|Δ(z_0 − z_1)|` is tight to
/// ~1e-4. Every sampled pair must stay below the certified bound, and the largest must come
/// within 1 % of it (so halving the mean-value form, or any factor-2 loss of soundness in the
/// softmax step, fails here; the sweep above is too loose to notice).
///
/// The bound is so tight here (sampled/certified reaches 1 − 2e-10: some sampled images sit
/// almost exactly at p = ½) that the `f64` executor's own rounding of the two probabilities,
/// a few ulps of 1, shows: `EXEC_ABS` = 1e-14 is allowed, at least 1e-7 of every bound here.
#[test]
fn mean_value_form_is_tight_on_a_linear_net() {
    const EXEC_ABS: f64 = 1e-14;
    let mut tightest = 0.0f64;
    use zonocert_network::ir::{Layer, Linear, Op, ValueId};
    let mut rng = Rng(0x11EA5);
    let w: Vec<f64> = (0..2 * PIXELS).map(|_| rng.sym() * 1e-3).collect();
    let centre: f64 = (0..PIXELS).map(|i| w[i] - w[PIXELS + i]).sum::<f64>() / 2.0;
    let net = Network {
        input_name: "input".into(),
        input_shape: vec![1, 28, 28],
        layers: vec![
            Layer { name: "flatten".into(), op: Op::Reshape, inputs: vec![ValueId(0)], shape: vec![PIXELS] },
            Layer {
                name: "fc".into(),
                op: Op::Linear(Linear { weight: w.clone(), bias: vec![-centre, 0.0], in_features: PIXELS, out_features: 2 }),
                inputs: vec![ValueId(1)],
                shape: vec![2],
            },
        ],
        output: ValueId(2),
        squeeze_excite: vec![],
        float64_folds: vec![],
    };
    net.validate().expect("valid network");
    let exec = Executor::<f64>::new(&net);
    // The pixels with the largest weight difference, and one random.
    let mut order: Vec<usize> = (0..PIXELS).collect();
    order.sort_by(|&a, &b| (w[b] - w[PIXELS + b]).abs().total_cmp(&(w[a] - w[PIXELS + a]).abs()));
    let pixels = [order[0], order[1], rng.below(PIXELS)];
    for bit in BITS {
        for (variant, name) in VARIANTS.iter().enumerate().skip(1) {
            let cert = Certifier::new(&net, Region::Global, settings(variant, bit));
            for &pixel in &pixels {
                let upper = cert.pixel(pixel).upper;
                let mut images: Vec<Vec<u8>> =
                    (0..150).map(|_| (0..PIXELS).map(|_| if rng.next() & 1 == 0 { 0 } else { 255 }).collect()).collect();
                images.extend((0..150).map(|_| (0..PIXELS).map(|_| rng.below(256) as u8).collect::<Vec<u8>>()));
                let (z, zp) = pair_logits(&exec, &images, pixel, bit);
                let worst =
                    (0..images.len()).map(|s| sensitivity(&exec, &z[2 * s..2 * s + 2], &zp[2 * s..2 * s + 2]).0).fold(0.0, f64::max);
                let ctx = format!("{name} linear two-class net bit {bit} pixel {pixel}");
                assert!(
                    worst <= upper + EXEC_ABS,
                    "{ctx}: sampled |Δp| = {worst:e} > certified {upper:e} (+ {EXEC_ABS:e} for the executor's rounding)"
                );
                tightest = tightest.max(worst / upper);
                // Twin and diff are exact on an affine net; the forced screening pass too.
                assert!(worst >= 0.99 * upper, "{ctx}: sampled {worst:e} below 99 % of certified {upper:e}: the tightness premise failed");
                assert!(upper >= 1e7 * EXEC_ABS, "{ctx}: certified {upper:e} too small for the rounding allowance");
            }
        }
    }
    println!("linear two-class net: largest sampled/certified |Δp| = {tightest}");
}
