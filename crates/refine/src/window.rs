//! Encoding a window of late layers as linear rows.
//!
//! The window is a suffix of the layer list. Every value it reads from before the suffix (its
//! inputs: the main path and any residual skip) is tied to the zonotope the forward analysis
//! computed for it, noise symbol by noise symbol, so correlations between inputs survive.
//! Inside, affine layers are exact rows (quotient coefficients widened by their rounding),
//! unary functions get several two-sided lines whose offsets are rigorous residual bounds,
//! products get McCormick envelopes, and every variable is boxed by the analysis's bounds.

use crate::lp::Lp;
use std::collections::HashMap;
use zonocert_domain::{Interval, SymbolPool, Zonotope};
use zonocert_network::ir::{numel, Network, Op};
use zonocert_transform::activation::Enclose;
use zonocert_transform::float32::Semantics;
use zonocert_transform::maps::PreparedMaps;

/// Layers in the default window: the classifier's last two (flatten and dense on
/// EfficientNets). Measured on tiny_effnet_tv at ε = 2/255: this window recovers the
/// correlation of the error terms the zonotope boxed per neuron (4.8 % of the Δ widths, 0.02 s
/// per LP); three layers (through the pooled swish) gained 2.3 % at 0.6 s per LP, and the head
/// after the last squeeze-excite gained nothing in 1–3 s per LP, because the link to the
/// window's input keeps only `link_generators` symbols.
pub const DEFAULT_LAYERS: usize = 2;

/// The window `start..` of a network's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// First layer of the window.
    pub start: usize,
    /// Values read by the window but produced before it (value ids, ascending).
    pub inputs: Vec<usize>,
}

impl Window {
    /// The last `layers` layers (all but the first if more are asked); `None` picks the
    /// default, [`DEFAULT_LAYERS`].
    pub fn new(net: &Network, layers: Option<usize>) -> Window {
        let n = net.layers.len();
        let start = match layers {
            Some(l) => n.saturating_sub(l.max(1)),
            None => n.saturating_sub(DEFAULT_LAYERS),
        };
        let start = start.min(n - 1);
        let mut inputs: Vec<usize> =
            net.layers[start..].iter().flat_map(|l| l.inputs.iter().map(|v| v.0)).filter(|&v| v <= start).collect();
        inputs.sort_unstable();
        inputs.dedup();
        Window { start, inputs }
    }
}

/// LP variables of one copy of the network: per value id, its variables (inside the window).
pub type Vars = Vec<Option<Vec<usize>>>;

/// What ties a copy's window inputs to zonotopes (see [`link_inputs`]).
#[derive(Clone, Copy)]
pub struct Link<'a> {
    /// One zonotope per window input.
    pub zonotopes: &'a [Zonotope],
    /// Rows kept per zonotope (the rest boxed).
    pub generators: usize,
    /// Bounds of every value of the copy.
    pub bounds: &'a [Vec<Interval>],
    /// Another copy's variables the link is relative to (`x′ = x + d`).
    pub base: Option<&'a Vars>,
}

/// Creates variables for the window inputs and ties them to zonotopes:
/// `x_v − base_v − Σₖ gₖ εₖ ∈ c_v ± e_v`, where `base` (another copy's variables) is optional.
/// Symbol variables are shared through `symbols` (one map per symbol namespace).
///
/// Each zonotope is first reduced to at most `generators` rows (the smallest boxed into its
/// error term, which is sound): the link rows are dense, and a few dozen symbols carry most
/// of the correlation.
pub fn link_inputs(lp: &mut Lp, window: &Window, link: Link, symbols: &mut HashMap<usize, usize>, vars: &mut Vars) {
    let Link { zonotopes, generators, bounds, base } = link;
    for (&v, z) in window.inputs.iter().zip(zonotopes) {
        let mut z = z.clone();
        if z.n_gens() > generators {
            z.reduce(&mut SymbolPool::new(), generators);
        }
        let own = match &vars[v] {
            Some(x) => x.clone(),
            None => {
                let x = lp.vars(&bounds[v]);
                vars[v] = Some(x.clone());
                x
            }
        };
        let n = z.dim();
        let eps: Vec<usize> = z.syms.iter().map(|&s| *symbols.entry(s).or_insert_with(|| lp.var(Interval::new(-1.0, 1.0)))).collect();
        for i in 0..n {
            let mut terms = vec![(own[i], 1.0)];
            if let Some(b) = base.and_then(|b| b[v].as_ref()) {
                terms.push((b[i], -1.0));
            }
            for (k, &e) in eps.iter().enumerate() {
                terms.push((e, -z.gens[k * n + i]));
            }
            let c = Interval::point(z.centre[i]);
            let r = Interval::point(z.err[i]);
            lp.row(terms, c.sub(&r).lo, c.add(&r).hi);
        }
    }
}

/// Encodes every layer of the window for one copy whose values are bounded by `bounds`
/// (index = value id); the inputs' variables must already be in `vars`.
pub fn encode_layers(lp: &mut Lp, net: &Network, maps: &PreparedMaps, window: &Window, bounds: &[Vec<Interval>], vars: &mut Vars) {
    for k in window.start..net.layers.len() {
        let layer = &net.layers[k];
        let input = |j: usize| vars[layer.inputs[j].0].clone().expect("window input encoded");
        let a = input(0);
        let out_bounds = &bounds[k + 1];
        let y = lp.vars(out_bounds);
        // A float32 execution's rounding of this layer, for this copy: every row is widened by it.
        let rounding: Vec<f64> = match maps.semantics {
            Semantics::F32(m) => m.layer_error(net, maps, k, (&bounds[layer.inputs[0].0], layer.inputs.get(1).map(|v| &bounds[v.0][..]))),
            Semantics::Real => vec![0.0; y.len()],
        };
        match &layer.op {
            Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool | Op::Reshape | Op::Pad(_) => {
                let map = maps.maps[k].as_ref().expect("affine layer");
                let (cols, offset) = map.sparse_columns();
                let rel = map.relative_error();
                let in_b = &bounds[layer.inputs[0].0];
                let mut rows: Vec<Vec<(usize, f64)>> = vec![vec![]; y.len()];
                let mut slack: Vec<f64> = offset.iter().map(|o| o.abs()).collect();
                for (j, col) in cols.iter().enumerate() {
                    for &(i, w) in col {
                        rows[i].push((a[j], -w));
                        slack[i] += w.abs() * in_b[j].mag();
                    }
                }
                for (i, mut terms) in rows.into_iter().enumerate() {
                    terms.push((y[i], 1.0));
                    let err = if rel == 0.0 { 0.0 } else { (rel * slack[i] * (1.0 + 1e-6)).next_up() };
                    let o = Interval::point(offset[i]);
                    lp.row(terms, (o.lo - err - rounding[i]).next_down().min(o.lo), (o.hi + err + rounding[i]).next_up().max(o.hi));
                }
            }
            Op::Act(f) => {
                let f = *f;
                let in_b = &bounds[layer.inputs[0].0];
                for (j, b) in in_b.iter().enumerate() {
                    let (l, u) = (b.lo, b.hi);
                    if !(l < u) || u - l <= 1e-9 * (1.0 + l.abs().max(u.abs())) {
                        // Rounding-sized ranges: the box from the analysis is as tight.
                        continue;
                    }
                    let mut slopes = vec![(f.eval(u) - f.eval(l)) / (u - l), f.deriv(l), f.deriv(u), f.deriv(0.5 * (l + u))];
                    slopes.retain(|s| s.is_finite());
                    slopes.dedup();
                    for lam in slopes {
                        let r = f.residual_bounds(lam, l, u);
                        if r.lo.is_finite() && r.hi.is_finite() {
                            lp.row(vec![(y[j], 1.0), (a[j], -lam)], (r.lo - rounding[j]).next_down(), (r.hi + rounding[j]).next_up());
                        }
                    }
                }
            }
            Op::Mul => {
                let s = input(1);
                let a_b = &bounds[layer.inputs[0].0];
                let s_b = &bounds[layer.inputs[1].0];
                let plane = numel(&layer.shape) / s.len().max(1);
                for e in 0..y.len() {
                    let c = e / plane.max(1);
                    let (al, au, sl, su) = (a_b[e].lo, a_b[e].hi, s_b[c].lo, s_b[c].hi);
                    let p = |x: f64, z: f64| Interval::point(x).mul(&Interval::point(z));
                    // (a − al)(s − sl) ≥ 0, (au − a)(su − s) ≥ 0: lower envelopes.
                    let r = rounding[e];
                    lp.row(vec![(y[e], 1.0), (s[c], -al), (a[e], -sl)], (-p(al, sl).hi - r).next_down(), f64::INFINITY);
                    lp.row(vec![(y[e], 1.0), (s[c], -au), (a[e], -su)], (-p(au, su).hi - r).next_down(), f64::INFINITY);
                    // (au − a)(s − sl) ≥ 0, (a − al)(su − s) ≥ 0: upper envelopes.
                    lp.row(vec![(y[e], 1.0), (s[c], -au), (a[e], -sl)], f64::NEG_INFINITY, (-p(au, sl).lo + r).next_up());
                    lp.row(vec![(y[e], 1.0), (s[c], -al), (a[e], -su)], f64::NEG_INFINITY, (-p(al, su).lo + r).next_up());
                }
            }
            Op::Add => {
                let b = input(1);
                for i in 0..y.len() {
                    lp.row(vec![(y[i], 1.0), (a[i], -1.0), (b[i], -1.0)], -rounding[i], rounding[i]);
                }
            }
            // The analyses report logits: a final Softmax passes them through.
            Op::Softmax => {
                for i in 0..y.len() {
                    lp.row(vec![(y[i], 1.0), (a[i], -1.0)], 0.0, 0.0);
                }
            }
        }
        vars[k + 1] = Some(y);
    }
}

/// Adds `lo ≤ x′_v − x_v ≤ hi` for every value of the window (inputs and outputs) from the
/// difference bounds `diff` (index = value id).
pub fn couple(lp: &mut Lp, x: &Vars, xp: &Vars, diff: &[Vec<Interval>]) {
    for ((a, b), d) in x.iter().zip(xp).zip(diff) {
        if let (Some(a), Some(b)) = (a, b) {
            for ((&ai, &bi), di) in a.iter().zip(b).zip(d) {
                lp.row(vec![(bi, 1.0), (ai, -1.0)], di.lo, di.hi);
            }
        }
    }
}
