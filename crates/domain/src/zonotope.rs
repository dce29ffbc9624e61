//! Zonotopes over shared noise symbols, with a per-neuron interval error term.
//!
//! A zonotope of dimension `n` denotes
//! `{ c + Σₖ εₖ gₖ + diag(e) η : ε ∈ [−1, 1]^m, η ∈ [−1, 1]^n }`.
//! Each generator row `gₖ` carries a global symbol id (`syms[k]`): two zonotopes that mention
//! the same id share that noise symbol, which is how correlations survive residual adds and
//! products. `e ≥ 0` is a box of symbols private to this zonotope; it collects rounding errors
//! and generators boxed by order reduction. Rows are stored contiguously (`m × n`, row-major),
//! so an affine layer is one batched call over all generators.

use crate::{gamma, Interval, ETA, U};
use rayon::prelude::*;
use std::cmp::Ordering;

/// Terms below this fraction of a tensor's scale (its neuron's centre plus the mean |centre|)
/// are rounding noise: they go to the error box instead of becoming shared symbols. Purely a
/// performance choice; either way is sound.
pub const NEGLIGIBLE: f64 = 1e-9;

/// Hands out fresh noise-symbol ids, in increasing order.
#[derive(Debug, Default, Clone)]
pub struct SymbolPool {
    next: usize,
}

impl SymbolPool {
    /// A pool that starts at id 0.
    pub fn new() -> Self {
        SymbolPool { next: 0 }
    }

    /// Reserves `n` consecutive ids and returns the first.
    pub fn fresh(&mut self, n: usize) -> usize {
        let first = self.next;
        self.next += n;
        first
    }

    /// Number of ids handed out so far.
    pub fn used(&self) -> usize {
        self.next
    }
}

/// A linear map `x ↦ A x (+ b)` supplied by the caller (a conv, a dense layer, a pooling).
///
/// Contract (what soundness relies on): `apply` computes each output coordinate as a
/// floating-point dot product of at most `fan_in()` terms `aᵢⱼ xⱼ` (a division `x / s` counts
/// as the term `(1/s)·x`), in any order, with or without FMA; `apply_abs(v)` does the same
/// with `|A|` on a non-negative `v`; `offset` is added exactly once to the centre.
pub trait LinearMap: Sync {
    /// Input dimension.
    fn in_dim(&self) -> usize;
    /// Output dimension.
    fn out_dim(&self) -> usize;
    /// `A x` for `n` row vectors stored contiguously.
    fn apply(&self, x: &[f64], n: usize) -> Vec<f64>;
    /// `|A| v` for one non-negative vector.
    fn apply_abs(&self, v: &[f64]) -> Vec<f64>;
    /// The offset `b`, if any.
    fn offset(&self) -> Option<Vec<f64>>;
    /// The largest number of terms in one output's dot product.
    fn fan_in(&self) -> usize;
    /// True when `apply` only moves or copies values (padding, reshapes): no rounding at all.
    fn exact(&self) -> bool {
        false
    }
}

/// A per-neuron linear enclosure of a function: for every `x` in the neuron's input range,
/// `f(x) ∈ slope·x + offset + [−radius, radius]` (in real arithmetic).
#[derive(Debug, Clone, PartialEq)]
pub struct Relaxation {
    /// λ per neuron.
    pub slope: Vec<f64>,
    /// μ per neuron.
    pub offset: Vec<f64>,
    /// β ≥ 0 per neuron.
    pub radius: Vec<f64>,
}

/// A zonotope with an interval error term; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Zonotope {
    /// Centre `c`.
    pub centre: Vec<f64>,
    /// Symbol id of each generator row, strictly increasing.
    pub syms: Vec<usize>,
    /// Generator rows, `syms.len() × dim`, row-major.
    pub gens: Vec<f64>,
    /// Per-neuron independent error radius `e ≥ 0`.
    pub err: Vec<f64>,
}

fn abs_sum_rows(gens: &[f64], dim: usize) -> Vec<f64> {
    // Column sums of |G|, parallel over column blocks so the order (and result) is fixed.
    let mut out = vec![0.0; dim];
    if dim == 0 {
        return out;
    }
    let block = 256;
    out.par_chunks_mut(block).enumerate().for_each(|(b, o)| {
        let start = b * block;
        for row in gens.chunks(dim) {
            for (k, v) in o.iter_mut().enumerate() {
                *v += row[start + k].abs();
            }
        }
    });
    out
}

impl Zonotope {
    /// A single point (no generators, no error).
    pub fn point(x: &[f64]) -> Self {
        Zonotope { centre: x.to_vec(), syms: vec![], gens: vec![], err: vec![0.0; x.len()] }
    }

    /// The box `∏ [loᵢ, hiᵢ]`. With `symbols`, every coordinate of positive width gets a fresh
    /// shared symbol (so later operations keep its correlations); otherwise the widths go to
    /// the private error term.
    pub fn from_box(bounds: &[Interval], pool: &mut SymbolPool, symbols: bool) -> Self {
        let dim = bounds.len();
        let mut centre = Vec::with_capacity(dim);
        let mut rad = Vec::with_capacity(dim);
        for b in bounds {
            let (c, r) = b.mid_rad();
            centre.push(c);
            rad.push(r);
        }
        if !symbols {
            return Zonotope { centre, syms: vec![], gens: vec![], err: rad };
        }
        // Rounding-sized widths (an enclosure of b/255, say) stay in the error box.
        let scale = centre.iter().map(|c: &f64| c.abs()).sum::<f64>() / dim.max(1) as f64;
        let negligible = |i: usize| rad[i] <= NEGLIGIBLE * (centre[i].abs() + scale);
        let active: Vec<usize> = (0..dim).filter(|&i| rad[i] > 0.0 && !negligible(i)).collect();
        let err: Vec<f64> = (0..dim).map(|i| if negligible(i) { rad[i] } else { 0.0 }).collect();
        let first = pool.fresh(active.len());
        let mut gens = vec![0.0; active.len() * dim];
        for (k, &i) in active.iter().enumerate() {
            gens[k * dim + i] = rad[i];
        }
        Zonotope { centre, syms: (first..first + active.len()).collect(), gens, err }
    }

    /// The same set with every private error term `eⱼ > 0` turned into a fresh shared symbol
    /// (one generator row `eⱼ·uⱼ` each; exact, no rounding). A following affine map then keeps
    /// those terms' correlations across its outputs — `Σᵢ|W_ci − W_ji|eᵢ` instead of
    /// `Σᵢ(|W_ci| + |W_ji|)eᵢ` for a difference of two outputs — at the cost of one row per
    /// lifted neuron. A non-finite term stays private (it says "unbounded").
    pub fn with_lifted_errors(&self, pool: &mut SymbolPool) -> Zonotope {
        let n = self.dim();
        let lifted: Vec<usize> = (0..n).filter(|&j| self.err[j] > 0.0 && self.err[j].is_finite()).collect();
        let mut z = self.clone();
        let first = pool.fresh(lifted.len());
        let base = z.gens.len();
        z.gens.resize(base + lifted.len() * n, 0.0);
        for (k, &j) in lifted.iter().enumerate() {
            z.gens[base + k * n + j] = self.err[j];
            z.err[j] = 0.0;
            z.syms.push(first + k);
        }
        z
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.centre.len()
    }

    /// Number of generator rows.
    pub fn n_gens(&self) -> usize {
        self.syms.len()
    }

    /// Bytes held by the generator matrix.
    pub fn bytes(&self) -> usize {
        self.gens.len() * 8
    }

    /// Per-neuron `Σₖ|gₖ|` in floating point (not yet rounded up; see [`Zonotope::radius_from`]).
    /// Transformers that need both this and the radius compute it once.
    pub fn abs_sums(&self) -> Vec<f64> {
        abs_sum_rows(&self.gens, self.dim())
    }

    /// Per-neuron radius `Σₖ|gₖ| + e`, rounded up.
    pub fn radius(&self) -> Vec<f64> {
        self.radius_from(&self.abs_sums())
    }

    /// [`Zonotope::radius`] from the sums `s` of [`Zonotope::abs_sums`] of this zonotope.
    pub fn radius_from(&self, s: &[f64]) -> Vec<f64> {
        let infl = 1.0 + gamma(self.n_gens() + 1);
        // A coordinate with no generator weight and no error is exact: keep it at zero, so
        // callers can tell "no uncertainty reaches here" (e.g. an unaffected neuron of D).
        s.iter().zip(&self.err).map(|(a, e)| if a + e == 0.0 { 0.0 } else { ((a + e) * infl).next_up() }).collect()
    }

    /// The interval hull of the zonotope, rounded outward.
    pub fn bounds(&self) -> Vec<Interval> {
        self.bounds_from(&self.radius())
    }

    /// [`Zonotope::bounds`] from this zonotope's [`Zonotope::radius`] `rad`.
    pub fn bounds_from(&self, rad: &[f64]) -> Vec<Interval> {
        rad.iter().zip(&self.centre).map(|(&r, &c)| Interval::around(c, r)).collect()
    }

    /// Reduced product with an independent enclosure: every neuron whose interval `bounds[j]`
    /// has a radius below `ratio` times the zonotope's own is replaced by that box (its
    /// generator column zeroed, its centre and error set from the box). A replaced neuron loses
    /// its correlations, hence `ratio < 1` in practice. Sound for every point that lies in both
    /// sets: the replaced neurons keep their values, the others are untouched. Returns how many
    /// neurons were replaced.
    ///
    /// `rad` is the zonotope's [`Zonotope::radius`] (callers usually have it already); it only
    /// decides which neurons are replaced, so soundness does not depend on it.
    pub fn clamp_to(&mut self, bounds: &[Interval], rad: &[f64], ratio: f64) -> usize {
        self.clamp_to_listed(bounds, rad, ratio).len()
    }

    /// [`Zonotope::clamp_to`], returning the replaced neurons.
    pub fn clamp_to_listed(&mut self, bounds: &[Interval], rad: &[f64], ratio: f64) -> Vec<usize> {
        let n = self.dim();
        assert_eq!(bounds.len(), n, "clamp bounds length");
        assert_eq!(rad.len(), n, "clamp radius length");
        let replace: Vec<usize> = (0..n).filter(|&j| bounds[j].mid_rad().1 < ratio * rad[j]).collect();
        if replace.is_empty() {
            return replace;
        }
        for &j in &replace {
            let (c, r) = bounds[j].mid_rad();
            self.centre[j] = c;
            self.err[j] = r;
        }
        self.gens.par_chunks_mut(n.max(1)).for_each(|row| replace.iter().for_each(|&j| row[j] = 0.0));
        replace
    }

    /// Sound bounds on `zᵢ − zⱼ`, keeping the correlations between the two coordinates.
    pub fn difference_bounds(&self, i: usize, j: usize) -> Interval {
        let n = self.dim();
        let mut s = 0.0;
        for row in self.gens.chunks(n) {
            s += (row[i] - row[j]).abs();
        }
        let m = self.n_gens();
        let r = (s * (1.0 + gamma(m + 2)) + self.err[i] + self.err[j]) * (1.0 + 4.0 * U) + ETA * (m as f64 + 2.0);
        let c = self.centre[i] - self.centre[j];
        Interval::around(c, (r + U * c.abs()).next_up())
    }

    /// The image under an affine map, with the map's rounding added to the error term.
    pub fn affine(&self, map: &dyn LinearMap) -> Zonotope {
        if map.exact() {
            return self.affine_with_sums(map, &[]);
        }
        self.affine_with_sums(map, &self.abs_sums())
    }

    /// [`Zonotope::affine`] given this zonotope's [`Zonotope::abs_sums`] `s` (callers that keep
    /// them skip a pass over the generators; unused, and may be empty, for an exact map).
    pub fn affine_with_sums(&self, map: &dyn LinearMap, s: &[f64]) -> Zonotope {
        assert_eq!(map.in_dim(), self.dim(), "linear map input dimension");
        let (n_in, n_out, m) = (self.dim(), map.out_dim(), self.n_gens());
        let mut centre = map.apply(&self.centre, 1);
        let offset = map.offset();
        if let Some(b) = &offset {
            centre.iter_mut().zip(b).for_each(|(c, b)| *c += b);
        }
        let gens = if m > 0 { map.apply(&self.gens, m) } else { vec![] };
        if map.exact() {
            let err = map.apply_abs(&self.err);
            return Zonotope { centre, syms: self.syms.clone(), gens, err };
        }
        let g = gamma(map.fan_in() + 1);
        assert_eq!(s.len(), n_in, "abs sums length");
        let v: Vec<f64> = (0..n_in)
            .map(|i| ((self.err[i] + g * ((self.centre[i].abs() + s[i]) * (1.0 + gamma(m + 1)))) * (1.0 + 3.0 * U)).next_up())
            .collect();
        let w = map.apply_abs(&v);
        let infl = 1.0 + gamma(map.fan_in() + 1);
        let tiny = ETA * ((m + 2) * map.fan_in() + 2) as f64;
        let err = (0..n_out)
            .map(|j| {
                let b = offset.as_ref().map(|b| b[j].abs()).unwrap_or(0.0);
                ((w[j] * infl + g * b) * (1.0 + 4.0 * U) + tiny).next_up()
            })
            .collect();
        Zonotope { centre, syms: self.syms.clone(), gens, err }
    }

    /// Applies per-neuron enclosures `f(x) ∈ λx + μ ± β`. The β terms become fresh shared
    /// symbols (one per neuron with β > 0), subject to `budget` total generator rows; the
    /// rest are boxed into the error term (see [`Zonotope::reduce`]).
    pub fn apply_relaxation(&self, rel: &Relaxation, pool: &mut SymbolPool, budget: usize) -> Zonotope {
        self.apply_relaxation_with(rel, &self.abs_sums(), pool, budget)
    }

    /// [`Zonotope::apply_relaxation`] given this zonotope's [`Zonotope::abs_sums`] `s`.
    pub fn apply_relaxation_with(&self, rel: &Relaxation, s: &[f64], pool: &mut SymbolPool, budget: usize) -> Zonotope {
        let n = self.dim();
        assert_eq!(rel.slope.len(), n, "relaxation length");
        assert_eq!(s.len(), n, "abs sums length");
        let m = self.n_gens();
        let mut gens = self.gens.clone();
        // The scaled rows' L1 norms (what order reduction ranks by) come with the scaling pass.
        let norms: Vec<f64> = gens
            .par_chunks_mut(n.max(1))
            .map(|row| {
                row.iter_mut().zip(&rel.slope).for_each(|(g, l)| *g *= l);
                row.iter().map(|v| v.abs()).sum()
            })
            .collect();
        let mut centre = Vec::with_capacity(n);
        let mut err = Vec::with_capacity(n);
        let mut beta = Vec::with_capacity(n);
        for j in 0..n {
            let (l, mu, c) = (rel.slope[j], rel.offset[j], self.centre[j]);
            let lc = l * c;
            centre.push(lc + mu);
            // Rounding: the centre's two operations, and one product per generator entry.
            let round = 2.0 * U * (lc.abs() + mu.abs()) + U * l.abs() * s[j] * (1.0 + gamma(m + 1)) + ETA * (m as f64 + 2.0);
            err.push(((l.abs() * self.err[j] + round) * (1.0 + 4.0 * U)).next_up());
            beta.push((rel.radius[j] * (1.0 + 2.0 * U)).next_up());
        }
        let mut z = Zonotope { centre, syms: self.syms.clone(), gens, err };
        z.add_fresh_ranked(&beta, pool, budget, Some(norms));
        z
    }

    /// Adds, for each neuron `j` with `beta[j] > 0`, a fresh symbol of weight `beta[j]` on that
    /// neuron alone; keeps at most `budget` generator rows (largest by L1 norm), boxing the rest.
    pub fn add_fresh(&mut self, beta: &[f64], pool: &mut SymbolPool, budget: usize) {
        self.add_fresh_ranked(beta, pool, budget, None);
    }

    /// [`Zonotope::add_fresh`] given the rows' L1 norms when the caller already has them.
    fn add_fresh_ranked(&mut self, beta: &[f64], pool: &mut SymbolPool, budget: usize, norms: Option<Vec<f64>>) {
        let n = self.dim();
        let m = self.n_gens();
        // A radius that is NaN or infinite (an overflowed relaxation) leaves the neuron
        // unbounded; the comparisons below would otherwise skip a NaN as if it were 0.
        for (e, &b) in self.err.iter_mut().zip(beta) {
            if !b.is_finite() {
                *e = f64::INFINITY;
            }
        }
        // Rounding-sized terms carry no useful correlation: they go straight to the error box.
        let scale = self.centre.iter().map(|c| c.abs()).sum::<f64>() / n.max(1) as f64;
        let negligible = |j: usize| beta[j] <= NEGLIGIBLE * (self.centre[j].abs() + scale) + 1e-280;
        for j in (0..n).filter(|&j| beta[j] > 0.0 && beta[j].is_finite() && negligible(j)) {
            self.err[j] = ((self.err[j] + beta[j]) * (1.0 + 2.0 * U)).next_up();
        }
        let fresh: Vec<usize> = (0..n).filter(|&j| beta[j] > 0.0 && beta[j].is_finite() && !negligible(j)).collect();
        // Candidates: existing rows (norm = L1) then fresh diagonal rows (norm = β).
        let mut keep_rows = vec![true; m];
        let mut keep_fresh = vec![true; fresh.len()];
        if budget == 0 {
            keep_rows.iter_mut().for_each(|k| *k = false);
            keep_fresh.iter_mut().for_each(|k| *k = false);
        } else if m + fresh.len() > budget {
            let norms = norms.unwrap_or_else(|| self.gens.par_chunks(n.max(1)).map(|r| r.iter().map(|v| v.abs()).sum()).collect());
            let mut order: Vec<(f64, usize)> = norms.iter().copied().enumerate().map(|(k, v)| (v, k)).collect();
            order.extend(fresh.iter().enumerate().map(|(k, &j)| (beta[j], m + k)));
            order.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(Ordering::Equal).then(a.1.cmp(&b.1)));
            keep_rows.iter_mut().for_each(|k| *k = false);
            keep_fresh.iter_mut().for_each(|k| *k = false);
            for &(_, idx) in order.iter().take(budget) {
                if idx < m {
                    keep_rows[idx] = true;
                } else {
                    keep_fresh[idx - m] = true;
                }
            }
        }
        let dropped: Vec<usize> = (0..m).filter(|&k| !keep_rows[k]).collect();
        if !dropped.is_empty() {
            for &k in &dropped {
                let row = &self.gens[k * n..(k + 1) * n];
                self.err.iter_mut().zip(row).for_each(|(e, g)| *e += g.abs());
            }
            let infl = 1.0 + gamma(dropped.len() + 1);
            self.err.iter_mut().for_each(|e| *e = (*e * infl).next_up());
            // Compact the kept rows in place, in order (no new allocation).
            let mut w = 0;
            for k in (0..m).filter(|&k| keep_rows[k]) {
                if w != k {
                    self.gens.copy_within(k * n..(k + 1) * n, w * n);
                    self.syms[w] = self.syms[k];
                }
                w += 1;
            }
            self.gens.truncate(w * n);
            self.syms.truncate(w);
        }
        let kept: Vec<usize> = fresh.iter().enumerate().filter(|(k, _)| keep_fresh[*k]).map(|(_, &j)| j).collect();
        for (k, &j) in fresh.iter().enumerate() {
            if !keep_fresh[k] {
                self.err[j] = ((self.err[j] + beta[j]) * (1.0 + 2.0 * U)).next_up();
            }
        }
        if !kept.is_empty() {
            let first = pool.fresh(kept.len());
            let base = self.gens.len();
            self.gens.resize(base + kept.len() * n, 0.0);
            for (k, &j) in kept.iter().enumerate() {
                self.gens[base + k * n + j] = beta[j];
                self.syms.push(first + k);
            }
        }
    }

    /// Boxes generators until at most `budget` rows remain (smallest L1 norm first).
    pub fn reduce(&mut self, pool: &mut SymbolPool, budget: usize) {
        let zero = vec![0.0; self.dim()];
        self.add_fresh(&zero, pool, budget);
    }

    /// Merges the symbol sets of two zonotopes, returning the aligned rows of each
    /// (`None` where a zonotope lacks the symbol).
    fn merged<'a>(&'a self, o: &'a Zonotope) -> (Vec<usize>, Vec<(Option<&'a [f64]>, Option<&'a [f64]>)>) {
        let n = self.dim();
        let (mut i, mut j) = (0, 0);
        let mut syms = Vec::with_capacity(self.n_gens() + o.n_gens());
        let mut rows = Vec::with_capacity(self.n_gens() + o.n_gens());
        let row_a = |k: usize| &self.gens[k * n..(k + 1) * n];
        let row_b = |k: usize| &o.gens[k * n..(k + 1) * n];
        while i < self.n_gens() || j < o.n_gens() {
            let a = self.syms.get(i).copied().unwrap_or(usize::MAX);
            let b = o.syms.get(j).copied().unwrap_or(usize::MAX);
            match a.cmp(&b) {
                Ordering::Less => {
                    syms.push(a);
                    rows.push((Some(row_a(i)), None));
                    i += 1;
                }
                Ordering::Greater => {
                    syms.push(b);
                    rows.push((None, Some(row_b(j))));
                    j += 1;
                }
                Ordering::Equal => {
                    syms.push(a);
                    rows.push((Some(row_a(i)), Some(row_b(j))));
                    i += 1;
                    j += 1;
                }
            }
        }
        (syms, rows)
    }

    /// `self + sign·o` (sign = ±1), exact up to the rounding of each addition.
    fn add_signed(&self, o: &Zonotope, sign: f64) -> Zonotope {
        let n = self.dim();
        assert_eq!(n, o.dim(), "dimension mismatch in zonotope addition");
        let (syms, rows) = self.merged(o);
        let mut gens = vec![0.0; syms.len() * n];
        let mut round = vec![0.0; n];
        gens.par_chunks_mut(n.max(1)).zip(rows.par_iter()).for_each(|(g, (a, b))| match (a, b) {
            (Some(a), Some(b)) => g.iter_mut().enumerate().for_each(|(k, v)| *v = a[k] + sign * b[k]),
            (Some(a), None) => g.copy_from_slice(a),
            (None, Some(b)) => g.iter_mut().zip(b.iter()).for_each(|(v, x)| *v = sign * x),
            (None, None) => {}
        });
        // Each coinciding entry's sum may round: bound by u·|sum| per row.
        let shared: Vec<usize> = rows.iter().enumerate().filter(|(_, (a, b))| a.is_some() && b.is_some()).map(|(k, _)| k).collect();
        for &k in &shared {
            round.iter_mut().zip(&gens[k * n..(k + 1) * n]).for_each(|(r, g)| *r += g.abs());
        }
        let infl = U * (1.0 + gamma(shared.len() + 1));
        let centre: Vec<f64> = self.centre.iter().zip(&o.centre).map(|(a, b)| a + sign * b).collect();
        let err = (0..n).map(|j| ((self.err[j] + o.err[j] + infl * round[j] + U * centre[j].abs()) * (1.0 + 3.0 * U)).next_up()).collect();
        Zonotope { centre, syms, gens, err }
    }

    /// Sum of two zonotopes of the same dimension (shared symbols combine exactly).
    pub fn add(&self, o: &Zonotope) -> Zonotope {
        self.add_signed(o, 1.0)
    }

    /// Difference `self − o`.
    pub fn sub(&self, o: &Zonotope) -> Zonotope {
        self.add_signed(o, -1.0)
    }

    /// Elementwise product by affine arithmetic: the bilinear part over shared symbols is kept;
    /// the quadratic remainder `|Σ…|·|Σ…| ≤ rad(a)·rad(b)` becomes one fresh symbol per neuron.
    pub fn mul(&self, o: &Zonotope, pool: &mut SymbolPool, budget: usize) -> Zonotope {
        let n = self.dim();
        assert_eq!(n, o.dim(), "dimension mismatch in zonotope product");
        let (syms, rows) = self.merged(o);
        let (ca, cb) = (&self.centre, &o.centre);
        let mut gens = vec![0.0; syms.len() * n];
        gens.par_chunks_mut(n.max(1)).zip(rows.par_iter()).for_each(|(g, (a, b))| {
            for k in 0..n {
                let va = a.map(|r| cb[k] * r[k]).unwrap_or(0.0);
                let vb = b.map(|r| ca[k] * r[k]).unwrap_or(0.0);
                g[k] = va + vb;
            }
        });
        let (sa, sb) = (abs_sum_rows(&self.gens, n), abs_sum_rows(&o.gens, n));
        let mg = syms.len();
        let mut centre = Vec::with_capacity(n);
        let mut err = Vec::with_capacity(n);
        let mut beta = Vec::with_capacity(n);
        for k in 0..n {
            let c = ca[k] * cb[k];
            centre.push(c);
            let lin_round = 3.0 * U * (ca[k].abs() * sb[k] + cb[k].abs() * sa[k]) * (1.0 + gamma(mg + 1));
            let e = ca[k].abs() * o.err[k] + cb[k].abs() * self.err[k] + U * c.abs() + lin_round + ETA * (mg as f64 + 2.0);
            err.push((e * (1.0 + 4.0 * U)).next_up());
            let ra = (sa[k] * (1.0 + gamma(self.n_gens() + 1)) + self.err[k]) * (1.0 + 2.0 * U);
            let rb = (sb[k] * (1.0 + gamma(o.n_gens() + 1)) + o.err[k]) * (1.0 + 2.0 * U);
            beta.push((ra * rb * (1.0 + 2.0 * U)).next_up());
        }
        let mut z = Zonotope { centre, syms, gens, err };
        z.add_fresh(&beta, pool, budget);
        z
    }

    /// Product with a per-neuron interval factor `s ∈ [lo, hi]` (no shared symbols with the
    /// factor): `s·z = mid(s)·z + (s − mid(s))·z` with the second term bounded by `rad(s)·|z|`.
    pub fn mul_interval(&self, s: &[Interval], pool: &mut SymbolPool, budget: usize) -> Zonotope {
        self.mul_interval_widened(s, None, pool, budget)
    }

    /// [`Zonotope::mul_interval`] for every point of the zonotope widened by `extra[j] ≥ 0` per
    /// neuron (a term carried outside it): the relaxation `mid(s)·z + rad(s)·|z|` is built on
    /// the widened range, so the same slope `mid(s)` applies to the carried term.
    pub fn mul_interval_widened(&self, s: &[Interval], extra: Option<&[f64]>, pool: &mut SymbolPool, budget: usize) -> Zonotope {
        self.mul_interval_widened_with(s, extra, &self.abs_sums(), pool, budget)
    }

    /// [`Zonotope::mul_interval_widened`] given this zonotope's [`Zonotope::abs_sums`] `sums`
    /// (one pass over the generators serves both the radius and the relaxation).
    pub fn mul_interval_widened_with(
        &self,
        s: &[Interval],
        extra: Option<&[f64]>,
        sums: &[f64],
        pool: &mut SymbolPool,
        budget: usize,
    ) -> Zonotope {
        let rad = self.radius_from(sums);
        let mut slope = Vec::with_capacity(self.dim());
        let mut radius = Vec::with_capacity(self.dim());
        for j in 0..self.dim() {
            let (m, r) = s[j].mid_rad();
            slope.push(m);
            let widened = extra.map_or(rad[j], |e| (rad[j] + e[j]).next_up());
            radius.push(((r * (self.centre[j].abs() + widened)) * (1.0 + 3.0 * U)).next_up());
        }
        let rel = Relaxation { slope, offset: vec![0.0; self.dim()], radius };
        self.apply_relaxation_with(&rel, sums, pool, budget)
    }

    /// Repeats each coordinate `plane` times: `[C] → [C × plane]` (a broadcast, exact).
    pub fn broadcast(&self, plane: usize) -> Zonotope {
        let rep = |v: &[f64]| -> Vec<f64> { v.iter().flat_map(|&x| std::iter::repeat(x).take(plane)).collect() };
        let n = self.dim();
        let gens = self.gens.chunks(n.max(1)).flat_map(rep).collect();
        Zonotope { centre: rep(&self.centre), syms: self.syms.clone(), gens, err: rep(&self.err) }
    }
}
