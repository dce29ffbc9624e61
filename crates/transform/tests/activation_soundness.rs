//! Property-based soundness tests for the activation transformers (sigmoid, swish, ReLU, and
//! the other clamped affine maps: ReLU6, HardSigmoid, a two-sided Clip), the differential
//! relaxation and the softmax bounds.
//!
//! Reference values. The transformers promise to enclose the *real* functions, so every
//! reference value is computed in double-double arithmetic (≈ 2⁻¹⁰⁴ relative) with an `exp`
//! of its own (range reduction by ln 2 in double-double, Taylor series, repeated squaring),
//! checked against the platform `exp` in `reference_sanity`. Below e⁻⁷⁴⁵ the reference flushes
//! `exp` to 0 (the true value is under 2⁻¹⁰⁷⁴); every transformer carries an absolute slack of
//! at least 1e-300 there, far more than that.
//!
//! Tolerance: only the reference's own error bound, `REF_REL` = 1e-28 relative to the
//! magnitudes involved (its `exp` is measured at ~1e-30, and `reference_sanity` fails if it
//! gets within a factor 10 of the bound), plus 1e-320 absolute where double-double's low part
//! goes subnormal. That is 12 orders of magnitude below the rounding the transformers must
//! cover, so it cannot hide an unsound bound; it only matters for difference quotients over
//! nearly coincident points (where `f(b) − f(a)` is itself at the reference's noise level).
//!
//! A clamped affine map has no derivative at its kinks: derivative samples skip a point whose
//! α·x + β equals a finite clamp exactly (difference quotients cover it), and `deriv_range` on a
//! degenerate interval at a kink (the empty set of difference quotients) is not sampled.
//!
//! Cases: `ZONOCERT_PROPTEST_CASES` (default 1000); the `#[ignore]`d test runs 100 000 cases of
//! the main property (relaxations). `PROPTEST_RNG_SEED` fixes the seed.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use zonocert_domain::{Interval, SymbolPool, Zonotope};
use zonocert_transform::activation::{prefer_interval_image, relaxation, Act, Enclose, Form};
use zonocert_transform::analysis::differential_relaxation;
use zonocert_transform::softmax::{class_bounds, logit_differences, max_bernoulli_variance, probability_bounds};

mod support;
use support::Rng;
use support::*;

// ---------------------------------------------------------------------------------------------
// Double-double arithmetic.
// ---------------------------------------------------------------------------------------------

/// Relative error bound of the reference: its `exp` is measured at ~1e-31 (worst case over
/// 20 000 arguments, `reference_sanity` asserts it stays below this bound), compounded by a few
/// double-double operations.
const REF_REL: f64 = 1e-28;
/// Absolute error bound of the reference where double-double's low part goes subnormal
/// (values below ~1e-290).
const REF_ABS: f64 = 1e-320;

/// `v ∈ b` up to the reference's own error `tol` (`tol` = REF_REL × the magnitudes involved).
fn in_interval(v: Dd, b: &Interval, tol: f64) -> bool {
    Dd::f(b.lo).le(v.add(Dd::f(tol))) && v.sub(Dd::f(tol)).le(Dd::f(b.hi))
}

/// The reference error bound for a value computed from terms of total magnitude `mag`.
fn tol(mag: f64) -> f64 {
    REF_REL * mag + REF_ABS
}

/// e^x in double-double; 0 below −745.2 (true value < 2⁻¹⁰⁷⁴).
fn exp(x: Dd) -> Dd {
    if x.hi < -745.2 {
        return Dd::ZERO;
    }
    assert!(x.hi < 709.0, "exp overflow in the reference ({})", x.hi);
    let k = (x.hi / LN2.hi).round();
    let r = x.sub(LN2.mulf(k));
    // |r| ≤ 0.35, so |s| ≤ 0.011: 22 Taylor terms leave < 1e-40; 5 squarings amplify the
    // double-double rounding only 32-fold.
    let s = r.mulf(1.0 / 32.0);
    let (mut term, mut sum) = (Dd::ONE, Dd::ONE);
    for n in 1..=22 {
        term = term.mul(s).div(Dd::f(n as f64));
        sum = sum.add(term);
    }
    for _ in 0..5 {
        sum = sum.mul(sum);
    }
    sum.scale2(k as i32)
}

fn sigmoid(x: Dd) -> Dd {
    if x.sign() >= 0 {
        Dd::ONE.div(Dd::ONE.add(exp(x.neg())))
    } else {
        let e = exp(x);
        e.div(Dd::ONE.add(e))
    }
}

/// The activations under test: the three of EfficientNet and the clamped affine maps of
/// MobileNet-style nets (PyTorch's hardsigmoid and ONNX's default HardSigmoid, ReLU6, a
/// two-sided Clip and a one-sided one).
const ACTS: [Act; 8] = [
    Act::Sigmoid,
    Act::Swish,
    Act::Relu,
    Act::HardSigmoid { alpha: 0.2, beta: 0.5 },
    Act::HardSigmoid { alpha: 1.0 / 6.0, beta: 0.5 },
    Act::Clip { lo: 0.0, hi: 6.0 },
    Act::Clip { lo: -1.0, hi: 1.0 },
    Act::Clip { lo: f64::NEG_INFINITY, hi: 0.5 },
];

/// α·x + β of a clamped affine map (exact in double-double: one product, one sum), with its
/// clamps.
fn clamped_arg(f: Act, x: Dd) -> Option<(Dd, f64, f64)> {
    match f.form() {
        Form::ClampedAffine { alpha, beta, lo, hi } => Some((x.mulf(alpha).add(Dd::f(beta)), lo, hi)),
        Form::Logistic { .. } => None,
    }
}

/// Whether x is a kink of f (f′(x) does not exist).
fn at_kink(f: Act, x: f64) -> bool {
    clamped_arg(f, Dd::f(x)).is_some_and(|(y, lo, hi)| [lo, hi].iter().any(|&b| b.is_finite() && y.sub(Dd::f(b)).sign() == 0))
}

/// f(x) in double-double.
fn f_ref(f: Act, x: Dd) -> Dd {
    if let Some((y, lo, hi)) = clamped_arg(f, x) {
        return if lo.is_finite() && y.le(Dd::f(lo)) {
            Dd::f(lo)
        } else if hi.is_finite() && Dd::f(hi).le(y) {
            Dd::f(hi)
        } else {
            y
        };
    }
    match f {
        Act::Sigmoid => sigmoid(x),
        _ => x.mul(sigmoid(x)),
    }
}

/// f′(x) in double-double (not at a kink).
fn d_ref(f: Act, x: Dd) -> Dd {
    if let Some((y, lo, hi)) = clamped_arg(f, x) {
        let Form::ClampedAffine { alpha, .. } = f.form() else { unreachable!() };
        let below = lo.is_finite() && y.le(Dd::f(lo));
        let above = hi.is_finite() && Dd::f(hi).le(y);
        return if below || above { Dd::ZERO } else { Dd::f(alpha) };
    }
    match f {
        Act::Sigmoid => {
            let e = exp(x.abs().neg());
            let d = Dd::ONE.add(e);
            e.div(d.mul(d))
        }
        _ => sigmoid(x).mul(Dd::ONE.add(x.mul(sigmoid(x.neg())))),
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling helpers.
// ---------------------------------------------------------------------------------------------

const SWISH_ARGMIN: f64 = -1.278_464_542_761_073_8;
const SWISH_TURN: f64 = 2.399_357_280_515_467;

/// Points of `[l, u]`: both ends, their neighbours, the special abscissae inside, a uniform
/// grid of `grid` points and `random` random points.
fn samples(b: &Interval, grid: usize, random: usize, rng: &mut Rng) -> Vec<f64> {
    let (l, u) = (b.lo, b.hi);
    let mut v = vec![l, u, l.next_up().min(u), u.next_down().max(l), b.mid().clamp(l, u)];
    for s in [SWISH_ARGMIN, -SWISH_TURN, SWISH_TURN, 0.0, -0.0, -3.0, 3.0, -2.5, 2.5, 6.0, -1.0, 1.0, 0.5] {
        for t in [s, s.next_up(), s.next_down()] {
            if l <= t && t <= u {
                v.push(t);
            }
        }
    }
    for k in 1..grid {
        v.push((l + (u - l) * (k as f64 / grid as f64)).clamp(l, u));
    }
    for _ in 0..random {
        v.push((l + (u - l) * rng.unit()).clamp(l, u));
    }
    v
}

fn unary() -> impl Strategy<Value = Act> {
    prop::sample::select(ACTS.to_vec())
}

/// Intervals around the interesting abscissae, of widths from 0 to 2000.
fn act_interval() -> impl Strategy<Value = Interval> {
    let centre = prop_oneof![
        3 => prop::sample::select(vec![
            SWISH_ARGMIN, -SWISH_TURN, SWISH_TURN, 0.0, -0.5, 1.0, 5.0, -8.0, 17.0, 30.0, -40.0, 37.5, -60.0, 700.0, -700.0, -740.0
        ]),
        // the kinks of the clamped affine maps
        1 => prop::sample::select(vec![-3.0, 3.0, -2.5, 2.5, 6.0, -1.0, 0.5]),
        3 => -12.0f64..12.0,
        1 => -60.0f64..60.0,
        1 => -1000.0f64..1000.0,
    ];
    let width = prop::sample::select(vec![0.0f64, 1e-15, 1e-10, 1e-6, 1e-3, 0.1, 1.0, 2.5, 4.8, 20.0, 100.0, 2000.0]);
    // Also whole intervals shrunk towards 0 (small-signal swishes: values of 1e-12 and less,
    // where margins must shrink with the values and still hold).
    let scale = prop::sample::select(vec![1.0f64, 1.0, 1.0, 1e-5, 1e-12, 1e-30]);
    (centre, width, 0.0f64..=1.0, scale).prop_map(|(c, w, skew, k)| {
        let (c, w) = if k == 1.0 { (c, w) } else { ((c / 1000.0) * k, (w / 2000.0).min(1.0) * k) };
        let l = c - w * skew;
        Interval::new(l, (l + w).max(l))
    })
}

// ---------------------------------------------------------------------------------------------
// Single-interval checks (shared by the properties and the targeted tests).
// ---------------------------------------------------------------------------------------------

fn check_image(f: Act, b: Interval, xs: &[f64]) -> Result<(), String> {
    let img = f.image(b);
    if !(img.lo <= img.hi) {
        return Err(format!("{f:?}.image({b:?}) = {img:?} is empty or NaN"));
    }
    for &x in xs {
        let v = f_ref(f, Dd::f(x));
        if !in_interval(v, &img, tol(v.abs().to_f64())) {
            return Err(format!("{f:?}.image({b:?}) = {img:?} misses f({x:e}) = {:e} ({:e})", v.hi, v.lo));
        }
    }
    Ok(())
}

fn check_deriv_range(f: Act, b: Interval, xs: &[f64]) -> Result<(), String> {
    if b.lo == b.hi && at_kink(f, b.lo) {
        return Ok(()); // no difference quotients and no derivative (see the module docs)
    }
    let r = f.deriv_range(b);
    if !(r.lo <= r.hi) {
        return Err(format!("{f:?}.deriv_range({b:?}) = {r:?} is empty or NaN"));
    }
    for &x in xs {
        if at_kink(f, x) {
            continue;
        }
        let d = d_ref(f, Dd::f(x));
        // swish′ = s(1 + x(1 − s)) cancels near its root: the error scales with 1 + |x|.
        if !in_interval(d, &r, tol(1.0 + x.abs())) {
            return Err(format!("{f:?}.deriv_range({b:?}) = {r:?} misses f'({x:e}) = {:e}", d.to_f64()));
        }
    }
    // Difference quotients, as f(b) − f(a) ∈ [lo, hi]·(b − a) (no division in the reference).
    let mut sorted: Vec<f64> = xs.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    sorted.dedup();
    let fv: Vec<Dd> = sorted.iter().map(|&x| f_ref(f, Dd::f(x))).collect();
    let n = sorted.len();
    let mut pairs: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
    pairs.extend((0..n).flat_map(|i| [(0, i), (i, n - 1)]));
    for (i, j) in pairs {
        if i >= j {
            continue;
        }
        let h = Dd::f(sorted[j]).sub(Dd::f(sorted[i]));
        let df = fv[j].sub(fv[i]);
        let e = Dd::f(tol(fv[i].abs().to_f64() + fv[j].abs().to_f64()));
        if !(h.mulf(r.lo).le(df.add(e)) && df.sub(e).le(h.mulf(r.hi))) {
            return Err(format!(
                "{f:?}.deriv_range({b:?}) = {r:?} misses the difference quotient on [{:e}, {:e}]: {:e}",
                sorted[i],
                sorted[j],
                df.to_f64() / h.to_f64()
            ));
        }
    }
    Ok(())
}

/// |f(x) − λx − μ| ≤ β for every sample.
fn check_parallelogram(f: Act, b: Interval, (lam, mu, beta): (f64, f64, f64), xs: &[f64], what: &str) -> Result<(), String> {
    if !(lam.is_finite() && mu.is_finite() && beta >= 0.0 && beta.is_finite()) {
        return Err(format!("{what} {f:?} on {b:?}: bad parallelogram ({lam}, {mu}, {beta})"));
    }
    for &x in xs {
        let fx = f_ref(f, Dd::f(x));
        let r = fx.sub(Dd::prod(lam, x)).sub(Dd::f(mu));
        if !r.abs().le(Dd::f(beta).add(Dd::f(tol(fx.abs().to_f64() + (lam * x).abs() + mu.abs())))) {
            return Err(format!(
                "{what} {f:?} on {b:?} = (λ={lam:e}, μ={mu:e}, β={beta:e}): |f(x) − λx − μ| = {:e} > β at x = {x:e}",
                r.abs().to_f64()
            ));
        }
    }
    Ok(())
}

fn check_all(f: Act, b: Interval, xs: &[f64]) -> Result<(), String> {
    check_image(f, b, xs)?;
    check_deriv_range(f, b, xs)?;
    check_parallelogram(f, b, f.relax(b), xs, "relax")?;
    for interval_only in [false, true] {
        let rel = relaxation(f, &[b], interval_only);
        check_parallelogram(
            f,
            b,
            (rel.slope[0], rel.offset[0], rel.radius[0]),
            xs,
            if interval_only { "relaxation(interval)" } else { "relaxation" },
        )?;
    }
    // The reduced product's choice: a zonotope far wider than the bounds makes the image win.
    for zrad in [0.0, b.mid_rad().1, 1e3 * b.mid_rad().1 + 1.0, 1e30] {
        let mut rel = relaxation(f, &[b], false);
        prefer_interval_image(f, &[b], &[zrad], &mut rel);
        check_parallelogram(f, b, (rel.slope[0], rel.offset[0], rel.radius[0]), xs, "prefer_interval_image")?;
    }
    // residual_bounds for an arbitrary slope: g(x) = f(x) − λx.
    for lam in [0.0, 0.25, 1.0, -0.1] {
        let rb = f.residual_bounds(lam, b.lo, b.hi);
        for &x in xs {
            let fx = f_ref(f, Dd::f(x));
            let g = fx.sub(Dd::prod(lam, x));
            if !in_interval(g, &rb, tol(fx.abs().to_f64() + (lam * x).abs())) {
                return Err(format!("{f:?}.residual_bounds({lam}, {b:?}) = {rb:?} misses g({x:e}) = {:e}", g.to_f64()));
            }
        }
    }
    Ok(())
}

fn prop_unary((f, b, seed): (Act, Interval, u64)) -> Result<(), TestCaseError> {
    let mut rng = Rng(seed);
    let xs = samples(&b, 64, 64, &mut rng);
    check_all(f, b, &xs).map_err(TestCaseError::fail)
}

#[test]
fn unary_transformers_are_sound() {
    run(cases(), (unary(), act_interval(), any::<u64>()), prop_unary);
}

#[test]
fn targeted_intervals() {
    let w = 1e-10;
    let mut intervals = vec![
        // around swish's minimum
        (-1.3, -1.25),
        (-2.0, -1.0),
        (SWISH_ARGMIN - w, SWISH_ARGMIN + w),
        (SWISH_ARGMIN, SWISH_ARGMIN),
        (SWISH_ARGMIN, -1.0),
        (-1.5, SWISH_ARGMIN),
        // around swish′'s turning points
        (2.3, 2.5),
        (-2.5, -2.3),
        (SWISH_TURN - 1e-8, SWISH_TURN + 1e-8),
        (-SWISH_TURN - 1e-8, -SWISH_TURN + 1e-8),
        (-2.4, 2.4),
        (-3.0, 3.0),
        // straddling 0
        (-0.5, 0.5),
        (-w, w),
        (-3.0, 1.0),
        (-1e-300, 1e-300),
        (0.0, 1.0),
        (-1.0, 0.0),
        // zero width
        (0.0, 0.0),
        (1.0, 1.0),
        (-5.0, -5.0),
        (40.0, 40.0),
        (-745.0, -745.0),
        // very wide
        (-50.0, 50.0),
        (-1e3, 1e3),
        (-1e3, 5.0),
        (-5.0, 1e3),
        (-1e3, -900.0),
        (-745.0, -700.0),
        (30.0, 1e3),
    ];
    for c in [-30.0, -5.0, -3.0, -2.5, -2.0, -1.0, -0.3, 0.0, 0.5, 0.7, 1.0, 1.5, 2.5, 3.0, 6.0, 8.0, 20.0, 36.0] {
        intervals.push((c, c + w));
        intervals.push((c - w, c));
    }
    let mut rng = Rng(11);
    for (l, u) in intervals {
        let b = Interval::new(l, u);
        let xs = samples(&b, 2000, 500, &mut rng);
        for f in ACTS {
            check_all(f, b, &xs).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Zonotope-level properties (same ε for shared symbols, see the domain tests).
// ---------------------------------------------------------------------------------------------

/// `v` lies in `out` with the same ε on every symbol found in `eps`; other symbols free (and
/// each on one neuron).
///
/// `mag[j]` is the magnitude of the reference terms behind `v[j]` (e.g. |f(x + d)| + |f(x)|);
/// the reference error allowed is `tol(mag[j] + |c_j| + Σ|g_kj| + e_j)`.
fn check(out: &Zonotope, eps: &Eps, v: &[Dd], mag: &[f64], ctx: &dyn Fn() -> String) -> Result<(), TestCaseError> {
    let n = out.dim();
    let b = out.bounds();
    let rad = out.radius();
    let t: Vec<f64> = (0..n).map(|j| tol(mag[j] + v[j].abs().to_f64() + out.centre[j].abs() + rad[j])).collect();
    for j in 0..n {
        prop_assert!(in_interval(v[j], &b[j], t[j]), "{}: neuron {} value {:e} outside bounds {:?}", ctx(), j, v[j].to_f64(), b[j]);
    }
    for (k, s) in out.syms.iter().enumerate() {
        if !eps.contains_key(s) {
            let nz = out.gens[k * n..(k + 1) * n].iter().filter(|g| **g != 0.0).count();
            prop_assert!(nz <= 1, "{}: fresh symbol {} touches {} neurons", ctx(), s, nz);
        }
    }
    for j in 0..n {
        let mut r = v[j].sub(Dd::f(out.centre[j]));
        let mut free = Dd::f(out.err[j]);
        for (k, s) in out.syms.iter().enumerate() {
            let g = out.gens[k * n + j];
            match eps.get(s) {
                Some(&e) => r = r.sub(Dd::prod(e, g)),
                None => free = free.add(Dd::f(g.abs())),
            }
        }
        prop_assert!(
            r.abs().le(free.add(Dd::f(t[j]))),
            "{}: neuron {}: residual {:e} exceeds free radius {:e}",
            ctx(),
            j,
            r.to_f64(),
            free.to_f64()
        );
    }
    Ok(())
}

fn scale() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.0, 1e-10, 1e-6, 1e-3, 0.05, 0.5, 1.0, 3.0, 10.0])
}

fn unit() -> impl Strategy<Value = f64> {
    prop_oneof![6 => -1.0f64..=1.0, 1 => Just(0.0), 1 => Just(1.0), 1 => Just(-1.0)]
}

/// A zonotope of dimension `dim` over ids `0..8`, centred around the interesting abscissae.
fn zonotope(dim: usize) -> impl Strategy<Value = Zonotope> {
    let centre = prop_oneof![prop::sample::select(vec![SWISH_ARGMIN, -SWISH_TURN, SWISH_TURN, 0.0, 3.0, -6.0, 20.0, -40.0]), -8.0f64..8.0,];
    (prop::collection::btree_set(0usize..8, 0..=5), scale(), scale())
        .prop_flat_map(move |(syms, gs, es)| {
            let m = syms.len();
            (
                Just(syms.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(centre.clone(), dim),
                prop::collection::vec(unit(), m * dim),
                prop::collection::vec(unit(), dim),
                Just((gs, es)),
            )
        })
        .prop_map(|(syms, c, g, e, (gs, es))| Zonotope {
            centre: c,
            syms,
            gens: g.iter().map(|u| u * gs).collect(),
            err: e.iter().map(|u| u.abs() * es).collect(),
        })
}

fn pool_after(n: usize) -> SymbolPool {
    let mut p = SymbolPool::new();
    p.fresh(n);
    p
}

/// The forward transformer: `z.apply_relaxation(relaxation(f, z.bounds()))` holds f(x) for
/// every x in z, with the same ε.
#[test]
fn forward_relaxation_of_zonotope_is_sound() {
    let strat = (unary(), 1usize..=4, any::<bool>(), 0usize..=10, any::<u64>())
        .prop_flat_map(|(f, n, io, budget, seed)| (Just(f), zonotope(n), Just(io), Just(budget), Just(seed)));
    run(cases(), strat, |(f, z, interval_only, budget, seed)| {
        let rel = relaxation(f, &z.bounds(), interval_only);
        let mut pool = pool_after(8);
        let out = z.apply_relaxation(&rel, &mut pool, budget);
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            for _ in 0..3 {
                let eta: Vec<f64> = (0..z.dim()).map(|_| rng.corner_biased()).collect();
                let x = point(&z, &eps, &eta);
                let v: Vec<Dd> = x.iter().map(|x| f_ref(f, *x)).collect();
                let mag: Vec<f64> = x.iter().map(|x| x.abs().to_f64()).collect();
                check(&out, &eps, &v, &mag, &|| format!("{f:?} forward (interval_only={interval_only}) eps={eps:?} eta={eta:?}"))?;
            }
        }
        Ok(())
    });
}

/// `differential_relaxation(f, X, D)`: for x ∈ X and d ∈ D, f(x + d) − f(x) lies in
/// `d.apply_relaxation(rel)` evaluated at the same ε as d.
fn prop_differential((f, x_bounds, d, budget, seed): (Act, Vec<Interval>, Zonotope, usize, u64)) -> Result<(), TestCaseError> {
    let rel = differential_relaxation(f, &x_bounds, &d);
    let mut pool = pool_after(8);
    let out = d.apply_relaxation(&rel, &mut pool, budget);
    let mut rng = Rng(seed);
    let n = d.dim();
    for eps in eps_samples(&d.syms, &mut rng) {
        for _ in 0..3 {
            let eta: Vec<f64> = (0..n).map(|_| rng.corner_biased()).collect();
            let dv = point(&d, &eps, &eta);
            for _ in 0..3 {
                let xs: Vec<f64> = x_bounds
                    .iter()
                    .map(|b| match rng.next() % 4 {
                        0 => b.lo,
                        1 => b.hi,
                        _ => (b.lo + rng.unit() * (b.hi - b.lo)).clamp(b.lo, b.hi),
                    })
                    .collect();
                let fp: Vec<Dd> = (0..n).map(|j| f_ref(f, Dd::f(xs[j]).add(dv[j]))).collect();
                let fx: Vec<Dd> = (0..n).map(|j| f_ref(f, Dd::f(xs[j]))).collect();
                let v: Vec<Dd> = (0..n).map(|j| fp[j].sub(fx[j])).collect();
                let mag: Vec<f64> =
                    (0..n).map(|j| fp[j].abs().to_f64() + fx[j].abs().to_f64() + xs[j].abs() + dv[j].abs().to_f64()).collect();
                check(&out, &eps, &v, &mag, &|| format!("{f:?} differential rel={rel:?} x={xs:?} eps={eps:?} eta={eta:?}"))?;
            }
        }
    }
    Ok(())
}

fn differential_strategy() -> impl Strategy<Value = (Act, Vec<Interval>, Zonotope, usize, u64)> {
    (unary(), 1usize..=4, 0usize..=10, any::<u64>()).prop_flat_map(|(f, n, budget, seed)| {
        let d = (
            prop::collection::btree_set(0usize..8, 0..=4),
            prop::sample::select(vec![1e-10, 1e-6, 1e-3, 1.0 / 255.0, 0.1, 1.0, 4.0]),
            scale(),
        )
            .prop_flat_map(move |(syms, gs, es)| {
                let m = syms.len();
                (
                    Just(syms.into_iter().collect::<Vec<_>>()),
                    prop::collection::vec(unit(), n),
                    prop::collection::vec(unit(), m * n),
                    prop::collection::vec(unit(), n),
                    Just((gs, es)),
                )
            })
            .prop_map(|(syms, c, g, e, (gs, es))| Zonotope {
                centre: c.iter().map(|u| u * gs).collect(),
                syms,
                gens: g.iter().map(|u| u * gs).collect(),
                err: e.iter().map(|u| u.abs() * gs.min(es)).collect(),
            });
        (Just(f), prop::collection::vec(act_interval().prop_filter("finite", |b| b.hi.abs() < 1000.0), n), d, Just(budget), Just(seed))
    })
}

#[test]
fn differential_relaxation_is_sound() {
    run(cases(), differential_strategy(), prop_differential);
}

// ---------------------------------------------------------------------------------------------
// Softmax.
// ---------------------------------------------------------------------------------------------

fn softmax_ref(z: &[Dd]) -> Vec<Dd> {
    let m = z.iter().map(|v| v.hi).fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<Dd> = z.iter().map(|v| exp(v.sub(Dd::f(m)))).collect();
    let s = e.iter().fold(Dd::ZERO, |a, v| a.add(*v));
    e.iter().map(|v| v.div(s)).collect()
}

/// Logits `x ∈ Z`, `x′ = x + d` with `d ∈ D` (symbols of D disjoint from Z's, as in the
/// differential analysis): probability bounds hold p(x), and `class_bounds` (fed as the
/// diff-zonotope method feeds it) holds |p_c(x′) − p_c(x)|.
#[test]
fn softmax_bounds_are_sound() {
    let strat = (2usize..=5, any::<u64>())
        .prop_flat_map(|(k, seed)| (logits(k, 0), logits(k, 100), prop::sample::select(vec![1e-6, 1e-3, 0.1, 1.0, 5.0]), Just(seed)));
    run(cases(), strat, |(z, d0, ds, seed)| {
        // D: small differences.
        let d = Zonotope {
            centre: d0.centre.iter().map(|c| c * ds * 0.1).collect(),
            syms: d0.syms.clone(),
            gens: d0.gens.iter().map(|g| g * ds * 0.1).collect(),
            err: d0.err.iter().map(|e| e * ds * 0.1).collect(),
        };
        let k = z.dim();
        let dx = logit_differences(&z);
        let probs = probability_bounds(k, &|j, c| dx[j][c]);
        let dd: Vec<Vec<Interval>> =
            (0..k).map(|c| (0..k).map(|j| if c == j { Interval::point(0.0) } else { d.difference_bounds(c, j) }).collect()).collect();
        let dxp = |j: usize, c: usize| dx[j][c].add(&dd[j][c]);
        let cb = class_bounds(k, &|j, c| dx[j][c], &dxp, &|c, j| dd[c][j]);
        let mut rng = Rng(seed);
        let mut syms = z.syms.clone();
        syms.extend(&d.syms);
        for eps in eps_samples(&syms, &mut rng) {
            let eta: Vec<f64> = (0..k).map(|_| rng.corner_biased()).collect();
            let eta2: Vec<f64> = (0..k).map(|_| rng.corner_biased()).collect();
            let x = point(&z, &eps, &eta);
            let xp: Vec<Dd> = x.iter().zip(point(&d, &eps, &eta2)).map(|(a, b)| a.add(b)).collect();
            let (p, pp) = (softmax_ref(&x), softmax_ref(&xp));
            for c in 0..k {
                prop_assert!(
                    in_interval(p[c], &probs[c], tol(1.0)),
                    "probability_bounds[{}] = {:?} misses {:e}",
                    c,
                    probs[c],
                    p[c].to_f64()
                );
                let var = p[c].mul(Dd::ONE.sub(p[c]));
                let mbv = max_bernoulli_variance(probs[c]);
                prop_assert!(var.le(Dd::f(mbv + tol(1.0))), "max_bernoulli_variance({:?}) = {} < {:e}", probs[c], mbv, var.to_f64());
                let delta = pp[c].sub(p[c]).abs().sub(Dd::f(tol(1.0)));
                let b = &cb[c];
                prop_assert!(
                    delta.le(Dd::f(b.bound))
                        && delta.le(Dd::f(b.from_ranges))
                        && delta.le(Dd::f(b.from_mean_value))
                        && delta.le(Dd::f(b.from_logit_shift)),
                    "class {}: |Δp| = {:e} exceeds {:?}",
                    c,
                    delta.to_f64(),
                    b
                );
            }
        }
        Ok(())
    });
}

fn logits(k: usize, first_sym: usize) -> impl Strategy<Value = Zonotope> {
    (prop::collection::btree_set(first_sym..first_sym + 6, 0..=4), prop::sample::select(vec![0.0, 1e-6, 0.01, 0.5, 2.0, 10.0]))
        .prop_flat_map(move |(syms, gs)| {
            let m = syms.len();
            (
                Just(syms.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(-20.0f64..20.0, k),
                prop::collection::vec(unit(), m * k),
                prop::collection::vec(0.0f64..=1.0, k),
                Just(gs),
            )
        })
        .prop_map(|(syms, c, g, e, gs)| Zonotope {
            centre: c,
            syms,
            gens: g.iter().map(|u| u * gs).collect(),
            err: e.iter().map(|u| u * gs * 0.5).collect(),
        })
}

/// The main property at 100 000 cases: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn long_run_main_properties() {
    run(100_000, (unary(), act_interval(), any::<u64>()), prop_unary);
    run(100_000, differential_strategy(), prop_differential);
}

/// The reference itself: exp and sigmoid agree with the platform's to within an ulp or two,
/// and a few identities hold to double-double accuracy.
#[test]
fn reference_sanity() {
    let mut rng = Rng(5);
    let mut worst = 0.0f64;
    for _ in 0..20000 {
        let x = rng.sym() * 700.0 * rng.unit().powi(3);
        let e = exp(Dd::f(x));
        let lib = x.exp();
        assert!((e.to_f64() - lib).abs() <= 2.0 * f64::EPSILON * lib, "exp({x}) = {} vs {}", e.to_f64(), lib);
        // e^x · e^−x = 1 (away from the range where the low part goes subnormal)
        if x.abs() < 600.0 {
            let one = e.mul(exp(Dd::f(-x)));
            worst = worst.max(one.sub(Dd::ONE).abs().to_f64());
        }
        let s = sigmoid(Dd::f(x)).add(sigmoid(Dd::f(-x)));
        assert!(s.sub(Dd::ONE).abs().to_f64() < 1e-30);
    }
    println!("worst |exp(x)·exp(−x) − 1| = {worst:e}");
    assert!(worst < REF_REL / 10.0, "reference exp error {worst:e} too close to the assumed {REF_REL:e}");
    assert_eq!(exp(Dd::f(1.0)).to_f64(), std::f64::consts::E);
    assert!(exp(LN2).sub(Dd::f(2.0)).abs().to_f64() < 1e-30);
    // swish′ vanishes at the argmin constant (to the accuracy of the constant).
    assert!(d_ref(Act::Swish, Dd::f(SWISH_ARGMIN)).abs().to_f64() < 1e-16);
    // swish″ vanishes at the turning point: swish′ is flat there.
    let (a, b) = (d_ref(Act::Swish, Dd::f(SWISH_TURN - 1e-6)), d_ref(Act::Swish, Dd::f(SWISH_TURN + 1e-6)));
    assert!(a.sub(b).abs().to_f64() < 1e-17);
}
