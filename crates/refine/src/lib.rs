//! Sound LP refinement of zonocert's bounds (good_lp with HiGHS).
//!
//! A window of late layers is encoded as a linear program ([`window`]) whose inputs are tied
//! to the zonotopes of the forward (and differential) analysis. Each objective — a logit
//! difference `z_j − z_c` for `bounds`, a difference change `Δ(z_c − z_j)` for `certify` — is
//! minimised by HiGHS and the result is turned into a proof by a safe dual bound ([`lp`]).
//! Refined bounds are intersected with the unrefined ones, so refinement never loosens a bound,
//! and a solver failure or time-out leaves the unrefined bound in place.
//!
//! Architecture invariant: the transformer crate knows nothing of LPs; this crate encodes the
//! ops itself and plugs into the certifier through [`DeltaRefiner`].

pub mod engine;
pub mod lp;
pub mod window;

use lp::Lp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use window::{couple, encode_layers, link_inputs, Link, Vars, Window};
use zonocert_domain::{Interval, Zonotope};
use zonocert_network::ir::Op;
use zonocert_network::Network;
use zonocert_transform::analysis::DifferenceRecord;
use zonocert_transform::float32::Semantics;
use zonocert_transform::maps::PreparedMaps;
use zonocert_transform::sensitivity::DeltaRefiner;
use zonocert_transform::softmax::ClassBound;

/// How much LP work to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LpSettings {
    /// Number of final layers in the window (`None`: [`window::DEFAULT_LAYERS`]).
    pub window: Option<usize>,
    /// Time limit of one LP, seconds.
    pub timeout_s: f64,
    /// Total time for all LPs of one run, seconds; objectives left when it is spent keep their
    /// unrefined bounds.
    pub budget_s: f64,
    /// Generator rows kept when tying a window input to its zonotope.
    pub link_generators: usize,
    /// First tighten, by two LPs each, the region bounds of every neuron that enters an
    /// activation or a product inside the window (layer by layer, re-encoding the program after
    /// each so later relaxations use the tighter boxes).
    pub neurons: bool,
    /// Real-valued or `float32` execution: with `float32`, every row of the window is widened
    /// by its layer's rounding (for each copy from its own bounds).
    pub semantics: Semantics,
}

impl Default for LpSettings {
    fn default() -> Self {
        LpSettings { window: None, timeout_s: 10.0, budget_s: 600.0, link_generators: 48, neurons: false, semantics: Semantics::Real }
    }
}

/// What the LPs of a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LpStats {
    /// LPs solved (each gives a proven bound or falls back).
    pub lps: usize,
    /// LPs whose proven bound beat the unrefined one.
    pub improved: usize,
    /// LPs stopped by their time limit (their duals still give a valid, looser bound).
    pub timeouts: usize,
    /// Objectives skipped because the total budget was spent.
    pub skipped: usize,
    /// Seconds spent building and solving.
    pub seconds: f64,
    /// Size of the last program: variables, rows, nonzeros.
    pub size: (usize, usize, usize),
    /// Sum over refined objectives of the unrefined width minus the refined width.
    pub width_gained: f64,
    /// Sum over refined objectives of the unrefined width.
    pub width_before: f64,
    /// Neurons whose region bounds were tightened, and the values (ids) they belong to.
    pub neurons: usize,
    /// Values whose neurons were tightened.
    pub neuron_values: Vec<usize>,
}

impl LpStats {
    fn merge(&mut self, o: &LpStats) {
        self.lps += o.lps;
        self.improved += o.improved;
        self.timeouts += o.timeouts;
        self.skipped += o.skipped;
        self.seconds += o.seconds;
        self.size = o.size;
        self.width_gained += o.width_gained;
        self.width_before += o.width_before;
        self.neurons += o.neurons;
        for v in &o.neuron_values {
            if !self.neuron_values.contains(v) {
                self.neuron_values.push(*v);
            }
        }
    }
}

/// Tightens `target` (bounds on `Σ objective`) by two LPs: the minimum of the objective and of
/// its negation. Returns the refined interval (a subset of `target`).
fn tighten(
    lp: &Lp,
    objective: &[(usize, f64)],
    target: Interval,
    settings: &LpSettings,
    deadline: Instant,
    stats: &mut LpStats,
) -> Interval {
    let mut out = target;
    let neg: Vec<(usize, f64)> = objective.iter().map(|&(v, c)| (v, -c)).collect();
    for (sign, obj) in [(1.0, objective), (-1.0, &neg[..])] {
        let left = deadline.saturating_duration_since(Instant::now()).as_secs_f64();
        if left <= 0.0 {
            stats.skipped += 1;
            continue;
        }
        let res = lp.minimise(obj, settings.timeout_s.min(left));
        stats.lps += 1;
        stats.timeouts += res.timed_out as usize;
        // sign = 1: objective ≥ b; sign = −1: objective ≤ −b.
        let b = res.bound;
        if sign > 0.0 && b > out.lo {
            out.lo = b.min(out.hi);
            stats.improved += 1;
        } else if sign < 0.0 && -b < out.hi {
            out.hi = (-b).max(out.lo);
            stats.improved += 1;
        }
    }
    stats.width_before += target.width();
    stats.width_gained += target.width() - out.width();
    out
}

/// `a ∩ b` for two enclosures of the same quantity (never empty for sound inputs; if rounding
/// made them disjoint, `a` is kept).
fn intersect(a: Interval, b: Interval) -> Interval {
    let (lo, hi) = (a.lo.max(b.lo), a.hi.min(b.hi));
    if lo <= hi {
        Interval::new(lo, hi)
    } else {
        a
    }
}

/// The variables of a logit `c` in a copy.
fn logit(vars: &Vars, output: usize, c: usize) -> usize {
    vars[output].as_ref().expect("window output encoded")[c]
}

/// A region analysis's window, ready to encode as linear programs: the network and its maps,
/// the window, the region zonotopes of the window's inputs, and the LP settings.
#[derive(Clone, Copy)]
pub struct WindowProblem<'a> {
    /// The network.
    pub net: &'a Network,
    /// Its prepared affine maps.
    pub maps: &'a PreparedMaps,
    /// The layers encoded.
    pub window: &'a Window,
    /// The region analysis's zonotopes of `window.inputs`.
    pub x_kept: &'a [Zonotope],
    /// Solver budgets and encoding choices.
    pub settings: &'a LpSettings,
}

/// The single-copy program of a window over `bounds`.
fn region_program(p: WindowProblem, bounds: &[Vec<Interval>]) -> (Lp, Vars) {
    let mut lp = Lp::new();
    let mut vars: Vars = vec![None; p.net.layers.len() + 1];
    let link = Link { zonotopes: p.x_kept, generators: p.settings.link_generators, bounds, base: None };
    link_inputs(&mut lp, p.window, link, &mut HashMap::new(), &mut vars);
    encode_layers(&mut lp, p.net, p.maps, p.window, bounds, &mut vars);
    (lp, vars)
}

/// Neuron tightening may use half of the total budget, so that it never starves the final
/// objectives.
fn neuron_deadline(t0: Instant, settings: &LpSettings) -> Instant {
    t0 + Duration::from_secs_f64(0.5 * settings.budget_s.max(0.0))
}

/// Tightens, in place, the region bounds of every neuron produced inside the window that
/// enters an activation or a product there: two LPs per neuron, layer by layer, the program
/// re-encoded after each layer so that later strips and envelopes use the tighter boxes.
/// Bounds only shrink (each is intersected with a proven one).
pub fn tighten_neurons(p: WindowProblem, bounds: &mut [Vec<Interval>], deadline: Instant) -> LpStats {
    let WindowProblem { net, window, settings, .. } = p;
    let t0 = Instant::now();
    let mut stats = LpStats::default();
    for k in window.start..net.layers.len() {
        let layer = &net.layers[k];
        if !matches!(layer.op, Op::Act(_) | Op::Mul) {
            continue;
        }
        for v in layer.inputs.iter().map(|v| v.0).filter(|&v| v > window.start) {
            if stats.neuron_values.contains(&v) {
                continue;
            }
            let (lp, vars) = region_program(p, bounds);
            stats.size = (lp.boxes.len(), lp.rows.len(), lp.nonzeros());
            let ids = vars[v].clone().expect("window value encoded");
            for (i, id) in ids.into_iter().enumerate() {
                let b = bounds[v][i];
                if !(b.hi - b.lo > 1e-9 * (1.0 + b.lo.abs().max(b.hi.abs()))) {
                    continue;
                }
                bounds[v][i] = tighten(&lp, &[(id, 1.0)], b, settings, deadline, &mut stats);
                stats.neurons += 1;
            }
            stats.neuron_values.push(v);
        }
    }
    stats.seconds = t0.elapsed().as_secs_f64();
    stats
}

/// Refines bounds on logit differences over a region. `x_bounds` are the forward analysis's
/// bounds of every value; `diffs[j][c]` bounds `z_j − z_c` and is tightened (both
/// orientations) for every pair in `pairs`. `progress(done, total)` is called before each
/// pair and at the end.
pub fn refine_logit_differences(
    p: WindowProblem,
    x_bounds: &[Vec<Interval>],
    diffs: &mut [Vec<Interval>],
    pairs: &[(usize, usize)],
    progress: &dyn Fn(usize, usize),
) -> LpStats {
    let WindowProblem { net, window, settings, .. } = p;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(settings.budget_s.max(0.0));
    let mut bounds = window_bounds(net, window, x_bounds);
    let mut stats = LpStats::default();
    if settings.neurons {
        stats.merge(&tighten_neurons(p, &mut bounds, neuron_deadline(t0, settings)));
    }
    let (lp, vars) = region_program(p, &bounds);
    stats.size = (lp.boxes.len(), lp.rows.len(), lp.nonzeros());
    let out = net.output.0;
    let total = pairs.len();
    for (done, &(j, c)) in pairs.iter().enumerate() {
        progress(done, total);
        let obj = [(logit(&vars, out, j), 1.0), (logit(&vars, out, c), -1.0)];
        let refined = tighten(&lp, &obj, diffs[j][c], settings, deadline, &mut stats);
        diffs[j][c] = refined;
        diffs[c][j] = intersect(diffs[c][j], Interval::new(-refined.hi, -refined.lo));
    }
    progress(total, total);
    stats.seconds = t0.elapsed().as_secs_f64();
    stats
}

/// A copy of the bounds of the window's values (inputs and outputs); other values empty.
fn window_bounds(net: &Network, window: &Window, x_bounds: &[Vec<Interval>]) -> Vec<Vec<Interval>> {
    (0..=net.layers.len()).map(|v| if v > window.start || window.inputs.contains(&v) { x_bounds[v].clone() } else { vec![] }).collect()
}

/// LP refinement of the differential analysis, one twin program per pixel: copies `x` and
/// `x′` of the window, tied at the inputs to the region zonotope and to the pixel's difference
/// zonotope, and coupled at every value by the difference bounds.
pub struct LpRefiner<'a> {
    net: &'a Network,
    maps: PreparedMaps,
    window: Window,
    /// The region's bounds of the window's values (tightened with `settings.neurons`).
    x_bounds: Vec<Vec<Interval>>,
    x_kept: Vec<Zonotope>,
    settings: LpSettings,
    deadline: Instant,
    /// The region's own statistics (neuron tightening).
    stats: LpStats,
    /// Each refined pixel's statistics, merged in pixel order by [`LpRefiner::stats`] so that
    /// the totals do not depend on which thread finished first.
    per_pixel: Mutex<Vec<(usize, LpStats)>>,
}

impl<'a> LpRefiner<'a> {
    /// A refiner over `window`; `x_bounds` and `x_kept` come from the certifier's region
    /// analysis (bounds of every value; zonotopes of `window.inputs`).
    pub fn new(net: &'a Network, window: Window, x_bounds: &[Vec<Interval>], x_kept: Vec<Zonotope>, settings: LpSettings) -> Self {
        let deadline = Instant::now() + Duration::from_secs_f64(settings.budget_s.max(0.0));
        let maps = PreparedMaps::new(net).with_semantics(settings.semantics);
        let mut bounds = window_bounds(net, &window, x_bounds);
        // The region is shared by every pixel: its neurons are tightened once.
        let stats = if settings.neurons {
            let problem = WindowProblem { net, maps: &maps, window: &window, x_kept: &x_kept, settings: &settings };
            tighten_neurons(problem, &mut bounds, neuron_deadline(Instant::now(), &settings))
        } else {
            LpStats::default()
        };
        LpRefiner { net, maps, window, x_bounds: bounds, x_kept, settings, deadline, stats, per_pixel: Mutex::new(vec![]) }
    }

    /// The LP settings in force.
    pub fn settings(&self) -> LpSettings {
        self.settings
    }

    /// The window the LPs encode.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Totals over every pixel refined so far.
    pub fn stats(&self) -> LpStats {
        let mut per_pixel = self.per_pixel.lock().map(|s| s.clone()).unwrap_or_default();
        per_pixel.sort_by_key(|(pixel, _)| *pixel);
        let mut total = self.stats.clone();
        for (_, s) in &per_pixel {
            total.merge(s);
        }
        total
    }

    /// The pixel's twin program and the variables of the `x` and `x′` copies (public so that
    /// tests can check every row against concrete pairs).
    pub fn twin_program(&self, record: &DifferenceRecord) -> (Lp, Vars, Vars) {
        let n_vals = self.net.layers.len() + 1;
        let mut lp = Lp::new();
        let mut x: Vars = vec![None; n_vals];
        let mut xp: Vars = vec![None; n_vals];
        // x′ ∈ X + D, for the window's values (the others are empty in x_bounds).
        let xp_bounds: Vec<Vec<Interval>> =
            self.x_bounds.iter().zip(&record.bounds).map(|(x, d)| x.iter().zip(d).map(|(a, d)| a.add(d)).collect()).collect();
        let generators = self.settings.link_generators;
        let region = Link { zonotopes: &self.x_kept, generators, bounds: &self.x_bounds, base: None };
        link_inputs(&mut lp, &self.window, region, &mut HashMap::new(), &mut x);
        let flipped = Link { zonotopes: &record.kept, generators, bounds: &xp_bounds, base: Some(&x) };
        link_inputs(&mut lp, &self.window, flipped, &mut HashMap::new(), &mut xp);
        encode_layers(&mut lp, self.net, &self.maps, &self.window, &self.x_bounds, &mut x);
        encode_layers(&mut lp, self.net, &self.maps, &self.window, &xp_bounds, &mut xp);
        couple(&mut lp, &x, &xp, &record.bounds);
        (lp, x, xp)
    }
}

impl DeltaRefiner for LpRefiner<'_> {
    fn keep(&self) -> &[usize] {
        &self.window.inputs
    }

    fn refine(
        &self,
        pixel: usize,
        record: &DifferenceRecord,
        dd: &mut [Vec<Interval>],
        class_bounds: &dyn Fn(&[Vec<Interval>]) -> Vec<ClassBound>,
    ) {
        if Instant::now() >= self.deadline {
            if let Ok(mut s) = self.per_pixel.lock() {
                s.push((pixel, LpStats { skipped: 1, ..LpStats::default() }));
            }
            return;
        }
        let t0 = Instant::now();
        let (lp, x, xp) = self.twin_program(record);
        let mut stats = LpStats { size: (lp.boxes.len(), lp.rows.len(), lp.nonzeros()), ..Default::default() };
        let out = self.net.output.0;
        let k = dd.len();
        let mut done = vec![false; k];
        // Refine the class with the largest bound until it is one already refined: only the
        // maximum over classes is reported, so other classes need no LPs.
        loop {
            let cb = class_bounds(dd);
            let c = (0..k).fold(0, |best, c| if cb[c].bound > cb[best].bound { c } else { best });
            if done[c] {
                break;
            }
            done[c] = true;
            for j in (0..k).filter(|&j| j != c) {
                // Δ(z_c − z_j) = z′_c − z′_j − z_c + z_j.
                let obj = [(logit(&xp, out, c), 1.0), (logit(&xp, out, j), -1.0), (logit(&x, out, c), -1.0), (logit(&x, out, j), 1.0)];
                let refined = tighten(&lp, &obj, dd[c][j], &self.settings, self.deadline, &mut stats);
                dd[c][j] = refined;
                dd[j][c] = intersect(dd[j][c], Interval::new(-refined.hi, -refined.lo));
            }
        }
        stats.seconds = t0.elapsed().as_secs_f64();
        if let Ok(mut s) = self.per_pixel.lock() {
            s.push((pixel, stats));
        }
    }
}
