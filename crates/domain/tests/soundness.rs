//! Property-based soundness tests for the interval and zonotope domains.
//!
//! Every property follows one pattern: draw a random abstract input, sample concrete points of
//! it (always including vertices: every ε ∈ {−1, 1}^m when m ≤ 6, random sign vectors
//! otherwise, plus corners of the private error box η), evaluate the concrete operation and
//! check that the result lies in the abstract output.
//!
//! Reference arithmetic. The domain promises to enclose the *real* result, while an `f64`
//! evaluation of a sampled point is itself off by a few ulps (e.g. `c + Σ εₖ gₖ` summed in
//! `f64` can leave the zonotope by several ulps when many generators are tiny against the
//! centre). So points and results are evaluated in double-double arithmetic (≈ 2⁻¹⁰⁴
//! relative), and compared with the `f64` bounds in double-double as well: no tolerance is
//! used anywhere in this file.
//!
//! Two containment checks are made on every output:
//! * `bounds()` contains the value (the interval hull);
//! * the stronger, correlation-preserving check: with the *same* ε for every symbol the output
//!   shares with the input, `|v − c − Σ_known εₖ gₖ| ≤ e + Σ_new |gₖ|` per neuron, where the
//!   "new" symbols (fresh ones from relaxations/products) must sit on one neuron each (which
//!   makes the per-neuron check exact, not just necessary).
//!
//! Cases: `ZONOCERT_PROPTEST_CASES` (default 1000); the `#[ignore]`d test runs 100 000 cases of
//! the main properties (affine and relaxation). `PROPTEST_RNG_SEED` fixes the seed.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::collections::HashMap;
use zonocert_domain::{Interval, LinearMap, Relaxation, SymbolPool, Zonotope};

// Exact arithmetic: floating-point expansions (Shewchuk, "Adaptive Precision Floating-Point
// Arithmetic and Fast Robust Geometric Predicates", 1997). A value is an unevaluated sum of
// non-overlapping doubles; sums and products of doubles are represented exactly (barring
// overflow and underflow, which the strategies stay clear of), so comparisons with the f64
// bounds are exact. Exactness matters: an exact map or a reduction puts sampled vertices
// exactly on the output's boundary, where any reference error would be a false alarm.
// ---------------------------------------------------------------------------------------------

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// An exact real number: the sum of its components (non-overlapping, increasing magnitude).
#[derive(Clone, Debug, PartialEq)]
struct Ex(Vec<f64>);

impl Ex {
    fn zero() -> Ex {
        Ex(Vec::new())
    }

    fn f(x: f64) -> Ex {
        assert!(x.is_finite(), "non-finite value in exact arithmetic");
        if x == 0.0 {
            Ex::zero()
        } else {
            Ex(vec![x])
        }
    }

    /// Adds one double exactly (Grow-Expansion with zero elimination).
    fn grow(&mut self, b: f64) {
        let mut q = b;
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &e in &self.0 {
            let (s, h) = two_sum(q, e);
            if h != 0.0 {
                out.push(h);
            }
            q = s;
        }
        if q != 0.0 {
            out.push(q);
        }
        self.0 = out;
    }

    /// Shewchuk's Compress: same value, fewer components.
    fn compress(mut self) -> Ex {
        let e = &self.0;
        let m = e.len();
        if m <= 1 {
            return self;
        }
        let mut g = vec![0.0; m];
        let mut bottom = m - 1;
        let mut big = e[m - 1];
        for i in (0..m - 1).rev() {
            let (s, q) = fast_two_sum(big, e[i]);
            if q != 0.0 {
                g[bottom] = s;
                bottom -= 1;
                big = q;
            } else {
                big = s;
            }
        }
        g[bottom] = big;
        let mut h = Vec::with_capacity(m);
        for &gi in &g[bottom + 1..m] {
            let (s, q) = fast_two_sum(gi, big);
            if q != 0.0 {
                h.push(q);
            }
            big = s;
        }
        if big != 0.0 {
            h.push(big);
        }
        self.0 = h;
        self
    }

    /// The exact product of two doubles (FMA gives the low part).
    fn prod(a: f64, b: f64) -> Ex {
        let p = a * b;
        let mut r = Ex::f(a.mul_add(b, -p));
        r.grow(p);
        r
    }

    fn add(&self, o: &Ex) -> Ex {
        let mut r = self.clone();
        for &c in &o.0 {
            r.grow(c);
        }
        r.compress()
    }

    fn neg(&self) -> Ex {
        Ex(self.0.iter().map(|v| -v).collect())
    }

    fn sub(&self, o: &Ex) -> Ex {
        self.add(&o.neg())
    }

    fn mulf(&self, b: f64) -> Ex {
        let mut r = Ex::zero();
        for &a in &self.0 {
            let p = a * b;
            r.grow(a.mul_add(b, -p));
            r.grow(p);
        }
        r.compress()
    }

    fn mul(&self, o: &Ex) -> Ex {
        o.0.iter().fold(Ex::zero(), |acc, &c| acc.add(&self.mulf(c)))
    }

    /// Sign of the value: that of its largest component.
    fn sign(&self) -> i32 {
        match self.0.last() {
            None => 0,
            Some(v) if *v > 0.0 => 1,
            Some(_) => -1,
        }
    }

    fn abs(&self) -> Ex {
        if self.sign() < 0 {
            self.neg()
        } else {
            self.clone()
        }
    }

    fn le(&self, o: &Ex) -> bool {
        self.sub(o).sign() <= 0
    }

    /// An approximation for messages.
    fn to_f64(&self) -> f64 {
        self.0.iter().sum()
    }
}

fn in_interval(v: &Ex, b: &Interval) -> bool {
    Ex::f(b.lo).le(v) && v.le(&Ex::f(b.hi))
}

// ---------------------------------------------------------------------------------------------
// A tiny deterministic RNG for sampling points inside a case (the case itself is drawn by
// proptest, so failures shrink over the abstract inputs and this seed).
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [−1, 1].
    fn sym(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }
    fn sign(&mut self) -> f64 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
    /// Mostly corners (±1), sometimes 0 or an interior value.
    fn corner_biased(&mut self) -> f64 {
        match self.next() % 8 {
            0 => self.sym(),
            1 => 0.0,
            _ => self.sign(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling and containment.
// ---------------------------------------------------------------------------------------------

type Eps = HashMap<usize, f64>;

/// Noise vectors over `syms`: every sign vertex when there are at most 6 symbols, 64 random
/// vertices otherwise; plus interior points.
fn eps_samples(syms: &[usize], rng: &mut Rng) -> Vec<Eps> {
    let m = syms.len();
    let mut out = Vec::new();
    if m <= 6 {
        for mask in 0..(1u32 << m) {
            out.push(syms.iter().enumerate().map(|(k, &s)| (s, if mask >> k & 1 == 1 { 1.0 } else { -1.0 })).collect());
        }
    } else {
        for _ in 0..64 {
            out.push(syms.iter().map(|&s| (s, rng.sign())).collect());
        }
    }
    for _ in 0..6 {
        out.push(syms.iter().map(|&s| (s, rng.sym())).collect());
    }
    out.push(syms.iter().map(|&s| (s, 0.0)).collect());
    out
}

/// η samples for a private error box of dimension `n`: random corners and interior points.
fn eta_samples(n: usize, rng: &mut Rng, count: usize) -> Vec<Vec<f64>> {
    (0..count).map(|_| (0..n).map(|_| rng.corner_biased()).collect()).collect()
}

/// The concrete point `c + Σ εₖ gₖ + diag(e) η`, in double-double.
fn point(z: &Zonotope, eps: &Eps, eta: &[f64]) -> Vec<Ex> {
    let n = z.dim();
    (0..n)
        .map(|j| {
            let mut v = Ex::f(z.centre[j]);
            for (k, s) in z.syms.iter().enumerate() {
                v = v.add(&Ex::prod(eps[s], z.gens[k * n + j]));
            }
            v.add(&Ex::prod(z.err[j], eta[j]))
        })
        .collect()
}

/// Structural invariants every zonotope must keep.
fn well_formed(z: &Zonotope, ctx: &str) -> Result<(), TestCaseError> {
    let n = z.dim();
    prop_assert_eq!(z.gens.len(), z.syms.len() * n, "{}: generator matrix size", ctx);
    prop_assert_eq!(z.err.len(), n, "{}: error length", ctx);
    prop_assert!(z.syms.windows(2).all(|w| w[0] < w[1]), "{}: symbols not strictly increasing: {:?}", ctx, z.syms);
    prop_assert!(z.err.iter().all(|e| *e >= 0.0 && e.is_finite()), "{}: bad error term {:?}", ctx, z.err);
    prop_assert!(z.centre.iter().chain(&z.gens).all(|v| v.is_finite()), "{}: non-finite entry", ctx);
    Ok(())
}

/// Checks that `v` lies in `out` when every symbol of `out` found in `eps` takes that value
/// (see the module docs). Symbols of `out` absent from `eps` are free; each must touch at most
/// one neuron.
fn check(out: &Zonotope, eps: &Eps, v: &[Ex], ctx: &dyn Fn() -> String) -> Result<(), TestCaseError> {
    let n = out.dim();
    prop_assert_eq!(v.len(), n);
    let b = out.bounds();
    for j in 0..n {
        prop_assert!(
            in_interval(&v[j], &b[j]),
            "{}: neuron {} value {:e} ({:?}) outside bounds [{:e}, {:e}]",
            ctx(),
            j,
            v[j].to_f64(),
            v[j],
            b[j].lo,
            b[j].hi
        );
    }
    for (k, s) in out.syms.iter().enumerate() {
        if !eps.contains_key(s) {
            let nz = out.gens[k * n..(k + 1) * n].iter().filter(|g| **g != 0.0).count();
            prop_assert!(nz <= 1, "{}: fresh symbol {} touches {} neurons", ctx(), s, nz);
        }
    }
    for j in 0..n {
        let mut r = v[j].sub(&Ex::f(out.centre[j]));
        let mut free = Ex::f(out.err[j]);
        for (k, s) in out.syms.iter().enumerate() {
            let g = out.gens[k * n + j];
            match eps.get(s) {
                Some(&e) => r = r.sub(&Ex::prod(e, g)),
                None => free = free.add(&Ex::f(g.abs())),
            }
        }
        prop_assert!(
            r.abs().le(&free),
            "{}: neuron {}: residual {:e} exceeds free radius {:e} (same ε on shared symbols)",
            ctx(),
            j,
            r.to_f64(),
            free.to_f64()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------------

fn cases() -> u32 {
    std::env::var("ZONOCERT_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

/// Magnitudes: zero, very narrow, moderate, very wide.
fn scale() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.0, 1e-12, 1e-6, 1e-3, 0.5, 1.0, 3.0, 1e3, 1e6])
}

/// Offsets of the centre away from 0 (0 keeps the zonotope straddling 0).
fn offset() -> impl Strategy<Value = f64> {
    prop::sample::select(vec![0.0, 0.0, 1.0, -1.0, 1e-12, 0.3, -7.5, 1e3, -1e6])
}

/// Uniform in [−1, 1] with extra weight on 0 and ±1.
fn unit() -> impl Strategy<Value = f64> {
    prop_oneof![6 => -1.0f64..=1.0, 1 => Just(0.0), 1 => Just(1.0), 1 => Just(-1.0)]
}

/// A zonotope of dimension `dim` over a subset of the symbol ids `0..universe`.
fn zonotope(dim: usize, universe: usize, max_gens: usize) -> impl Strategy<Value = Zonotope> {
    (prop::collection::btree_set(0..universe, 0..=max_gens.min(universe)), scale(), offset(), scale(), scale())
        .prop_flat_map(move |(syms, cs, off, gs, es)| {
            let m = syms.len();
            (
                Just(syms.into_iter().collect::<Vec<_>>()),
                prop::collection::vec(unit(), dim),
                prop::collection::vec(unit(), m * dim),
                prop::collection::vec(unit(), dim),
                Just((cs, off, gs, es)),
            )
        })
        .prop_map(|(syms, c, g, e, (cs, off, gs, es))| Zonotope {
            centre: c.iter().map(|u| u * cs + off).collect(),
            syms,
            gens: g.iter().map(|u| u * gs).collect(),
            err: e.iter().map(|u| u.abs() * es).collect(),
        })
}

fn dim_and<T: std::fmt::Debug, S: Strategy<Value = T>>(max_dim: usize, f: impl Fn(usize) -> S) -> impl Strategy<Value = (usize, T)> {
    (1..=max_dim).prop_flat_map(move |n| (Just(n), f(n)))
}

/// A pool whose next id is past every id a strategy can produce.
fn pool_after(universe: usize) -> SymbolPool {
    let mut p = SymbolPool::new();
    p.fresh(universe);
    p
}

// ---------------------------------------------------------------------------------------------
// Linear maps implemented by the test (following the trait contract).
// ---------------------------------------------------------------------------------------------

/// A dense matrix `rows × cols` (row-major) with an optional offset; `fma` switches the dot
/// product to fused multiply-adds (the contract allows either).
#[derive(Debug, Clone)]
struct Dense {
    a: Vec<f64>,
    rows: usize,
    cols: usize,
    b: Option<Vec<f64>>,
    fma: bool,
    /// Accumulate in reverse order (the contract allows any order).
    reverse: bool,
}

impl Dense {
    fn dot(&self, row: &[f64], x: &[f64], abs: bool) -> f64 {
        let mut acc = 0.0f64;
        let mut step = |i: usize| {
            let a = if abs { row[i].abs() } else { row[i] };
            acc = if self.fma { a.mul_add(x[i], acc) } else { acc + a * x[i] };
        };
        if self.reverse {
            (0..self.cols).rev().for_each(&mut step);
        } else {
            (0..self.cols).for_each(&mut step);
        }
        acc
    }

    /// The exact `A x + b` in double-double.
    fn exact(&self, x: &[Ex]) -> Vec<Ex> {
        (0..self.rows)
            .map(|j| {
                let mut acc = self.b.as_ref().map(|b| Ex::f(b[j])).unwrap_or(Ex::zero());
                for i in 0..self.cols {
                    acc = acc.add(&x[i].mulf(self.a[j * self.cols + i]));
                }
                acc
            })
            .collect()
    }
}

impl LinearMap for Dense {
    fn in_dim(&self) -> usize {
        self.cols
    }
    fn out_dim(&self) -> usize {
        self.rows
    }
    fn apply(&self, x: &[f64], n: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(n * self.rows);
        for s in 0..n {
            let xs = &x[s * self.cols..(s + 1) * self.cols];
            for j in 0..self.rows {
                out.push(self.dot(&self.a[j * self.cols..(j + 1) * self.cols], xs, false));
            }
        }
        out
    }
    fn apply_abs(&self, v: &[f64]) -> Vec<f64> {
        (0..self.rows).map(|j| self.dot(&self.a[j * self.cols..(j + 1) * self.cols], v, true)).collect()
    }
    fn offset(&self) -> Option<Vec<f64>> {
        self.b.clone()
    }
    fn fan_in(&self) -> usize {
        self.cols
    }
}

/// A copy map `y_j = x_{src[j]}` (duplicates allowed), declared exact.
#[derive(Debug, Clone)]
struct Gather {
    src: Vec<usize>,
    cols: usize,
}

impl LinearMap for Gather {
    fn in_dim(&self) -> usize {
        self.cols
    }
    fn out_dim(&self) -> usize {
        self.src.len()
    }
    fn apply(&self, x: &[f64], n: usize) -> Vec<f64> {
        (0..n).flat_map(|s| self.src.iter().map(move |&i| x[s * self.cols + i])).collect()
    }
    fn apply_abs(&self, v: &[f64]) -> Vec<f64> {
        self.src.iter().map(|&i| v[i]).collect()
    }
    fn offset(&self) -> Option<Vec<f64>> {
        None
    }
    fn fan_in(&self) -> usize {
        1
    }
    fn exact(&self) -> bool {
        true
    }
}

fn dense(rows: usize, cols: usize) -> impl Strategy<Value = Dense> {
    (
        prop::collection::vec(unit(), rows * cols),
        scale(),
        prop::option::of((prop::collection::vec(unit(), rows), scale())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(a, s, b, fma, reverse)| Dense {
            a: a.iter().map(|v| v * s).collect(),
            rows,
            cols,
            b: b.map(|(b, bs)| b.iter().map(|v| v * bs).collect()),
            fma,
            reverse,
        })
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

const UNIVERSE: usize = 10;

fn affine_strategy() -> impl Strategy<Value = (Zonotope, Dense, u64)> {
    (1usize..=6, 1usize..=6).prop_flat_map(|(n_in, n_out)| (zonotope(n_in, UNIVERSE, 7), dense(n_out, n_in), any::<u64>()))
}

fn prop_affine((z, map, seed): (Zonotope, Dense, u64)) -> Result<(), TestCaseError> {
    let out = z.affine(&map);
    well_formed(&out, "affine")?;
    prop_assert_eq!(&out.syms, &z.syms, "affine keeps the symbols");
    let mut rng = Rng(seed);
    for eps in eps_samples(&z.syms, &mut rng) {
        for eta in eta_samples(z.dim(), &mut rng, 3) {
            let v = map.exact(&point(&z, &eps, &eta));
            check(&out, &eps, &v, &|| format!("affine eps={eps:?} eta={eta:?}"))?;
        }
    }
    Ok(())
}

fn relaxation_strategy() -> impl Strategy<Value = (Zonotope, Relaxation, usize, u64)> {
    (1usize..=6)
        .prop_flat_map(|n| {
            (
                zonotope(n, UNIVERSE, 7),
                prop::collection::vec((unit(), scale(), unit(), scale(), unit(), scale()), n),
                0usize..=12,
                any::<u64>(),
            )
        })
        .prop_map(|(z, r, budget, seed)| {
            let rel = Relaxation {
                slope: r.iter().map(|t| t.0 * t.1).collect(),
                offset: r.iter().map(|t| t.2 * t.3).collect(),
                radius: r.iter().map(|t| t.4.abs() * t.5).collect(),
            };
            (z, rel, budget, seed)
        })
}

fn prop_relaxation((z, rel, budget, seed): (Zonotope, Relaxation, usize, u64)) -> Result<(), TestCaseError> {
    let mut pool = pool_after(UNIVERSE);
    let out = z.apply_relaxation(&rel, &mut pool, budget);
    well_formed(&out, "apply_relaxation")?;
    prop_assert!(out.n_gens() <= budget, "budget exceeded: {} > {}", out.n_gens(), budget);
    let mut rng = Rng(seed);
    for eps in eps_samples(&z.syms, &mut rng) {
        for eta in eta_samples(z.dim(), &mut rng, 3) {
            let x = point(&z, &eps, &eta);
            let t: Vec<f64> = (0..z.dim()).map(|_| rng.corner_biased()).collect();
            let v: Vec<Ex> =
                (0..z.dim()).map(|j| x[j].mulf(rel.slope[j]).add(&Ex::f(rel.offset[j])).add(&Ex::prod(t[j], rel.radius[j]))).collect();
            check(&out, &eps, &v, &|| format!("apply_relaxation eps={eps:?} eta={eta:?} t={t:?}"))?;
        }
    }
    Ok(())
}

#[test]
fn affine_dense_map_is_sound() {
    run(cases(), affine_strategy(), prop_affine);
}

/// Wide dot products (fan-in up to 3000) of same-sign terms, summed naively: the accumulated
/// rounding of the centre and the generators is then typically several units of γ₁·Σ|aᵢxᵢ|, so
/// the fan-in dependence of the error term is actually exercised.
#[test]
fn affine_large_fan_in_is_sound() {
    let strat = (prop::sample::select(vec![100usize, 1000, 3000]), 1usize..=2, 0usize..=2, any::<bool>(), any::<u64>());
    run((cases() / 20).max(8), strat, |(n_in, n_out, m, fma, seed)| {
        let mut rng = Rng(seed);
        // Same-sign entries with varied mantissas (1/3-like values round every time).
        let a: Vec<f64> = (0..n_in * n_out).map(|_| (1.0 + rng.unit()) / 3.0).collect();
        let map = Dense { a, rows: n_out, cols: n_in, b: Some(vec![0.1; n_out]), fma, reverse: false };
        let z = Zonotope {
            centre: (0..n_in).map(|_| 1.0 + rng.unit() / 7.0).collect(),
            syms: (0..m).collect(),
            gens: (0..m * n_in).map(|_| (1.0 + rng.unit()) * 1e-3 / 3.0).collect(),
            err: vec![0.0; n_in],
        };
        let out = z.affine(&map);
        well_formed(&out, "affine (large fan-in)")?;
        for eps in eps_samples(&z.syms, &mut rng) {
            let eta = vec![0.0; n_in];
            let v = map.exact(&point(&z, &eps, &eta));
            check(&out, &eps, &v, &|| format!("affine n_in={n_in} fma={fma} eps={eps:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn affine_exact_copy_map_is_sound() {
    let strat = (1usize..=6).prop_flat_map(|n| (zonotope(n, UNIVERSE, 7), prop::collection::vec(0..n, 1..=8), any::<u64>()));
    run(cases(), strat, |(z, src, seed)| {
        let map = Gather { src, cols: z.dim() };
        let out = z.affine(&map);
        well_formed(&out, "gather")?;
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            for eta in eta_samples(z.dim(), &mut rng, 2) {
                let x = point(&z, &eps, &eta);
                let v: Vec<Ex> = map.src.iter().map(|&i| x[i].clone()).collect();
                check(&out, &eps, &v, &|| format!("gather eps={eps:?} eta={eta:?}"))?;
            }
        }
        Ok(())
    });
}

#[test]
fn apply_relaxation_is_sound() {
    run(cases(), relaxation_strategy(), prop_relaxation);
}

fn two_sharing() -> impl Strategy<Value = (Zonotope, Zonotope, usize, u64)> {
    // Symbols from a universe of 6: the two zonotopes usually share some.
    dim_and(5, |n| (zonotope(n, 6, 5), zonotope(n, 6, 5), 0usize..=12, any::<u64>()))
        .prop_map(|(_, (a, b, budget, seed))| (a, b, budget, seed))
}

fn union_syms(a: &Zonotope, b: &Zonotope) -> Vec<usize> {
    let mut s: Vec<usize> = a.syms.iter().chain(&b.syms).copied().collect();
    s.sort_unstable();
    s.dedup();
    s
}

#[test]
fn add_and_sub_with_shared_symbols_are_sound() {
    run(cases(), two_sharing(), |(a, b, _, seed)| {
        let (sum, diff) = (a.add(&b), a.sub(&b));
        well_formed(&sum, "add")?;
        well_formed(&diff, "sub")?;
        let mut rng = Rng(seed);
        for eps in eps_samples(&union_syms(&a, &b), &mut rng) {
            for _ in 0..3 {
                let (ea, eb) = (eta_samples(a.dim(), &mut rng, 1).remove(0), eta_samples(a.dim(), &mut rng, 1).remove(0));
                let (x, y) = (point(&a, &eps, &ea), point(&b, &eps, &eb));
                let vs: Vec<Ex> = x.iter().zip(&y).map(|(p, q)| p.add(q)).collect();
                let vd: Vec<Ex> = x.iter().zip(&y).map(|(p, q)| p.sub(q)).collect();
                check(&sum, &eps, &vs, &|| format!("add eps={eps:?} eta_a={ea:?} eta_b={eb:?}"))?;
                check(&diff, &eps, &vd, &|| format!("sub eps={eps:?} eta_a={ea:?} eta_b={eb:?}"))?;
            }
        }
        // The same zonotope minus itself: shared symbols cancel, only rounding and the private
        // error boxes (treated as independent) remain.
        let zero = a.sub(&a);
        let mut rng = Rng(seed ^ 1);
        for eps in eps_samples(&a.syms, &mut rng) {
            let (e1, e2) = (eta_samples(a.dim(), &mut rng, 1).remove(0), eta_samples(a.dim(), &mut rng, 1).remove(0));
            let (x, y) = (point(&a, &eps, &e1), point(&a, &eps, &e2));
            let v: Vec<Ex> = x.iter().zip(&y).map(|(p, q)| p.sub(q)).collect();
            check(&zero, &eps, &v, &|| format!("a - a eps={eps:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn mul_with_shared_symbols_is_sound() {
    run(cases(), two_sharing(), |(a, b, budget, seed)| {
        let mut pool = pool_after(6);
        let prod = a.mul(&b, &mut pool, budget);
        well_formed(&prod, "mul")?;
        let mut pool2 = pool_after(6);
        let square = a.mul(&a, &mut pool2, budget);
        well_formed(&square, "mul (square)")?;
        let mut rng = Rng(seed);
        for eps in eps_samples(&union_syms(&a, &b), &mut rng) {
            for _ in 0..3 {
                let (ea, eb) = (eta_samples(a.dim(), &mut rng, 1).remove(0), eta_samples(a.dim(), &mut rng, 1).remove(0));
                let (x, y) = (point(&a, &eps, &ea), point(&b, &eps, &eb));
                let v: Vec<Ex> = x.iter().zip(&y).map(|(p, q)| p.mul(q)).collect();
                check(&prod, &eps, &v, &|| format!("mul budget={budget} eps={eps:?} eta_a={ea:?} eta_b={eb:?}"))?;
                // x · x with the same η (the true square).
                let sq: Vec<Ex> = x.iter().map(|p| p.mul(p)).collect();
                check(&square, &eps, &sq, &|| format!("square budget={budget} eps={eps:?} eta={ea:?}"))?;
            }
        }
        Ok(())
    });
}

#[test]
fn mul_interval_is_sound() {
    let strat =
        dim_and(5, |n| (zonotope(n, UNIVERSE, 7), prop::collection::vec((unit(), offset(), scale()), n), 0usize..=12, any::<u64>()));
    run(cases(), strat, |(n, (z, s, budget, seed))| {
        let factors: Vec<Interval> = s
            .iter()
            .map(|&(u, off, w)| {
                let lo = u * w.max(1.0) + off;
                Interval::new(lo, (lo + w).max(lo))
            })
            .collect();
        let mut pool = pool_after(UNIVERSE);
        let out = z.mul_interval(&factors, &mut pool, budget);
        well_formed(&out, "mul_interval")?;
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            for _ in 0..3 {
                let eta = eta_samples(n, &mut rng, 1).remove(0);
                let x = point(&z, &eps, &eta);
                let sv: Vec<f64> = factors
                    .iter()
                    .map(|f| match rng.next() % 3 {
                        0 => f.lo,
                        1 => f.hi,
                        _ => (f.lo + rng.unit() * (f.hi - f.lo)).clamp(f.lo, f.hi),
                    })
                    .collect();
                let v: Vec<Ex> = x.iter().zip(&sv).map(|(p, s)| p.mulf(*s)).collect();
                check(&out, &eps, &v, &|| format!("mul_interval eps={eps:?} eta={eta:?} s={sv:?}"))?;
            }
        }
        Ok(())
    });
}

#[test]
fn broadcast_is_sound() {
    let strat = dim_and(4, |n| (zonotope(n, UNIVERSE, 7), 1usize..=4, any::<u64>()));
    run(cases(), strat, |(n, (z, plane, seed))| {
        let out = z.broadcast(plane);
        well_formed(&out, "broadcast")?;
        prop_assert_eq!(out.dim(), n * plane);
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            let eta = eta_samples(n, &mut rng, 1).remove(0);
            let x = point(&z, &eps, &eta);
            // The broadcast copies share one η per source neuron: evaluate the output at the
            // matching η (a stronger check than independent boxes would need).
            let v: Vec<Ex> = (0..n * plane).map(|j| x[j / plane].clone()).collect();
            check(&out, &eps, &v, &|| format!("broadcast eps={eps:?} eta={eta:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn reduce_and_add_fresh_contain_the_original() {
    let strat = dim_and(5, |n| {
        (zonotope(n, 14, 14), 0usize..=6, prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..=1.0], n), scale(), any::<u64>())
    });
    run(cases(), strat, |(n, (z, budget, beta, bs, seed))| {
        let beta: Vec<f64> = beta.iter().map(|b| b * bs).collect();
        let mut reduced = z.clone();
        let mut pool = pool_after(14);
        reduced.reduce(&mut pool, budget);
        well_formed(&reduced, "reduce")?;
        prop_assert!(reduced.n_gens() <= budget, "reduce kept {} > {}", reduced.n_gens(), budget);
        prop_assert!(reduced.syms.iter().all(|s| z.syms.contains(s)), "reduce invented symbols");
        let mut fresh = z.clone();
        let mut pool2 = pool_after(14);
        fresh.add_fresh(&beta, &mut pool2, budget);
        well_formed(&fresh, "add_fresh")?;
        prop_assert!(fresh.n_gens() <= budget, "add_fresh kept {} > {}", fresh.n_gens(), budget);
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            for eta in eta_samples(n, &mut rng, 3) {
                let x = point(&z, &eps, &eta);
                check(&reduced, &eps, &x, &|| format!("reduce budget={budget} eps={eps:?} eta={eta:?}"))?;
                let t: Vec<f64> = (0..n).map(|_| rng.corner_biased()).collect();
                let v: Vec<Ex> = x.iter().zip(&t).zip(&beta).map(|((x, t), b)| x.add(&Ex::prod(*t, *b))).collect();
                check(&fresh, &eps, &v, &|| format!("add_fresh budget={budget} eps={eps:?} eta={eta:?} t={t:?}"))?;
            }
        }
        Ok(())
    });
}

/// `clamp_to` (reduced product with a box): every point of the zonotope that also lies in the
/// box stays in the clamped zonotope, with the same ε on the symbols it keeps. The boxes narrow
/// the zonotope's hull by up to 45 % on each side (so most neurons are replaced), are sometimes
/// wider (left alone) and sometimes a point.
#[test]
fn clamp_to_keeps_the_points_in_both_sets() {
    let strat = dim_and(5, |n| {
        (zonotope(n, UNIVERSE, 7), prop::collection::vec((0.0f64..=0.45, 0.0f64..=0.45, 0u8..4), n), 0.05f64..=1.0, any::<u64>())
    });
    run(cases(), strat, |(n, (z, cuts, ratio, seed))| {
        let hull = z.bounds();
        let boxes: Vec<Interval> = hull
            .iter()
            .zip(&cuts)
            .enumerate()
            .map(|(j, (b, &(a, c, kind)))| {
                let w = b.hi - b.lo;
                match kind {
                    0 => Interval::new(b.lo - 1.0, b.hi + 1.0),
                    1 => Interval::point(z.centre[j]),
                    _ => Interval::new(b.lo + a * w, (b.hi - c * w).max(b.lo + a * w)),
                }
            })
            .collect();
        let mut clamped = z.clone();
        let replaced = clamped.clamp_to(&boxes, &z.radius(), ratio);
        well_formed(&clamped, "clamp_to")?;
        prop_assert!(replaced <= n);
        prop_assert!(clamped.syms == z.syms, "clamp_to changed the symbols");
        let cb = clamped.bounds();
        for j in 0..n {
            prop_assert!(cb[j].hi - cb[j].lo <= (hull[j].hi - hull[j].lo) * (1.0 + 1e-12), "neuron {} got wider", j);
        }
        let mut rng = Rng(seed);
        for eps in eps_samples(&z.syms, &mut rng) {
            for eta in eta_samples(n, &mut rng, 3).into_iter().chain(std::iter::once(vec![0.0; n])) {
                let x = point(&z, &eps, &eta);
                if x.iter().zip(&boxes).all(|(v, b)| in_interval(v, b)) {
                    check(&clamped, &eps, &x, &|| format!("clamp_to boxes={boxes:?} eps={eps:?} eta={eta:?}"))?;
                }
            }
        }
        Ok(())
    });
}

#[test]
fn difference_bounds_are_sound() {
    let strat = dim_and(5, |n| (zonotope(n, UNIVERSE, 8), any::<u64>()));
    run(cases(), strat, |(n, (z, seed))| {
        let mut rng = Rng(seed);
        let d: Vec<Vec<Interval>> = (0..n).map(|i| (0..n).map(|j| z.difference_bounds(i, j)).collect()).collect();
        for eps in eps_samples(&z.syms, &mut rng) {
            for eta in eta_samples(n, &mut rng, 3) {
                let x = point(&z, &eps, &eta);
                for i in 0..n {
                    for j in 0..n {
                        let v = x[i].sub(&x[j]);
                        prop_assert!(
                            in_interval(&v, &d[i][j]),
                            "difference_bounds({}, {}) = [{:e}, {:e}] misses {:e} (eps={:?} eta={:?})",
                            i,
                            j,
                            d[i][j].lo,
                            d[i][j].hi,
                            v.to_f64(),
                            eps,
                            eta
                        );
                    }
                }
            }
        }
        Ok(())
    });
}

/// An interval from a centre, a width and a skew (endpoints are floats, lo ≤ hi).
fn interval() -> impl Strategy<Value = Interval> {
    (offset(), unit(), scale(), scale()).prop_map(|(off, u, s, w)| {
        let lo = off + u * s;
        Interval::new(lo, (lo + w).max(lo))
    })
}

fn samples_in(b: &Interval, rng: &mut Rng) -> Vec<f64> {
    let mut v = vec![b.lo, b.hi, b.mid()];
    for _ in 0..5 {
        v.push((b.lo + rng.unit() * (b.hi - b.lo)).clamp(b.lo, b.hi));
    }
    v
}

#[test]
fn from_box_is_sound() {
    let strat = (prop::collection::vec(interval(), 1..=6), any::<bool>(), any::<u64>());
    run(cases(), strat, |(boxes, symbols, seed)| {
        let mut pool = pool_after(3);
        let z = Zonotope::from_box(&boxes, &mut pool, symbols);
        well_formed(&z, "from_box")?;
        prop_assert!(z.syms.iter().all(|&s| s >= 3), "from_box reused an old symbol id");
        prop_assert_eq!(pool.used(), 3 + z.n_gens());
        if !symbols {
            prop_assert_eq!(z.n_gens(), 0);
        }
        let mut rng = Rng(seed);
        let none = Eps::new();
        for _ in 0..16 {
            let x: Vec<Ex> = boxes
                .iter()
                .map(|b| {
                    let s = samples_in(b, &mut rng);
                    Ex::f(s[(rng.next() % s.len() as u64) as usize])
                })
                .collect();
            check(&z, &none, &x, &|| format!("from_box symbols={symbols} x={x:?}"))?;
        }
        Ok(())
    });
}

#[test]
fn interval_arithmetic_is_sound() {
    run(cases(), (interval(), interval(), any::<u64>()), |(a, b, seed)| {
        let mut rng = Rng(seed);
        let (s, d, p, h) = (a.add(&b), a.sub(&b), a.mul(&b), a.hull(&b));
        let (c, r) = a.mid_rad();
        let around = Interval::around(c, r);
        let wide = a.widen(1e-14, 1e-300);
        for x in samples_in(&a, &mut rng) {
            for y in samples_in(&b, &mut rng) {
                let (xd, yd) = (Ex::f(x), Ex::f(y));
                prop_assert!(in_interval(&xd.add(&yd), &s), "{:?} + {:?} = {:?} misses {} + {}", a, b, s, x, y);
                prop_assert!(in_interval(&xd.sub(&yd), &d), "{:?} - {:?} = {:?} misses {} - {}", a, b, d, x, y);
                prop_assert!(in_interval(&Ex::prod(x, y), &p), "{:?} * {:?} = {:?} misses {} * {}", a, b, p, x, y);
                prop_assert!(h.contains(x) && h.contains(y), "hull");
            }
            // mid_rad: [lo, hi] ⊆ [c − r, c + r] in real arithmetic.
            prop_assert!(Ex::f(x).sub(&Ex::f(c)).abs().le(&Ex::f(r)), "mid_rad of {:?} = ({}, {}) misses {}", a, c, r, x);
            prop_assert!(around.contains(x) && wide.contains(x), "around/widen");
        }
        prop_assert!(a.width() >= a.hi - a.lo && Ex::f(a.hi).sub(&Ex::f(a.lo)).le(&Ex::f(a.width())), "width");
        prop_assert!(a.mag() >= a.lo.abs() && a.mag() >= a.hi.abs(), "mag");
        Ok(())
    });
}

/// Targeted extreme inputs through every operation, with all vertices.
#[test]
fn targeted_extremes() {
    let mk = |c: Vec<f64>, g: Vec<Vec<f64>>, e: Vec<f64>, first: usize| Zonotope {
        centre: c,
        syms: (first..first + g.len()).collect(),
        gens: g.concat(),
        err: e,
    };
    let cases: Vec<(&str, Zonotope)> = vec![
        ("zero width", mk(vec![1.5, -2.0, 0.0], vec![], vec![0.0; 3], 0)),
        ("zero generators rows", mk(vec![1.0, 2.0, 3.0], vec![vec![0.0; 3]; 2], vec![0.0; 3], 0)),
        ("very wide", mk(vec![0.0, 1e6, -1e6], vec![vec![1e6, -1e6, 5e5], vec![3e5, 1e6, -1e6]], vec![1e6, 0.0, 2e5], 0)),
        ("very narrow", mk(vec![0.3, -0.7, 1.0], vec![vec![1e-12, -1e-12, 3e-13], vec![2e-12, 0.0, -1e-12]], vec![1e-12, 0.0, 1e-13], 1)),
        ("straddling 0", mk(vec![0.0, 1e-3, -1e-3], vec![vec![1.0, 0.5, -2.0], vec![-0.25, 1.0, 1.0]], vec![0.1, 0.0, 0.3], 2)),
        ("tiny against centre", mk(vec![1.0, -1e6, 3.0], vec![vec![1.2e-16, 7e-11, 3e-16]; 6], vec![1e-16, 0.0, 4e-16], 0)),
    ];
    let maps = [
        Dense { a: vec![1.0, -1.0, 0.5, 1e6, 1e-12, -3.0], rows: 2, cols: 3, b: Some(vec![1e6, -0.1]), fma: false, reverse: false },
        Dense { a: vec![0.1; 9], rows: 3, cols: 3, b: None, fma: true, reverse: true },
        Dense { a: vec![1.0, 1.0, 1.0, 1.0, -1.0, 0.0], rows: 2, cols: 3, b: Some(vec![0.0, 0.0]), fma: false, reverse: true },
    ];
    let rels = [
        Relaxation { slope: vec![0.0, 1.0, -2.5], offset: vec![0.0, 1e6, -1e-12], radius: vec![0.0, 1e-12, 1e6] },
        Relaxation { slope: vec![1e6, 1e-12, 0.25], offset: vec![0.5, 0.0, 0.0], radius: vec![0.5, 0.0, 1e-16] },
    ];
    let mut rng = Rng(7);
    for (name, z) in &cases {
        let other = mk(vec![2.0, -1e-12, 0.0], vec![vec![1.0, 1e-12, 1e6]], vec![0.0, 1e-12, 1.0], 1);
        for budget in [0usize, 1, 2, 100] {
            let mut pool = pool_after(UNIVERSE);
            let outs: Vec<(String, Zonotope)> = {
                let mut v = Vec::new();
                for (k, m) in maps.iter().enumerate() {
                    v.push((format!("affine{k}"), z.affine(m)));
                }
                for (k, r) in rels.iter().enumerate() {
                    v.push((format!("relax{k}"), z.apply_relaxation(r, &mut pool, budget)));
                }
                v.push(("add".into(), z.add(&other)));
                v.push(("sub".into(), z.sub(&other)));
                v.push(("mul".into(), z.mul(&other, &mut pool, budget)));
                v.push(("square".into(), z.mul(z, &mut pool, budget)));
                let mut r = z.clone();
                r.reduce(&mut pool, budget);
                v.push(("reduce".into(), r));
                v
            };
            let syms = union_syms(z, &other);
            for eps in eps_samples(&syms, &mut rng) {
                for eta in eta_samples(3, &mut rng, 4) {
                    let x = point(z, &eps, &eta);
                    let y = point(&other, &eps, &eta_samples(3, &mut rng, 1).remove(0));
                    let t: Vec<f64> = (0..3).map(|_| rng.corner_biased()).collect();
                    for (what, out) in &outs {
                        let v: Vec<Ex> = match what.as_str() {
                            "affine0" => maps[0].exact(&x),
                            "affine1" => maps[1].exact(&x),
                            "affine2" => maps[2].exact(&x),
                            "relax0" | "relax1" => {
                                let r = &rels[(what == "relax1") as usize];
                                (0..3).map(|j| x[j].mulf(r.slope[j]).add(&Ex::f(r.offset[j])).add(&Ex::prod(t[j], r.radius[j]))).collect()
                            }
                            // `other`'s η differs from z's: evaluate with the sampled y.
                            "add" => x.iter().zip(&y).map(|(a, b)| a.add(b)).collect(),
                            "sub" => x.iter().zip(&y).map(|(a, b)| a.sub(b)).collect(),
                            "mul" => x.iter().zip(&y).map(|(a, b)| a.mul(b)).collect(),
                            "square" => x.iter().map(|a| a.mul(a)).collect(),
                            "reduce" => x.clone(),
                            _ => unreachable!(),
                        };
                        check(out, &eps, &v, &|| format!("{name}/{what} budget={budget} eps={eps:?} eta={eta:?}"))
                            .unwrap_or_else(|e| panic!("{e}"));
                    }
                }
            }
        }
    }
}

/// The main properties at 100 000 cases: `cargo test --release -- --ignored`.
#[test]
#[ignore]
fn long_run_main_properties() {
    run(100_000, affine_strategy(), prop_affine);
    run(100_000, relaxation_strategy(), prop_relaxation);
}

/// The exact-arithmetic reference itself.
#[test]
fn exact_reference_sanity() {
    let e = f64::EPSILON;
    // (1 + ε)² = 1 + 2ε + ε², held exactly.
    let p = Ex::prod(1.0 + e, 1.0 + e);
    assert_eq!(p.sub(&Ex::f(1.0 + 2.0 * e)), Ex::f(e * e));
    // Tiny terms survive huge ones.
    let s = Ex::f(1e300).add(&Ex::f(1e-300)).sub(&Ex::f(1e300));
    assert_eq!(s, Ex::f(1e-300));
    assert!(Ex::f(1.0).add(&Ex::f(1e-200)).le(&Ex::f(1.0).add(&Ex::f(2e-200))));
    assert!(!Ex::f(1.0).add(&Ex::f(1e-200)).le(&Ex::f(1.0)));
    // A product of sums, expanded by hand: (a + b)(c + d) − ac − ad − bc − bd = 0.
    let (a, b, c, d) = (0.1, 3e-17, -7.3, 1e-20);
    let lhs = Ex::f(a).add(&Ex::f(b)).mul(&Ex::f(c).add(&Ex::f(d)));
    let rhs = Ex::prod(a, c).add(&Ex::prod(a, d)).add(&Ex::prod(b, c)).add(&Ex::prod(b, d));
    assert_eq!(lhs.sub(&rhs).sign(), 0);
    // Random sums: the compressed expansion's sign agrees with a sorted exact check.
    let mut rng = Rng(3);
    for _ in 0..1000 {
        let xs: Vec<f64> = (0..6).map(|_| rng.sym() * 10f64.powi((rng.next() % 40) as i32 - 20)).collect();
        let mut total = Ex::zero();
        for x in &xs {
            total = total.add(&Ex::f(*x));
        }
        let back = xs.iter().fold(total.clone(), |t, x| t.sub(&Ex::f(*x)));
        assert_eq!(back.sign(), 0, "{xs:?}");
        assert!(total.0.windows(2).all(|w| w[0].abs() < w[1].abs()), "components not increasing: {:?}", total.0);
    }
}
