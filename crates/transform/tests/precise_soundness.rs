//! Soundness of the high-precision ball evaluator (`precise`) on random EfficientNet-like
//! networks (stem, depthwise conv, squeeze-excite with swish and sigmoid, residual add,
//! pooling, dense head; ReLU stems too).
//!
//! Every value of every layer is checked, not only the output:
//! * at an image, the 256-bit balls must contain the centres of a 768-bit evaluation (whose
//!   own radii are about 10⁻²¹⁰ and are added to the slack); also from inputs exact in `f64`,
//!   where every radius is rounding error alone;
//! * with wide input balls (radius up to 10⁻²), concrete images sampled in the input ball —
//!   both corners, random corners, random interior points — evaluated at 768 bits must land in
//!   the wide evaluation's balls (this exercises the radius propagation: |W|·r, mean-value
//!   slopes of swish and sigmoid, products);
//! * the certified sensitivity encloses the `f64` exact value up to that value's own error;
//! * all of the above for both backends: `BigFloat` (256 bits) and 256-bit fixed point.

mod support;

use astro_float::{BigFloat, RoundingMode};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use support::{act_variant, image, run, tiny_net, tiny_net_with, Rng};
use zonocert_network::exec::Executor;
use zonocert_transform::precise::{enclose, Arithmetic, Balls, FixedNetwork, Fx, PreciseCertifier, PreciseNetwork};
use zonocert_transform::sensitivity::exact_point;

const RM: RoundingMode = RoundingMode::ToEven;

fn cases() -> u32 {
    std::env::var("ZONOCERT_PRECISE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(24)
}

/// A lower bound on `|a − b|` (0 when the f64 enclosure of the difference straddles 0).
fn distance_lower(a: &BigFloat, b: &BigFloat) -> f64 {
    let d = enclose(&a.sub(b, 1024, RM));
    if d.lo > 0.0 {
        d.lo
    } else if d.hi < 0.0 {
        -d.hi
    } else {
        0.0
    }
}

/// Every value of `wide` contains the matching value of `point` (a near-exact evaluation).
fn contains_all(wide: &[Balls], point: &[Balls], what: &str) -> Result<(), TestCaseError> {
    for (k, (w, p)) in wide.iter().zip(point).enumerate() {
        for i in 0..w.len() {
            let d = distance_lower(&w.centre[i], &p.centre[i]);
            let allowed = w.radius[i] + p.radius[i];
            prop_assert!(d <= allowed, "{what}: value {k}[{i}] is {d:e} from the ball centre, radius {:e}", w.radius[i]);
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Case {
    seed: u64,
    channels: usize,
    se: usize,
    /// Index into `support::act_variant`.
    acts: u64,
    radius: f64,
}

fn case() -> impl Strategy<Value = Case> {
    (any::<u64>(), 2usize..=4, 1usize..=2, 0u64..6, prop::sample::select(vec![1e-6, 1e-3, 1e-2]))
        .prop_map(|(seed, channels, se, acts, radius)| Case { seed, channels, se, acts, radius })
}

fn prop_point_and_ball(c: Case) -> Result<(), TestCaseError> {
    let (stem, gate) = act_variant(c.acts);
    let net = tiny_net_with(c.seed, c.channels, c.se, stem, gate);
    let mut rng = Rng(c.seed ^ 0xABCD);
    let img = image(&mut rng);
    let (p256, p768) = (PreciseNetwork::new(&net, 256), PreciseNetwork::new(&net, 768));

    // At the image: 256-bit balls contain the 768-bit centres, and are tight.
    let at256 = p256.forward_all(p256.input(&img));
    let at768 = p768.forward_all(p768.input(&img));
    contains_all(&at256, &at768, "point")?;
    let out_r = at256.last().map(|b| b.max_radius()).unwrap_or(f64::INFINITY);
    prop_assert!(out_r < 1e-60, "point evaluation radius {out_r:e} is not tight");
    // Inputs exact in f64 (radius 0): every radius is then rounding error alone, so the
    // rounding terms of each operation are what the check exercises.
    let centres: Vec<f64> = img.iter().map(|&b| b as f64 / 255.0).collect();
    let zeros = vec![0.0; centres.len()];
    let exact256 = p256.forward_all(Balls::from_f64(&centres, &zeros, 256));
    let exact768 = p768.forward_all(Balls::from_f64(&centres, &zeros, 768));
    contains_all(&exact256, &exact768, "f64-exact point")?;

    // The fixed-point backend, on the same inputs.
    let fixed = FixedNetwork::new(&net).map_err(|_| TestCaseError::fail("fixed backend refused a tiny network"))?;
    let fx_in =
        |c: &[f64], r: &[f64]| -> Vec<(Fx, f64)> { c.iter().zip(r).map(|(&v, &r)| (Fx::from_f64(v).expect("pixel").0, r)).collect() };
    let f_point = fixed.forward_all(fixed.input(&img).expect("pixels")).map_err(|_| TestCaseError::fail("fixed point"))?;
    contains_all(&f_point, &at768, "fixed point")?;
    let out_r = f_point.last().map(|b| b.max_radius()).unwrap_or(f64::INFINITY);
    prop_assert!(out_r < 1e-60, "fixed point evaluation radius {out_r:e} is not tight");
    // f64 pixel values (b/255 rounded) are exact multiples of the fixed-point unit.
    let f_exact = fixed.forward_all(fx_in(&centres, &zeros)).map_err(|_| TestCaseError::fail("fixed exact"))?;
    contains_all(&f_exact, &exact768, "fixed f64-exact point")?;

    // Wide input balls around the image, sampled.
    // The sampled points are rounded to f64: widen the ball by far more than that rounding.
    let radii = vec![c.radius * (1.0 + 1e-9); centres.len()];
    let wide = p256.forward_all(Balls::from_f64(&centres, &radii, 256));
    let f_wide = fixed.forward_all(fx_in(&centres, &radii)).map_err(|_| TestCaseError::fail("fixed wide"))?;
    for s in 0..6 {
        let point: Vec<f64> = centres
            .iter()
            .map(|&x| {
                let t = match s {
                    0 => -1.0,
                    1 => 1.0,
                    2 | 3 => rng.sign(),
                    _ => rng.sym(),
                };
                x + t * c.radius
            })
            .collect();
        let exact = p768.forward_all(Balls::from_f64(&point, &vec![0.0; point.len()], 768));
        contains_all(&wide, &exact, &format!("ball radius {:e}, sample {s}", c.radius))?;
        contains_all(&f_wide, &exact, &format!("fixed, ball radius {:e}, sample {s}", c.radius))?;
    }
    Ok(())
}

#[test]
fn balls_contain_higher_precision_and_sampled_values() {
    run(cases(), case(), prop_point_and_ball);
}

#[test]
fn sensitivity_encloses_the_exact_value_tightly() {
    let mut rng = Rng(7);
    for (seed, arithmetic) in (0..6u64).zip([Arithmetic::Fixed, Arithmetic::BigFloat(256)].into_iter().cycle()) {
        let net = tiny_net(seed, 3, 2, seed == 3);
        let exec = Executor::<f64>::new(&net);
        let img = image(&mut rng);
        let cert = PreciseCertifier::new(&net, &img, 0, arithmetic);
        for &px in &[0usize, 300, 406, 783] {
            let s = cert.pixel(px);
            let (exact, _) = exact_point(&exec, &img, px, 0);
            assert!(s.lower <= s.upper, "pixel {px}: empty enclosure");
            // The f64 reference carries an absolute error of a few 1e-16.
            assert!(
                s.upper >= exact - 1e-13 && s.lower <= exact + 1e-13,
                "seed {seed} pixel {px}: [{:e}, {:e}] vs f64 {exact:e}",
                s.lower,
                s.upper
            );
            // Exact up to the outward rounding of the reported f64 ends (a few ulps).
            assert!(
                s.upper - s.lower <= 1e-40 + 1e-15 * s.upper,
                "seed {seed} pixel {px}: enclosure [{:e}, {:e}] not tight",
                s.lower,
                s.upper
            );
        }
    }
}

/// Single layers on exact 256-bit inputs (radius 0): the output radius is that layer's own
/// rounding bound, with nothing upstream to hide an error in it.
#[test]
fn single_layer_rounding_bounds_hold() {
    use zonocert_network::ir::{Layer, Linear, Network, Op, ValueId};
    let mut rng = Rng(99);
    for trial in 0..60 {
        let (c, h) = (1 + rng.below(4), 3 + rng.below(6));
        let input_shape = vec![c, h, h];
        let groups = if trial % 3 == 0 { c } else { 1 };
        let co = if groups == c && c > 1 { c } else { 1 + rng.below(4) };
        let k = 1 + 2 * rng.below(2);
        let conv = support::conv(&mut rng, c, co, k, 1, k / 2, if co == c { groups } else { 1 });
        let n = c * h * h;
        let (op, shape) = match trial % 4 {
            0 | 1 => (Op::Conv(conv), vec![co, h, h]),
            2 => (
                Op::Linear(Linear {
                    weight: (0..3 * n).map(|_| rng.sym()).collect(),
                    bias: vec![rng.sym(), 0.0, 1e3],
                    in_features: n,
                    out_features: 3,
                }),
                vec![3],
            ),
            _ => (Op::GlobalAvgPool, vec![c, 1, 1]),
        };
        let input_shape_for_linear = if matches!(op, Op::Linear(_)) { vec![n] } else { input_shape.clone() };
        let net = Network {
            input_name: "x".into(),
            input_shape: input_shape_for_linear,
            layers: vec![Layer { name: "l".into(), op, inputs: vec![ValueId(0)], shape }],
            output: ValueId(1),
            squeeze_excite: vec![],
            float64_folds: vec![],
        };
        let x: Vec<f64> = (0..n).map(|_| rng.sym() * [1e-3, 1.0, 1e3][rng.below(3)]).collect();
        // Centres x/3 rounded to 256 bits, taken as exact: products with the weights then
        // need rounding (f64 · f64 products would be exact and test nothing).
        let third = BigFloat::from_f64(3.0, 256);
        let big: Vec<BigFloat> = x.iter().map(|&v| BigFloat::from_f64(v, 256).div(&third, 256, RM)).collect();
        let zeros = vec![0.0; n];
        let a = PreciseNetwork::new(&net, 256).forward_all(Balls::from_big(big.clone(), &zeros));
        let b = PreciseNetwork::new(&net, 768).forward_all(Balls::from_big(big.clone(), &zeros));
        contains_all(&a, &b, &format!("single layer {trial}")).unwrap_or_else(|e| panic!("{e}"));
        // Fixed point: the same centres truncated to units, taken as exact on both sides.
        let fx: Vec<Fx> = big.iter().map(|v| Fx::from_big(v).expect("in range")).collect();
        let fixed = FixedNetwork::new(&net).expect("supported layer");
        let f = fixed.forward_all(fx.iter().map(|&v| (v, 0.0)).collect()).expect("in range");
        let b = PreciseNetwork::new(&net, 768).forward_all(Balls::from_big(fx.iter().map(Fx::to_big).collect(), &zeros));
        contains_all(&f, &b, &format!("fixed single layer {trial}")).unwrap_or_else(|e| panic!("{e}"));
    }
}
