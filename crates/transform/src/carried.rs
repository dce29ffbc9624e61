//! The `float32` rounding of the differential analysis, carried beside `D` instead of inside it
//! (and, with `DiffPass::carry_errors`, the zonotope's boxed error terms, the same way).
//!
//! Every transformer of the differential analysis is an affine relaxation: on the range of its
//! input it maps `D` to `Λ·D + ν + β·η` with a linear part `Λ` (the map of an affine layer, a
//! slope per neuron for a unary function, `mid(s′)` and `mid(x)` for a product). If `D = G + R`
//! where `R` is what the two executions' rounding added, and the relaxation is built on the
//! range of `G + R`, then the layer's output is `(Λ·G + ν + β·η) + Λ·R`: the zonotope `G`
//! needs no rounding at all, and the rounding reaches the output as `Σₖ Mₖ·ρₖ`, with `ρₖ` the
//! rounding added at layer `k` (|ρₖ| ≤ eₖ, per neuron) and `Mₖ` the product of the linear parts
//! after it. A reverse pass per output direction `v` bounds `|vᵀ Σₖ Mₖ ρₖ| ≤ Σₖ |vᵀMₖ|·eₖ`:
//! the rounding keeps the signs of the weights, where boxing it into the zonotope's error term
//! multiplies it by `|W|` at every layer (measured: 5× tighter on the tiny test net at one
//! image). The reverse pass runs in `f64`; its own rounding is bounded beside it
//! (`|computed − exact|` per entry), so the bound is sound.
//!
//! Beside the reverse pass, `R` is also bounded per neuron by boxing (`|Λ|·R + e`): that box is
//! what widens each relaxation's input range, and it is the fallback bound at the output.

use crate::maps::PreparedMaps;
use rayon::prelude::*;
use zonocert_domain::{gamma, U};
use zonocert_network::ir::{numel, Network, ValueId};

/// How a term carried outside `D` passes one layer of the differential analysis.
#[derive(Debug, Clone)]
pub enum LinearPart {
    /// An affine layer: the linear part of its map.
    Affine,
    /// A unary relaxation: `λⱼ` per neuron.
    Diag(Vec<f64>),
    /// A product `d_x·s′ + x·d_s`: per output neuron, the slope on `d_x` and on `d_s`
    /// (broadcast over the plane of each of `d_s`'s channels).
    Product {
        /// `mid(s′)` per output neuron.
        on_x: Vec<f64>,
        /// `mid(x)` per output neuron.
        on_s: Vec<f64>,
    },
    /// The sum of the layer's two inputs.
    Sum,
    /// The carried term was folded into `D` here (nothing passes back).
    Folded,
}

/// The rounding of one differential analysis, as the reverse passes need it.
pub struct CarriedRounding<'a> {
    net: &'a Network,
    maps: &'a PreparedMaps,
    /// Per layer, its linear part.
    linear: Vec<LinearPart>,
    /// Per layer, the bound `eₖ ≥ 0` on the rounding added to each of its output neurons.
    added: Vec<Vec<f64>>,
    /// The boxed bound on the carried term at the output, per neuron.
    boxed: Vec<f64>,
    /// Per layer, the output neurons whose carried term was replaced by a fresh one there
    /// (nothing passes back through them; their fresh bound is in `added`).
    cut: Vec<Vec<usize>>,
    /// Values where a reverse pass may stop: every path from the input to a later value
    /// passes through them, and their boxed bound (kept here) is as good as a pass through
    /// the layers before them (index = value id; empty: none). At value 0 (the input) it is
    /// the term the input itself carries.
    floors: Vec<Vec<f64>>,
}

impl<'a> CarriedRounding<'a> {
    /// An empty record for `net`.
    pub fn new(net: &'a Network, maps: &'a PreparedMaps) -> Self {
        CarriedRounding {
            net,
            maps,
            linear: Vec::with_capacity(net.layers.len()),
            added: Vec::with_capacity(net.layers.len()),
            boxed: vec![],
            cut: Vec::with_capacity(net.layers.len()),
            floors: vec![vec![]; net.layers.len() + 1],
        }
    }

    /// Lets later reverse passes stop at `value`, a cut point of the graph (every path from
    /// the input to a later value passes through it), taking `bound` (per neuron) for the term
    /// there. Value 0 is the input: its bound is the term the input carries.
    pub fn set_floor(&mut self, value: usize, bound: Vec<f64>) {
        self.floors[value] = bound;
    }

    /// Replaces, at the last recorded layer, the carried term of each neuron in `neurons` by a
    /// fresh one bounded by `bound[j]` (the neuron was reset from an independent enclosure).
    pub fn cut_last(&mut self, neurons: Vec<usize>, bound: &[f64]) {
        let (Some(added), Some(cut)) = (self.added.last_mut(), self.cut.last_mut()) else { return };
        for &j in &neurons {
            added[j] = bound[j];
        }
        *cut = neurons;
    }

    /// For each neuron of value `value` listed in `neurons`, a bound on the carried term there
    /// by reverse passes over the layers recorded so far (`f64::INFINITY` where the pass
    /// overflows). Batched over chunks of neurons, so the adjoints stay small.
    pub fn neuron_bounds(&self, value: usize, neurons: &[usize]) -> Vec<f64> {
        let len = numel(self.net.shape_of(ValueId(value)));
        let widest = (0..value).map(|v| numel(self.net.shape_of(ValueId(v)))).max().unwrap_or(1).max(len);
        let chunk = ((1usize << 22) / widest).clamp(1, 1024);
        // Chunks are independent (and each is computed the same way whatever the thread
        // count), so they run in parallel: the passes' elementwise loops are single-threaded.
        let parts: Vec<Vec<f64>> = neurons
            .par_chunks(chunk)
            .map(|part| {
                let mut dirs = vec![0.0; part.len() * len];
                for (s, &j) in part.iter().enumerate() {
                    dirs[s * len + j] = 1.0;
                }
                self.reverse_from(value, dirs, part.len()).into_iter().map(|t| if t.is_nan() { f64::INFINITY } else { t }).collect()
            })
            .collect();
        parts.concat()
    }

    /// Records the next layer: its linear part and the rounding added at its output.
    pub fn push(&mut self, linear: LinearPart, added: Vec<f64>) {
        self.linear.push(linear);
        self.added.push(added);
        self.cut.push(vec![]);
    }

    /// The bound on the term added at the last recorded layer, per output neuron (what no
    /// reverse pass from there can shrink).
    pub fn last_added(&self) -> &[f64] {
        self.added.last().map_or(&[], Vec::as_slice)
    }

    /// Records the boxed bound of the carried term at the output.
    pub fn finish(&mut self, boxed: Vec<f64>) {
        self.boxed = boxed;
    }

    /// For each direction `v` (rows of `directions`, each of the output's length), a bound on
    /// `|vᵀ·R|`, where `R` is the carried rounding at the output: the smaller of the reverse
    /// pass's bound and the boxed one.
    pub fn along(&self, directions: &[Vec<f64>]) -> Vec<f64> {
        let reverse = self.reverse(directions);
        directions
            .iter()
            .zip(reverse)
            .map(|(v, r)| {
                let boxed = v.iter().zip(&self.boxed).map(|(a, b)| a.abs() * b).sum::<f64>() * (1.0 + gamma(v.len() + 1));
                r.min(boxed.next_up())
            })
            .collect()
    }

    /// The reverse passes, batched over the directions.
    fn reverse(&self, directions: &[Vec<f64>]) -> Vec<f64> {
        self.reverse_from(self.net.output.0, directions.concat(), directions.len())
    }

    /// The reverse passes from value `start` for `n` directions (rows of `dirs`) over the
    /// layers that produce it and everything before it.
    fn reverse_from(&self, start: usize, dirs: Vec<f64>, n: usize) -> Vec<f64> {
        let net = self.net;
        let mut adj: Vec<Option<(Vec<f64>, Vec<f64>)>> = vec![None; net.layers.len() + 1];
        let zeros = vec![0.0; dirs.len()];
        adj[start] = Some((dirs, zeros));
        let mut total = vec![0.0f64; n];
        for (k, layer) in net.layers.iter().enumerate().take(start).rev() {
            let Some((mut a, mut ea)) = adj[k + 1].take() else { continue };
            if let Some(floor) = self.floors.get(k + 1).filter(|f| !f.is_empty() && k + 1 < start) {
                // A cut point: nothing else is pending, and its boxed bound stands for the rest.
                add_boxed(&mut total, &a, &ea, floor);
                debug_assert!(adj.iter().all(Option::is_none), "a reverse pass stopped at a value that is not a cut point");
                break;
            }
            let len = numel(&layer.shape);
            add_boxed(&mut total, &a, &ea, &self.added[k]);
            if let Some(cut) = self.cut.get(k) {
                for s in 0..n {
                    for &j in cut {
                        a[s * len + j] = 0.0;
                        ea[s * len + j] = 0.0;
                    }
                }
            }
            let x_id = layer.inputs[0];
            let in_len = numel(net.shape_of(x_id));
            let mut pass = |id: usize, t: Vec<f64>, et: Vec<f64>| accumulate(&mut adj[id], t, et);
            match &self.linear[k] {
                LinearPart::Folded => {}
                LinearPart::Affine => {
                    let map = self.maps.maps[k].as_ref().expect("affine layer has a map");
                    let slack = gamma(map.transpose_terms() + 1) + map.relative_error();
                    let t = map.transpose(&a, n);
                    let carried: Vec<f64> = a.iter().zip(&ea).map(|(g, e)| e + slack * g.abs()).collect();
                    let et = map.transpose_abs(&carried, n).into_iter().map(|v| (v * (1.0 + slack + 4.0 * U)).next_up()).collect();
                    debug_assert_eq!(t.len(), n * in_len);
                    pass(x_id.0, t, et);
                }
                LinearPart::Diag(l) => {
                    let (t, et) = scale(&a, &ea, l, len);
                    pass(x_id.0, t, et);
                }
                LinearPart::Product { on_x, on_s } => {
                    let (t, et) = scale(&a, &ea, on_x, len);
                    pass(x_id.0, t, et);
                    let s_id = layer.inputs[1];
                    let s_len = numel(net.shape_of(s_id));
                    let plane = len / s_len.max(1);
                    // Each entry sums `plane` products: one rounding per product, γ for the sum.
                    let per_term = 2.0 * U + gamma(plane + 1);
                    let (mut ts, mut ets) = (vec![0.0; n * s_len], vec![0.0; n * s_len]);
                    for s in 0..n {
                        for j in 0..len {
                            let g = a[s * len + j] * on_s[j];
                            ts[s * s_len + j / plane] += g;
                            ets[s * s_len + j / plane] += on_s[j].abs() * ea[s * len + j] + g.abs() * per_term;
                        }
                    }
                    let infl = 1.0 + gamma(plane + 1);
                    ets.iter_mut().for_each(|e| *e = (*e * infl).next_up());
                    pass(s_id.0, ts, ets);
                }
                LinearPart::Sum => {
                    pass(layer.inputs[1].0, a.clone(), ea.clone());
                    pass(x_id.0, a, ea);
                }
            }
        }
        if let (Some((a, ea)), false) = (&adj[0], self.floors[0].is_empty()) {
            add_boxed(&mut total, a, ea, &self.floors[0]);
        }
        total.into_iter().map(|t| (t * (1.0 + 1e-12)).next_up()).collect()
    }
}

/// Adds to each direction's total `Σ (|aᵢ| + eaᵢ)·eᵢ` over its adjoint row `a` (with error
/// bound `ea`), rounded up: what terms bounded by `e ≥ 0` at that value contribute.
fn add_boxed(total: &mut [f64], a: &[f64], ea: &[f64], e: &[f64]) {
    let len = e.len();
    for (s, t) in total.iter_mut().enumerate() {
        let rows = (&a[s * len..(s + 1) * len], &ea[s * len..(s + 1) * len]);
        let sum: f64 = rows.0.iter().zip(rows.1).zip(e).map(|((g, eg), e)| (g.abs() + eg) * e).sum();
        *t += sum * (1.0 + gamma(len + 1));
    }
}

/// The direction of `z_c − z_j` among `classes` outputs: `e_c − e_j`.
pub fn difference_direction(classes: usize, c: usize, j: usize) -> Vec<f64> {
    (0..classes).map(|i| f64::from(u8::from(i == c)) - f64::from(u8::from(i == j))).collect()
}

/// `λ ⊙ a` per direction (rows of length `len`), with the bound on its error.
fn scale(a: &[f64], ea: &[f64], l: &[f64], len: usize) -> (Vec<f64>, Vec<f64>) {
    let t: Vec<f64> = a.iter().enumerate().map(|(i, g)| g * l[i % len]).collect();
    let et = ea.iter().zip(&t).enumerate().map(|(i, (e, g))| ((l[i % len].abs() * e + U * g.abs()) * (1.0 + 2.0 * U)).next_up()).collect();
    (t, et)
}

/// Adds a contribution `t` (with error bound `et`) to a value's adjoint.
fn accumulate(slot: &mut Option<(Vec<f64>, Vec<f64>)>, t: Vec<f64>, et: Vec<f64>) {
    match slot {
        Some((a, ea)) => {
            for i in 0..a.len() {
                a[i] += t[i];
                ea[i] = ((ea[i] + et[i] + U * a[i].abs()) * (1.0 + 2.0 * U)).next_up();
            }
        }
        None => *slot = Some((t, et)),
    }
}
