//! Forward abstract interpretation of a whole network (interval or zonotope domain), and the
//! differential analysis that carries `D = x′ − x` beside the region `X`.
//!
//! One exhaustive `match` over [`Op`] per analysis: adding an op to the IR fails to compile
//! until every analysis handles it.

use crate::activation::{prefer_interval_image, relaxation, Act, Enclose};
use crate::carried::{CarriedRounding, LinearPart};
use crate::float32::{add_errors, Semantics};
use crate::maps::PreparedMaps;
use zonocert_domain::{gamma, Interval, LinearMap, Relaxation, SymbolPool, Zonotope, ETA, U};
use zonocert_network::ir::{numel, Network, Op, ValueId};
use zonocert_network::ValueStore;

/// Which abstract domain a forward analysis uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// Intervals (a zonotope with no generators and interval transformers).
    Interval,
    /// Zonotopes (DeepZ transformers) with at most `budget` generator rows per tensor.
    Zonotope {
        /// Generator budget per tensor (order reduction beyond it).
        budget: usize,
        /// Bound the error terms of every relaxation's input again by reverse passes through
        /// the layers' linear parts (see [`crate::carried`]) instead of boxing them through
        /// every affine map: much tighter over large regions, at the cost of one reverse pass
        /// per such neuron.
        backsub: bool,
    },
}

impl Domain {
    /// Zonotopes with generator budget `budget`, without reverse passes.
    pub fn zonotope(budget: usize) -> Self {
        Domain::Zonotope { budget, backsub: false }
    }

    fn budget(self) -> usize {
        match self {
            Domain::Interval => 0,
            Domain::Zonotope { budget, .. } => budget,
        }
    }

    fn backsub(self) -> bool {
        matches!(self, Domain::Zonotope { backsub: true, .. })
    }
}

/// A neuron is replaced by its interval when that is below this fraction of its zonotope range
/// (replacing loses the neuron's correlations, which a slightly narrower box does not repay).
const CLAMP_RATIO: f64 = 0.5;

/// What a forward analysis produced.
pub struct Forward {
    /// The abstract output (logits; a final Softmax is not applied).
    pub output: Zonotope,
    /// Interval bounds of every value (index = value id), when requested: in the zonotope
    /// domain the meet of the zonotope's hull and the lockstep interval analysis.
    pub bounds: Vec<Vec<Interval>>,
    /// Largest generator count seen on any tensor.
    pub peak_generators: usize,
    /// The first layer whose output bounds were not finite (an overflow to ±∞ or a NaN). The
    /// output's centre is then NaN, so no bound derived from it is finite.
    pub overflow: Option<usize>,
}

/// What a forward analysis keeps besides its output.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep<'a> {
    /// Every value's interval bounds (the differential analysis needs them).
    pub bounds: bool,
    /// The zonotopes of these values (value ids, in that order), for LP refinement windows
    /// that start there.
    pub values: &'a [usize],
}

/// Runs the network on an abstract input. With `keep_bounds`, records every value's interval
/// bounds (the differential analysis needs them).
pub fn forward(net: &Network, maps: &PreparedMaps, input: Zonotope, pool: &mut SymbolPool, domain: Domain, keep_bounds: bool) -> Forward {
    forward_keeping(net, maps, input, pool, domain, Keep { bounds: keep_bounds, values: &[] }).0
}

/// [`forward`] that also returns the zonotopes of the values `keep.values`.
pub fn forward_keeping(
    net: &Network,
    maps: &PreparedMaps,
    input: Zonotope,
    pool: &mut SymbolPool,
    domain: Domain,
    keep: Keep,
) -> (Forward, Vec<Zonotope>) {
    let (keep_bounds, keep) = (keep.bounds, keep.values);
    // A float32 execution first rounds its input (the conversion of each byte).
    let mut input = input;
    if let Semantics::F32(m) = maps.semantics {
        let e = m.input_error(&input.bounds());
        add_errors(&mut input, &e);
    }
    let mut kept: Vec<Option<Zonotope>> = vec![None; keep.len()];
    let budget = domain.budget();
    let interval_only = domain == Domain::Interval;
    let pass = Pass { net, maps, budget, interval_only };
    let n_vals = net.layers.len() + 1;
    // The zonotope domain runs an interval analysis in lockstep (a reduced product): each
    // value's bounds are the meet of both, and the relaxations are built on the meet. A neuron
    // whose interval is much narrower than its zonotope range (below `CLAMP_RATIO` of it) is
    // replaced by that interval; a merely narrower one keeps its correlations. The recorded
    // bounds are never looser than the interval analysis's, neuron by neuron.
    let mut shadows: Vec<Option<Zonotope>> = vec![None; if interval_only { 0 } else { n_vals }];
    let mut met: Vec<Vec<Interval>> = vec![vec![]; n_vals];
    met[0] = input.bounds();
    let mut peak = input.n_gens();
    let trace = std::env::var_os("ZONOCERT_TRACE").is_some();
    let mut overflow = None;
    keep_value(keep, &mut kept, 0, &input);
    if !interval_only {
        shadows[0] = Some(Zonotope::from_box(&met[0], pool, false));
    }
    // Error terms carried by reverse passes (see `tighten_errors`).
    let mut record = domain.backsub().then(|| {
        let mut r = CarriedRounding::new(net, maps);
        r.set_floor(0, input.err.clone());
        r
    });
    let feeds = relaxation_inputs(net);
    let cuts = cut_points(net);
    let mut vals = ValueStore::new(net, input, false);
    for (k, layer) in net.layers.iter().enumerate() {
        let (mut out, linear) = pass.step(k, vals.slots(), &met, pool);
        // A float32 execution's rounding of this layer, added to both analyses of the product.
        let rounding = pass.rounding(k, &met);
        if let Some(e) = &rounding {
            add_errors(&mut out, e);
        }
        // Column sums of the generators, shared by the choice of neurons to tighten and the
        // radius (tightening changes only the error terms).
        let sums = if interval_only { vec![] } else { out.abs_sums() };
        let mut tightened = 0;
        if let Some(record) = record.as_mut() {
            let lin = pass.propagated_errors(k, vals.slots(), &linear);
            let added =
                out.err.iter().zip(&lin).map(|(e, l)| if e.is_finite() { (e - l).max(0.0).next_up() } else { f64::INFINITY }).collect();
            record.push(linear, added);
            if feeds[k + 1] {
                tightened = tighten_errors(&mut out, &sums, record, k + 1);
            }
        }
        let mut replaced = 0;
        if interval_only {
            met[k + 1] = out.bounds();
        } else {
            let (mut shadow, _) = pass.interval_shadow().step(k, &shadows, &met, pool);
            if let Some(e) = &rounding {
                add_errors(&mut shadow, e);
            }
            let rad = out.radius_from(&sums);
            let (zb, ib) = (out.bounds_from(&rad), shadow.bounds());
            // Two sound enclosures of the same reals always overlap; were they not to (a bug),
            // the zonotope's own bounds are kept rather than inventing an empty set.
            met[k + 1] = zb.iter().zip(&ib).map(|(z, i)| z.meet(i).unwrap_or(*z)).collect();
            // The output has no later use for correlations beyond the logit differences, so
            // any narrower interval is taken there.
            let ratio = if k + 1 == net.output.0 { 1.0 } else { CLAMP_RATIO };
            let listed = out.clamp_to_listed(&met[k + 1], &rad, ratio);
            replaced = listed.len();
            if let Some(record) = record.as_mut() {
                record.cut_last(listed, &out.err);
                if cuts[k + 1] && rounding_level(&out) {
                    record.set_floor(k + 1, out.err.clone());
                }
            }
            shadows[k + 1] = Some(Zonotope::from_box(&met[k + 1], pool, false));
        }
        // A float32 execution overflows to ±∞ (and `0·∞` is a NaN) beyond f32::MAX.
        let limit = if matches!(maps.semantics, Semantics::F32(_)) { f64::from(f32::MAX) } else { f64::INFINITY };
        if overflow.is_none() && !met[k + 1].iter().all(|b| b.is_finite() && b.mag() < limit) {
            overflow = Some(k);
        }
        peak = peak.max(out.n_gens());
        if trace {
            let r = out.radius();
            let mr = r.iter().copied().fold(0.0, f64::max);
            let mc = out.centre.iter().map(|c| c.abs()).fold(0.0, f64::max);
            let mi = met[k + 1].iter().map(|b| b.mid_rad().1).fold(0.0, f64::max);
            eprintln!(
                "layer {k:3} {:14} gens {:4} max|c| {mc:10.3e} max rad {mr:10.3e} (meet {mi:10.3e}, {replaced} boxed, {tightened} tightened)",
                layer.op.kind(),
                out.n_gens()
            );
        }
        keep_value(keep, &mut kept, k + 1, &out);
        for v in vals.finish_layer(k, out) {
            if !interval_only {
                shadows[v] = None;
            }
            if !keep_bounds {
                met[v] = vec![];
            }
        }
    }
    let mut output = vals.take_output().expect("output computed");
    if overflow.is_some() {
        poison(&mut output);
    }
    let bounds = if keep_bounds { met } else { vec![] };
    (Forward { output, bounds, peak_generators: peak, overflow }, kept.into_iter().map(|z| z.expect("kept value computed")).collect())
}

/// One forward analysis's fixed settings: the network, its prepared maps, the generator budget
/// and whether only interval transformers are used.
#[derive(Clone, Copy)]
struct Pass<'a> {
    net: &'a Network,
    maps: &'a PreparedMaps,
    budget: usize,
    interval_only: bool,
}

impl Pass<'_> {
    /// With `float32` semantics, per output neuron of layer `k` a bound on the execution's
    /// rounding there, from the bounds `met` of the layer's inputs.
    fn rounding(self, k: usize, met: &[Vec<Interval>]) -> Option<Vec<f64>> {
        let Semantics::F32(m) = self.maps.semantics else { return None };
        let layer = &self.net.layers[k];
        let second = layer.inputs.get(1).map(|v| &met[v.0][..]);
        Some(m.layer_error(self.net, self.maps, k, (&met[layer.inputs[0].0], second)))
    }

    /// The interval analysis that runs in lockstep with this one.
    fn interval_shadow(self) -> Self {
        Pass { budget: 0, interval_only: true, ..self }
    }

    /// One layer of the forward analysis on `vals`; unary relaxations are built on the bounds
    /// `met` of their input (at least as tight as the input's own hull). Also returns how the
    /// layer maps its inputs' error terms (the linear part of its relaxation).
    fn step(self, k: usize, vals: &[Option<Zonotope>], met: &[Vec<Interval>], pool: &mut SymbolPool) -> (Zonotope, LinearPart) {
        let Pass { net, maps, budget, interval_only } = self;
        let layer = &net.layers[k];
        let a = vals[layer.inputs[0].0].as_ref().expect("value computed before use");
        match &layer.op {
            Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool | Op::Reshape | Op::Pad(_) => {
                (a.affine(&maps.get(k, true)), LinearPart::Affine)
            }
            Op::Act(f) => {
                let f = *f;
                let b = &met[layer.inputs[0].0];
                let mut rel = relaxation(f, b, interval_only);
                let sums = a.abs_sums();
                if !interval_only {
                    prefer_interval_image(f, b, &a.radius_from(&sums), &mut rel);
                }
                let out = a.apply_relaxation_with(&rel, &sums, pool, budget);
                (out, LinearPart::Diag(rel.slope))
            }
            Op::Mul => {
                let b = vals[layer.inputs[1].0].as_ref().expect("value computed before use");
                let plane = numel(&layer.shape) / b.dim();
                let wide = (plane > 1).then(|| b.broadcast(plane));
                let b = wide.as_ref().unwrap_or(b);
                // x·s = c_s·x + c_x·s + (a remainder the product bounds as a fresh term).
                let linear = LinearPart::Product { on_x: b.centre.clone(), on_s: a.centre.clone() };
                (a.mul(b, pool, budget), linear)
            }
            Op::Add => {
                let mut sum = a.add(vals[layer.inputs[1].0].as_ref().expect("value computed before use"));
                sum.reduce(pool, budget);
                (sum, LinearPart::Sum)
            }
            // Bounds are reported on logits; softmax is handled by the caller.
            Op::Softmax if k + 1 == net.output.0 => (a.clone(), LinearPart::Diag(vec![1.0; a.dim()])),
            // The importer rejects a Softmax inside the network; a network built otherwise still
            // gets a sound (if loose) transformer: every probability lies in [0, 1].
            Op::Softmax => (Zonotope::from_box(&vec![Interval::new(0.0, 1.0); a.dim()], pool, false), LinearPart::Folded),
        }
    }

    /// A bound, per output neuron of layer `k`, on `|Λ|·e` where `Λ` is the layer's linear part
    /// and `e` its inputs' error terms: a lower bound on the exact value (the rounding of the
    /// computed sums is taken off), so that what a layer added beyond it is bounded from above.
    fn propagated_errors(self, k: usize, vals: &[Option<Zonotope>], linear: &LinearPart) -> Vec<f64> {
        let layer = &self.net.layers[k];
        let err = |v: ValueId| &vals[v.0].as_ref().expect("value computed before use").err;
        let x = err(layer.inputs[0]);
        let (lin, terms) = match linear {
            LinearPart::Affine => {
                let map = self.maps.get(k, false);
                (map.apply_abs(x), map.fan_in() + 1)
            }
            LinearPart::Diag(l) => (x.iter().zip(l).map(|(e, l)| e * l.abs()).collect(), 1),
            LinearPart::Product { on_x, on_s } => {
                let s = err(layer.inputs[1]);
                let plane = x.len() / s.len().max(1);
                ((0..x.len()).map(|j| on_x[j].abs() * x[j] + on_s[j].abs() * s[j / plane]).collect(), 3)
            }
            LinearPart::Sum => (x.iter().zip(err(layer.inputs[1])).map(|(a, b)| a + b).collect(), 1),
            LinearPart::Folded => (vec![0.0; numel(&layer.shape)], 1),
        };
        let shrink = 1.0 - gamma(terms + 2);
        lin.into_iter().map(|v| if v.is_finite() { (v * shrink).next_down().max(0.0) } else { 0.0 }).collect()
    }
}

/// Share of a neuron's radius above which its error term is bounded again by reverse passes.
const TIGHTEN_SHARE: f64 = 0.05;

/// Bounds again, by reverse passes over `record`, the error term of each neuron of value
/// `value` (the zonotope `z`, with column sums `sums`) where that term is a large share of the radius, and keeps the
/// smaller bound. Returns how many neurons got a smaller one.
///
/// Every neuron counts, however small its range: measured on the certified B0, tightening only
/// neurons of radius above `10⁻³` (skipping the trunk's `10⁻¹⁰`-scale values, where the swish
/// is linear) left the stage-7 expansion's range at 3.2·10⁴ instead of 265.
fn tighten_errors(z: &mut Zonotope, sums: &[f64], record: &CarriedRounding, value: usize) -> usize {
    let worth = |j: usize| z.err[j] > 0.0 && z.err[j] > TIGHTEN_SHARE * (sums[j] + z.err[j]);
    let chosen: Vec<usize> = (0..z.dim()).filter(|&j| worth(j)).collect();
    if chosen.is_empty() {
        return 0;
    }
    let bounds = record.neuron_bounds(value, &chosen);
    let mut smaller = 0;
    for (&j, b) in chosen.iter().zip(bounds) {
        if b < z.err[j] {
            z.err[j] = b;
            smaller += 1;
        }
    }
    smaller
}

/// Error terms at most this fraction of a neuron's magnitude are rounding: a reverse pass may
/// take them as they are (see [`CarriedRounding::set_floor`]).
const ROUNDING_LEVEL: f64 = 1e-9;

/// Whether every error term of `z` is at the rounding level.
fn rounding_level(z: &Zonotope) -> bool {
    let sums = z.abs_sums();
    (0..z.dim()).all(|j| z.err[j] <= ROUNDING_LEVEL * (z.centre[j].abs() + sums[j]))
}

/// Per value, whether it is a cut point of the graph: no layer after it reads a value before it.
fn cut_points(net: &Network) -> Vec<bool> {
    let n = net.layers.len() + 1;
    let mut cut = vec![false; n];
    // The smallest value read by layer k or any later layer.
    let mut reads_from = usize::MAX;
    for v in (0..n).rev() {
        // Layers k ≥ v (producing values > v) read values ≥ v: v is a cut point.
        if let Some(layer) = net.layers.get(v) {
            reads_from = reads_from.min(layer.inputs.iter().map(|i| i.0).min().unwrap_or(usize::MAX));
        }
        cut[v] = reads_from >= v;
    }
    cut
}

/// Per value, whether a relaxation is built on its bounds (an activation's or a product's
/// input) or it is the network's output, and the output depends on it: values in a branch that
/// an all-zero map ends (an identity block's) are not worth reverse passes.
fn relaxation_inputs(net: &Network) -> Vec<bool> {
    let mut feeds = vec![false; net.layers.len() + 1];
    for layer in &net.layers {
        if matches!(layer.op, Op::Act(_) | Op::Mul) {
            layer.inputs.iter().for_each(|v| feeds[v.0] = true);
        }
    }
    feeds[net.output.0] = true;
    let live = zonocert_network::passes::live_values(net);
    feeds.iter_mut().zip(live).for_each(|(f, l)| *f &= l);
    feeds
}

/// Makes every bound derived from `z` NaN (an overflow upstream: nothing is known).
fn poison(z: &mut Zonotope) {
    z.centre.iter_mut().for_each(|c| *c = f64::NAN);
}

fn keep_value(keep: &[usize], kept: &mut [Option<Zonotope>], id: usize, z: &Zonotope) {
    for (slot, &v) in kept.iter_mut().zip(keep) {
        if v == id {
            *slot = Some(z.clone());
        }
    }
}

/// The differential analysis: given interval bounds of every value over the region `X`
/// (from [`forward`] with `keep_bounds`), propagates a zonotope `D` of input differences
/// `x′ − x` to a zonotope of output differences.
///
/// Affine layers map `D` exactly (biases cancel). A unary `f` uses, per neuron, the tighter of
/// (a) the mean value theorem, `f(x′) − f(x) = f′(ξ)·d` with `f′(ξ)` in the slope range of `f`
/// on the hull of `X` and `X + D`, and (b) the interval difference `f([X + D]) − f([X])`.
/// The product `x·s` uses `x′s′ − xs = d_x·s′ + x·d_s` with `x`, `s′` bounded by intervals.
pub fn differential(
    net: &Network,
    maps: &PreparedMaps,
    x_bounds: &[Vec<Interval>],
    d_input: Zonotope,
    pool: &mut SymbolPool,
    budget: usize,
) -> Zonotope {
    let (mut out, carried, _) =
        differential_keeping(DiffPass { net, maps, x_bounds, budget, carry_errors: false, backsub: false }, d_input, pool, None);
    if let Some(c) = carried {
        // Each output neuron's share of the carried rounding (the unit directions).
        let n = out.dim();
        let unit: Vec<Vec<f64>> = (0..n).map(|j| (0..n).map(|i| f64::from(u8::from(i == j))).collect()).collect();
        add_errors(&mut out, &c.along(&unit));
    }
    out
}

/// The fixed inputs of a differential analysis: the network and its maps, the region's bounds
/// of every value (from [`forward`] with `keep_bounds`), and the difference's generator budget.
#[derive(Clone, Copy)]
pub struct DiffPass<'a> {
    /// The network.
    pub net: &'a Network,
    /// Its prepared affine maps.
    pub maps: &'a PreparedMaps,
    /// Interval bounds of every value over the region.
    pub x_bounds: &'a [Vec<Interval>],
    /// Generator budget of the difference zonotope.
    pub budget: usize,
    /// Carry the difference zonotope's boxed error terms beside it, like the float32
    /// rounding (see [`crate::carried`]), instead of boxing them through every later layer.
    pub carry_errors: bool,
    /// Bound the carried term again, by reverse passes, at every relaxation input where it
    /// widens the relaxation by more than [`TIGHTEN_SHARE`] of the neuron's difference
    /// (implies `carry_errors`): the boxed terms then reach that neuron with every later
    /// weight's sign kept, as if each were a generator of its own, at one reverse pass per
    /// neuron. (A generator row the budget boxed loses its sharing across neurons all the same.)
    pub backsub: bool,
}

/// What [`differential_keeping`] records besides the output difference.
pub struct DifferenceRecord {
    /// Interval bounds of every value's difference (index = value id).
    pub bounds: Vec<Vec<Interval>>,
    /// The difference zonotopes of the requested values, in the order asked.
    pub kept: Vec<Zonotope>,
}

/// [`differential`] that, with `keep = Some(values)`, also records every value's difference
/// bounds and the difference zonotopes of `values` (for LP refinement).
///
/// With `float32` semantics the two executions' rounding is carried beside `D` (see
/// [`crate::carried`]): the returned zonotope leaves it out, and the returned
/// [`CarriedRounding`] bounds it along any direction of the output. The recorded bounds and
/// kept zonotopes include it.
pub fn differential_keeping<'a>(
    pass: DiffPass<'a>,
    d_input: Zonotope,
    pool: &mut SymbolPool,
    keep: Option<&[usize]>,
) -> (Zonotope, Option<CarriedRounding<'a>>, Option<DifferenceRecord>) {
    let DiffPass { net, maps, x_bounds, budget, carry_errors, backsub } = pass;
    let carry_errors = carry_errors || backsub;
    let f32 = matches!(maps.semantics, Semantics::F32(_));
    let carry = f32 || carry_errors;
    let keep_ids = keep.unwrap_or(&[]);
    let mut kept: Vec<Option<Zonotope>> = vec![None; keep_ids.len()];
    let mut bounds: Vec<Vec<Interval>> = if keep.is_some() { vec![vec![]; net.layers.len() + 1] } else { vec![] };
    if keep.is_some() {
        bounds[0] = d_input.bounds();
    }
    keep_value(keep_ids, &mut kept, 0, &d_input);
    // The carried rounding `R`, boxed per neuron (index = value id): it widens every
    // relaxation's input range, so the relaxations hold for `G + R`.
    let mut carried: Vec<Vec<f64>> = vec![vec![]; net.layers.len() + 1];
    carried[0] = vec![0.0; d_input.dim()];
    let mut record = carry.then(|| CarriedRounding::new(net, maps));
    let mut vals = ValueStore::new(net, d_input, false);
    // Each live value's column sums Σₖ|gₖ|, computed once for its bounds and reused by the
    // layers that read it (a pass over up to 4,096 × 18,816 generator entries each time).
    let mut sums_of: Vec<Option<Vec<f64>>> = vec![None; net.layers.len() + 1];
    let mut overflow = false;
    let trace = std::env::var_os("ZONOCERT_TRACE").is_some();
    let feeds = if backsub { relaxation_inputs(net) } else { vec![] };
    for (k, layer) in net.layers.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let d = vals.get(layer.inputs[0]).expect("value computed before use");
        let computed;
        let d_sums: &[f64] = match &sums_of[layer.inputs[0].0] {
            Some(s) => s,
            None => {
                computed = d.abs_sums();
                &computed
            }
        };
        let xin = &x_bounds[layer.inputs[0].0];
        let r_in = &carried[layer.inputs[0].0];
        let full = |v: usize| -> Vec<Interval> { widen(vals.get(ValueId(v)).expect("value computed before use").bounds(), &carried[v]) };
        let input_bounds: Vec<Vec<Interval>> = if f32 { layer.inputs.iter().map(|v| full(v.0)).collect() } else { vec![] };
        let rounding = differential_rounding(pass, k, &input_bounds);
        let affine_carry = |r: &[f64]| -> Vec<f64> {
            if r.iter().all(|&r| r == 0.0) {
                return vec![0.0; numel(&layer.shape)];
            }
            let map = maps.get(k, false);
            let infl = 1.0 + gamma(map.fan_in() + 2);
            map.apply_abs(r).into_iter().map(|v| up(v * infl)).collect()
        };
        let (mut out, linear, mut r_out) = match &layer.op {
            // The layer that produces the logits sees its input's boxed terms as shared
            // symbols, so differences of logits keep their correlation (the training bound's
            // rows w_c − w_j; cheap: one layer).
            Op::Linear(_) if k + 1 == net.output.0 => {
                (d.with_lifted_errors(pool).affine(&maps.get(k, false)), LinearPart::Affine, affine_carry(r_in))
            }
            Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool | Op::Reshape | Op::Pad(_) => {
                (d.affine_with_sums(&maps.get(k, false), d_sums), LinearPart::Affine, affine_carry(r_in))
            }
            Op::Act(f) => {
                let f = *f;
                let rad: Vec<f64> =
                    d.radius_from(d_sums).iter().zip(r_in).map(|(a, r)| if *r > 0.0 { (a + r).next_up() } else { *a }).collect();
                let rel = differential_relaxation_with(f, xin, d, &rad);
                let r_out = rel.slope.iter().zip(r_in).map(|(l, r)| up(l.abs() * r * (1.0 + 2.0 * U))).collect();
                (d.apply_relaxation_with(&rel, d_sums, pool, budget), LinearPart::Diag(rel.slope), r_out)
            }
            Op::Mul => {
                let s_id = layer.inputs[1].0;
                let ds = vals.get(layer.inputs[1]).expect("value computed before use");
                let s_bounds = &x_bounds[s_id];
                let plane = numel(&layer.shape) / ds.dim();
                let ds_b = widen(ds.bounds(), &carried[s_id]);
                // s′ = s + d_s, bounded by intervals and broadcast over each plane.
                let s_prime: Vec<Interval> =
                    s_bounds.iter().zip(&ds_b).flat_map(|(s, e)| std::iter::repeat(s.add(e)).take(plane)).collect();
                let r_s: Vec<f64> = carried[s_id].iter().flat_map(|&r| std::iter::repeat_n(r, plane)).collect();
                let t1 = d.mul_interval_widened_with(&s_prime, carry.then_some(&r_in[..]), d_sums, pool, budget);
                // A gate whose difference has no generators and no centre (a constant or
                // out-of-reach squeeze-excite: only rounding slack in its error box) gives
                // x·d_s within ±(|mid x|·e_s + rad x·(e_s + r_s)), the same enclosure
                // `mul_interval_widened` builds, as a box: no dense product and merge of every
                // generator row.
                let mut sum = if ds.centre.iter().chain(&ds.gens).all(|&v| v == 0.0) {
                    let mut t1 = t1;
                    let e: Vec<f64> = xin
                        .iter()
                        .enumerate()
                        .map(|(j, x)| {
                            let (m, r) = x.mid_rad();
                            let es = ds.err[j / plane];
                            // ETA: the two products may underflow.
                            ((m.abs() * es + r * (es + r_s[j])) * (1.0 + 4.0 * U) + 2.0 * ETA).next_up()
                        })
                        .collect();
                    add_errors(&mut t1, &e);
                    t1
                } else {
                    let ds_full = if plane > 1 { ds.broadcast(plane) } else { ds.clone() };
                    t1.add(&ds_full.mul_interval_widened(xin, carry.then_some(&r_s[..]), pool, budget))
                };
                sum.reduce(pool, budget);
                let on_x: Vec<f64> = s_prime.iter().map(|s| s.mid_rad().0).collect();
                let on_s: Vec<f64> = xin.iter().map(|x| x.mid_rad().0).collect();
                let r_out = (0..on_x.len()).map(|j| up((on_x[j].abs() * r_in[j] + on_s[j].abs() * r_s[j]) * (1.0 + 4.0 * U))).collect();
                (sum, LinearPart::Product { on_x, on_s }, r_out)
            }
            Op::Add => {
                let mut sum = d.add(vals.get(layer.inputs[1]).expect("value computed before use"));
                sum.reduce(pool, budget);
                let r_out = r_in.iter().zip(&carried[layer.inputs[1].0]).map(|(a, b)| up((a + b) * (1.0 + 2.0 * U))).collect();
                (sum, LinearPart::Sum, r_out)
            }
            Op::Softmax if k + 1 == net.output.0 => (d.clone(), LinearPart::Folded, r_in.clone()),
            // See `step`: a probability moves by at most 1.
            Op::Softmax => {
                (Zonotope::from_box(&vec![Interval::new(-1.0, 1.0); d.dim()], pool, false), LinearPart::Folded, vec![0.0; d.dim()])
            }
        };
        if matches!(linear, LinearPart::Folded) && r_out.iter().any(|&r| r != 0.0) {
            // No linear part to carry the term through: it joins the zonotope here.
            add_errors(&mut out, &r_out);
            r_out.iter_mut().for_each(|r| *r = 0.0);
        }
        if let Some(record) = record.as_mut() {
            let mut e = rounding.unwrap_or_else(|| vec![0.0; out.dim()]);
            if carry_errors && !matches!(linear, LinearPart::Folded) {
                // The box leaves the zonotope here and reaches the output through the later
                // layers' linear parts (reverse passes) instead of through |W| at every layer.
                for (e, b) in e.iter_mut().zip(out.err.iter_mut()) {
                    *e = up(*e + *b);
                    *b = 0.0;
                }
            }
            r_out.iter_mut().zip(&e).for_each(|(r, e)| *r = up(*r + e));
            record.push(linear, e);
        }
        let out_sums = out.abs_sums();
        let mut tightened = 0;
        if let (Some(record), true) = (record.as_ref(), backsub && feeds[k + 1] && k + 1 != net.output.0) {
            // The boxed carried term widens the relaxations built on this value; where it does
            // so by much, reverse passes bound it again (the output's is bounded along each
            // logit difference instead). A pass's bound includes the term added at this layer
            // whole: only the part that came through earlier layers can shrink.
            let rad = out.radius_from(&out_sums);
            let fresh = record.last_added();
            let chosen: Vec<usize> = carried_worth_tightening(net, k + 1, x_bounds, &out, &rad, &r_out)
                .into_iter()
                .filter(|&j| r_out[j] - fresh[j] > TIGHTEN_SHARE * r_out[j])
                .collect();
            if !chosen.is_empty() {
                for (&j, b) in chosen.iter().zip(record.neuron_bounds(k + 1, &chosen)) {
                    if b < r_out[j] {
                        r_out[j] = b;
                        tightened += 1;
                    }
                }
            }
        }
        // An overflow (±∞ or NaN) anywhere makes the output unknown; checked per layer, since
        // a NaN could later be dropped by a comparison and look like a small number.
        let out_bounds = widen(out.bounds_from(&out.radius_from(&out_sums)), &r_out);
        overflow |= !out_bounds.iter().all(Interval::is_finite) || !r_out.iter().all(|r| r.is_finite());
        // The flipped image's float32 execution overflows to ±∞ beyond f32::MAX.
        overflow |= f32 && x_bounds[k + 1].iter().zip(&out_bounds).any(|(x, d)| x.add(d).mag() >= f64::from(f32::MAX));
        if keep.is_some() {
            bounds[k + 1] = out_bounds;
        }
        if keep_ids.contains(&(k + 1)) {
            let mut with_carried = out.clone();
            if r_out.iter().any(|&r| r != 0.0) {
                add_errors(&mut with_carried, &r_out);
            }
            keep_value(keep_ids, &mut kept, k + 1, &with_carried);
        }
        if trace {
            let mr = out.radius().iter().copied().fold(0.0, f64::max);
            let mc = r_out.iter().copied().fold(0.0, f64::max);
            eprintln!(
                "diff  {k:3} {:14} gens {:5} dim {:6} max rad {mr:10.3e} carried {mc:10.3e} ({tightened} tightened) {:8.1} ms",
                layer.op.kind(),
                out.n_gens(),
                out.dim(),
                t0.elapsed().as_secs_f64() * 1e3
            );
        }
        carried[k + 1] = r_out;
        sums_of[k + 1] = Some(out_sums);
        for v in vals.finish_layer(k, out) {
            sums_of[v] = None;
        }
    }
    let mut output = vals.take_output().expect("output computed");
    if overflow {
        poison(&mut output);
    }
    if let Some(record) = record.as_mut() {
        record.finish(std::mem::take(&mut carried[net.output.0]));
    }
    let record_out = keep.map(|_| DifferenceRecord { bounds, kept: kept.into_iter().map(|z| z.expect("kept value computed")).collect() });
    (output, record, record_out)
}

/// The neurons of value `v` (difference `d` with radius `rad`, carried term bounded by `r`)
/// where the carried term widens a relaxation built on `v` by more than [`TIGHTEN_SHARE`] of
/// what the difference itself contributes there (or, where the difference is small, of a
/// thousandth of its largest contribution on `v`): the widening becomes a fresh term of the
/// difference, so only there can a tighter bound change the analysis much. A swish in its
/// linear regime has one slope whatever the width, and a gate constant up to rounding has no
/// width, so their inputs are skipped.
fn carried_worth_tightening(net: &Network, v: usize, x_bounds: &[Vec<Interval>], d: &Zonotope, rad: &[f64], r: &[f64]) -> Vec<usize> {
    let n = r.len();
    let mut worth = vec![false; n];
    // Per neuron, the widening the carried term causes and the size of the difference's own
    // part of the relaxation's output.
    let mut mark = |widening: &[f64], size: &[f64]| {
        let floor = 1e-3 * size.iter().copied().fold(0.0, f64::max);
        for j in 0..n {
            worth[j] |= widening[j] > 0.0 && widening[j] > TIGHTEN_SHARE * size[j].max(floor);
        }
    };
    let own: Vec<f64> = (0..n).map(|j| d.centre[j].abs() + rad[j]).collect();
    for layer in net.layers.iter().filter(|l| l.inputs.iter().any(|i| i.0 == v)) {
        match &layer.op {
            Op::Act(f) => {
                let widened: Vec<f64> = rad.iter().zip(r).map(|(a, r)| a + r).collect();
                let with = differential_relaxation_with(*f, &x_bounds[v], d, &widened);
                let without = differential_relaxation_with(*f, &x_bounds[v], d, rad);
                let widening: Vec<f64> = with.radius.iter().zip(&without.radius).map(|(a, b)| a - b).collect();
                mark(&widening, &own);
            }
            Op::Mul => {
                // The relaxation widens by the other factor's radius times `v`'s carried term;
                // the difference's own part is the factor's magnitude times `v`'s difference.
                let (x_id, s_id) = (layer.inputs[0].0, layer.inputs[1].0);
                let other = if v == x_id { s_id } else { x_id };
                let (xn, sn) = (numel(net.shape_of(ValueId(x_id))), numel(net.shape_of(ValueId(s_id))).max(1));
                let plane = (xn / sn).max(1);
                // The other factor's neurons that meet neuron `j` of `v`.
                let factor = |j: usize| if v == x_id { j / plane..j / plane + 1 } else { j * plane..(j + 1) * plane };
                let (mut widening, mut size) = (vec![0.0; n], vec![0.0; n]);
                for j in 0..n {
                    for b in &x_bounds[other][factor(j)] {
                        let (m, w) = b.mid_rad();
                        widening[j] = f64::max(widening[j], w * r[j]);
                        size[j] = f64::max(size[j], (m.abs() + w) * own[j]);
                    }
                }
                mark(&widening, &size);
            }
            _ => {}
        }
    }
    (0..n).filter(|&j| worth[j]).collect()
}

/// `v` rounded up to the next float, except that 0 stays 0 (no carried term reaches there).
fn up(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v.next_up()
    }
}

/// Interval bounds widened by a carried term `r ≥ 0` per neuron (unchanged where `r` is 0).
fn widen(b: Vec<Interval>, r: &[f64]) -> Vec<Interval> {
    if r.iter().all(|&r| r == 0.0) {
        return b;
    }
    b.into_iter().zip(r).map(|(b, &r)| if r > 0.0 { Interval::new((b.lo - r).next_down(), (b.hi + r).next_up()) } else { b }).collect()
}

/// With `float32` semantics, per output neuron of layer `k` a bound on how much the two
/// executions' rounding can move `D = x̃′ − x̃` there: the rounding of `x` plus that of `x′`
/// (bounded over `x + D`), which are not the same. With `same_order`, a neuron whose inputs
/// do not differ rounds alike in both executions and gets nothing.
fn differential_rounding(pass: DiffPass, k: usize, d_bounds: &[Vec<Interval>]) -> Option<Vec<f64>> {
    let DiffPass { net, maps, x_bounds, .. } = pass;
    let Semantics::F32(m) = maps.semantics else { return None };
    let layer = &net.layers[k];
    let shifted = |i: usize| -> Vec<Interval> { x_bounds[layer.inputs[i].0].iter().zip(&d_bounds[i]).map(|(x, d)| x.add(d)).collect() };
    let second_x = layer.inputs.get(1).map(|v| &x_bounds[v.0][..]);
    let second_xp = (layer.inputs.len() > 1).then(|| shifted(1));
    let e_x = m.layer_error(net, maps, k, (&x_bounds[layer.inputs[0].0], second_x));
    let e_xp = m.layer_error(net, maps, k, (&shifted(0), second_xp.as_deref()));
    let mut e: Vec<f64> = e_x.iter().zip(&e_xp).map(|(a, b)| (a + b).next_up()).collect();
    if m.same_order {
        let changed = |b: &[Interval]| -> Vec<f64> { b.iter().map(|d| if d.lo == 0.0 && d.hi == 0.0 { 0.0 } else { 1.0 }).collect() };
        let reach: Vec<f64> = match &layer.op {
            Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool | Op::Reshape | Op::Pad(_) => {
                maps.get(k, false).apply_abs(&changed(&d_bounds[0]))
            }
            Op::Act(_) | Op::Softmax => changed(&d_bounds[0]),
            Op::Mul | Op::Add => {
                let (a, b) = (changed(&d_bounds[0]), changed(&d_bounds[1]));
                let repeat = (a.len() / b.len().max(1)).max(1);
                a.iter().enumerate().map(|(j, x)| x + b[if b.len() == a.len() { j } else { j / repeat }]).collect()
            }
        };
        e.iter_mut().zip(reach).filter(|(_, r)| *r == 0.0).for_each(|(e, _)| *e = 0.0);
    }
    Some(e)
}

/// Per-neuron enclosure of `f(x + d) − f(x)` as `λ·d + μ ± β`.
pub fn differential_relaxation(f: Act, x: &[Interval], d: &Zonotope) -> Relaxation {
    differential_relaxation_with(f, x, d, &d.radius())
}

/// [`differential_relaxation`] given `d`'s radius.
fn differential_relaxation_with(f: Act, x: &[Interval], d: &Zonotope, rad: &[f64]) -> Relaxation {
    let db = d.bounds_from(rad);
    let n = x.len();
    let mut rel = Relaxation { slope: vec![0.0; n], offset: vec![0.0; n], radius: vec![0.0; n] };
    for j in 0..n {
        if db[j].lo == 0.0 && db[j].hi == 0.0 {
            // No difference reaches this neuron: f(x) − f(x) = 0 exactly.
            continue;
        }
        let xp = x[j].add(&db[j]);
        // (a) mean value theorem on the hull.
        let slopes = f.deriv_range(x[j].hull(&xp));
        let lam = slopes.mid();
        let spread = (slopes.hi - lam).max(lam - slopes.lo).next_up();
        let beta_a = (spread * db[j].mag() * (1.0 + 4.0 * U)).next_up();
        let total_a = lam.abs() * (d.centre[j].abs().min(db[j].mag()) + rad[j]) + beta_a;
        // (b) difference of interval images.
        let (m_b, r_b) = f.image(xp).sub(&f.image(x[j])).mid_rad();
        if r_b < total_a {
            rel.offset[j] = m_b;
            rel.radius[j] = r_b;
        } else {
            rel.slope[j] = lam;
            rel.radius[j] = beta_a;
        }
    }
    rel
}
