//! Certified per-pixel bit-flip sensitivity: for a region `R` of images and a pixel `i`, an
//! upper bound on `max_{x∈R, c} |p_c(x ⊕ bit_i) − p_c(x)|`.
//!
//! Flipping bit `b` of pixel `i` moves `x_i` by `±2^b/255` (the sign is set by the bit's value).
//! Every pair `(x, x′)` with `x ∈ R` is covered by `x ∈ X = R` and `x′ − x ∈ D`, where
//! `D = ±δ·e_i` with the sign known for a single image and `D_i ∈ [−δ, δ]` otherwise; the
//! 8-bit grid is relaxed to the continuous box, which is sound. `X` is analysed once per region
//! and shared by all pixels.

use crate::analysis::{differential_keeping, forward, forward_keeping, DiffPass, DifferenceRecord, Domain, Forward, Keep};
use crate::carried::difference_direction;
use crate::float32::{below_top, Semantics};
use crate::maps::PreparedMaps;
use crate::softmax::{class_bounds, logit_differences, probability_bounds, ClassBound};

use zonocert_domain::{Interval, SymbolPool, Zonotope};
use zonocert_network::data::PIXELS;
use zonocert_network::exec::Executor;
use zonocert_network::kernels::{softmax, Real};
use zonocert_network::{Network, Op};

/// The set of images analysed.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    /// One image (bytes).
    Point(Vec<u8>),
    /// Every image within L∞ distance `eps` (pixel scale [0, 1]) of an image, clipped to [0, 1].
    Ball(Vec<u8>, f64),
    /// Every image: the box [0, 1]^784.
    Global,
}

impl Region {
    /// The region as a box of real pixel values, rounded outward.
    pub fn input_box(&self) -> Vec<Interval> {
        match self {
            Region::Point(px) => px.iter().map(|&b| byte_value(b)).collect(),
            Region::Ball(px, eps) => px
                .iter()
                .map(|&b| {
                    let v = byte_value(b);
                    let lo = if *eps == 0.0 { v.lo } else { (v.lo - eps).next_down().max(0.0) };
                    let hi = if *eps == 0.0 { v.hi } else { (v.hi + eps).next_up().min(1.0) };
                    Interval::new(lo, hi)
                })
                .collect(),
            Region::Global => vec![Interval::new(0.0, 1.0); PIXELS],
        }
    }

    /// The region's image bytes, when it is centred on one.
    pub fn image(&self) -> Option<&[u8]> {
        match self {
            Region::Point(px) | Region::Ball(px, _) => Some(px),
            Region::Global => None,
        }
    }
}

/// The real value `b / 255`, enclosed in `f64` (exact for 0 and 255, one ulp each side otherwise).
pub fn byte_value(b: u8) -> Interval {
    let v = b as f64 / 255.0;
    if b == 0 || b == 255 {
        Interval::point(v)
    } else {
        Interval::new(v.next_down(), v.next_up())
    }
}

/// The size `2^bit / 255` of a flip of `bit`, enclosed.
pub fn flip_size(bit: u8) -> Interval {
    let v = (1u32 << bit) as f64 / 255.0;
    Interval::new(v.next_down(), v.next_up())
}

/// How the difference between the two images is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `x` and `x′` bounded separately with intervals, then subtracted.
    Interval,
    /// `x` and `x′` each analysed as zonotopes over shared input symbols, then subtracted.
    TwinZonotope,
    /// The region as a zonotope, the difference `D = x′ − x` as a second zonotope carried by
    /// differential transformers (mean value theorem).
    DiffZonotope,
    /// The differential analysis in its interval form: the region by intervals, `D` boxed at
    /// every nonlinearity (budgets 0). The bound a training script can differentiate cheaply;
    /// `diff-zonotope` is never looser in practice and usually far tighter.
    DiffInterval,
}

impl Method {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Method::Interval => "interval",
            Method::TwinZonotope => "twin-zonotope",
            Method::DiffZonotope => "diff-zonotope",
            Method::DiffInterval => "diff-interval",
        }
    }
}

/// Tuning of the analyses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Which method bounds the difference.
    pub method: Method,
    /// Generator budget for the region's zonotope.
    pub region_budget: usize,
    /// Generator budget for the difference zonotope (and the twin's second zonotope).
    pub diff_budget: usize,
    /// Which bit flips (0 = least significant).
    pub bit: u8,
    /// Screening pass of `diff-zonotope` (`None`: every pixel gets the full-budget pass).
    pub screen: Option<Screen>,
    /// Real-valued or `float32` execution.
    pub semantics: Semantics,
    /// Difference analyses carry their boxed error terms beside the zonotope and bound them
    /// along each logit difference by reverse passes, instead of growing them by `|W|` at
    /// every later layer (tighter, and about 1.5× the time). Under `float32` the rounding is
    /// carried either way; this adds the boxed terms to it.
    pub carry_errors: bool,
    /// The region's forward analysis bounds the error terms of every relaxation's input by
    /// reverse passes ([`Domain::Zonotope`]'s `backsub`): tighter value ranges over large
    /// regions, once per region.
    pub region_backsub: bool,
    /// Each pixel's difference analysis bounds the carried term (the boxed error terms and the
    /// float32 rounding) again at every relaxation input where it widens the relaxation, by
    /// reverse passes (see [`crate::analysis::DiffPass`]'s `backsub`); implies
    /// `carry_errors`. Tighter where the budget boxes many terms, at the cost of one reverse
    /// pass per such neuron, per pixel.
    pub diff_backsub: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            method: Method::DiffZonotope,
            region_budget: 512,
            diff_budget: 256,
            bit: 0,
            screen: Some(Screen::default()),
            semantics: Semantics::Real,
            carry_errors: false,
            region_backsub: false,
            diff_backsub: false,
        }
    }
}

/// A cheap pass of the differential analysis run before the full-budget one, which is skipped
/// when it could not change the answer.
///
/// The full pass is skipped when the screening pass's bounds on every `Δ(z_c − z_j)`, shrunk
/// `factor` times, would give no better bound than no bounds on them at all (what the region's
/// own probability ranges give, [`Certifier::trivial_bound`]; 1 on the shipped B0): a full pass
/// would have to be `factor` times tighter on every logit difference to certify anything. The
/// screening result (the trivial bound) is then reported; it is sound like every pass. The
/// full pass was at most 1,700 times tighter than the screening pass on the networks and regions
/// measured (`benchmarks/RESULTS.md`, § Screening), against a default factor of 10¹². A skip
/// trades no soundness, only the (remote) chance that the full pass is more than `factor`
/// times tighter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Screen {
    /// Difference generator budget of the screening pass (0: every new term boxed at once).
    pub budget: usize,
    /// How much tighter than the screening pass a full pass would have to be to matter.
    pub factor: f64,
}

impl Default for Screen {
    fn default() -> Self {
        Screen { budget: 0, factor: 1e12 }
    }
}

/// The certified result for one pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelBound {
    /// Pixel index (row-major).
    pub pixel: usize,
    /// Certified bound on `max_c |Δp_c|`.
    pub upper: f64,
    /// The class attaining `upper`.
    pub class: usize,
    /// Per-class bounds.
    pub per_class: Vec<ClassBound>,
    /// The bound comes from the screening pass: the full pass was skipped (see [`Screen`]).
    pub screened: bool,
}

impl PixelBound {
    /// The softmax mean-value bound `max_c p_c(1 − p_c)·max_j |Δ(z_c − z_j)|` before the minimum
    /// with the probability ranges and 1: how far a trivial `upper` is from an informative one.
    pub fn mean_value_bound(&self) -> f64 {
        self.per_class.iter().map(|b| b.from_mean_value).fold(0.0, f64::max)
    }

    /// The certified `max_{c,j} |Δ(z_c − z_j)|`: how far the flip moves any logit difference.
    pub fn logit_delta_bound(&self) -> f64 {
        self.per_class.iter().map(|b| b.max_logit_delta).fold(0.0, f64::max)
    }

    /// True when the analysis overflowed (a bound became ±∞ or NaN) and knows nothing about how
    /// the flip moves the logits: `upper` is then the trivial bound.
    pub fn overflowed(&self) -> bool {
        self.per_class.iter().any(|b| !b.from_mean_value.is_finite())
    }
}

/// What any engine certifies about one pixel: the one result type of [`CertifyPixel`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Certified {
    /// Pixel index (row-major).
    pub pixel: usize,
    /// Certified upper bound on `max_c |Δp_c|`.
    pub upper: f64,
    /// A certified lower bound on the exact value, where the engine gives one (`precise`).
    pub lower: Option<f64>,
    /// The class attaining `upper`.
    pub class: usize,
    /// The bound comes from a screening pass (see [`Screen`]).
    pub screened: bool,
    /// Abstract engines: the softmax mean-value bound before the minimum with the probability
    /// ranges and 1 (see [`PixelBound::mean_value_bound`]), when finite.
    pub mean_value_bound: Option<f64>,
    /// Abstract engines: the certified `max_{c,j} |Δ(z_c − z_j)|` (see
    /// [`PixelBound::logit_delta_bound`]), when finite.
    pub logit_delta_bound: Option<f64>,
    /// The analysis overflowed: `upper` is the trivial bound.
    pub overflow: bool,
}

/// An engine that certifies the pixels of one question (network, region, flipped bit), one at
/// a time, in any order and in parallel.
pub trait CertifyPixel: Sync {
    /// Certifies pixel `i`.
    fn certify(&self, i: usize) -> Certified;
}

impl From<PixelBound> for Certified {
    fn from(b: PixelBound) -> Certified {
        let (overflow, mean_value) = (b.overflowed(), b.mean_value_bound());
        Certified {
            pixel: b.pixel,
            upper: b.upper,
            lower: None,
            class: b.class,
            screened: b.screened,
            mean_value_bound: Some(mean_value).filter(|m| m.is_finite()),
            logit_delta_bound: Some(b.logit_delta_bound()).filter(|m| m.is_finite()),
            overflow,
        }
    }
}

impl CertifyPixel for Certifier<'_> {
    fn certify(&self, i: usize) -> Certified {
        self.pixel(i).into()
    }
}

/// A hook that may tighten one pixel's bounds on `Δ(z_c − z_j)` (LP refinement lives in its
/// own crate and plugs in here).
pub trait DeltaRefiner: Sync {
    /// Values whose difference zonotopes [`DeltaRefiner::refine`] needs (and whose region
    /// zonotopes the certifier must keep: build it with [`Certifier::with_kept`]).
    fn keep(&self) -> &[usize];

    /// Tightens `dd[c][j]` (bounds on `Δ(z_c − z_j)`, antisymmetric) by intersecting it with
    /// proven bounds only; `class_bounds(dd)` gives the per-class bounds `dd` implies.
    fn refine(
        &self,
        pixel: usize,
        record: &DifferenceRecord,
        dd: &mut [Vec<Interval>],
        class_bounds: &dyn Fn(&[Vec<Interval>]) -> Vec<ClassBound>,
    );
}

/// Analyses a region once and then certifies pixels one by one (in any order, in parallel).
pub struct Certifier<'a> {
    net: &'a Network,
    maps: PreparedMaps,
    region: Region,
    settings: Settings,
    input: Zonotope,
    x: Forward,
    /// Bounds on `z_j − z_c` over the region, shared by every pixel.
    dx: Vec<Vec<Interval>>,
    pool_after_x: SymbolPool,
    classes: usize,
    /// Region zonotopes of the values asked for by [`Certifier::with_kept`].
    kept: Vec<Zonotope>,
    /// [`Certifier::trivial_bound`].
    trivial: f64,
    /// Bounds on every class probability over the region.
    p_region: Vec<Interval>,
    /// Under `float32`, at an image or in a ball: per class, a bound on `|Δp̂_c|` for every
    /// pixel at once (see [`Certifier::flip_hull_bound`]).
    hull: Option<Vec<f64>>,
}

impl<'a> Certifier<'a> {
    /// Runs the region analysis (`X`) for `settings.method`.
    pub fn new(net: &'a Network, region: Region, settings: Settings) -> Self {
        Self::with_kept(net, region, settings, &[])
    }

    /// [`Certifier::new`] that also keeps the region zonotopes of the values `keep` (for a
    /// [`DeltaRefiner`]).
    pub fn with_kept(net: &'a Network, region: Region, settings: Settings, keep: &[usize]) -> Self {
        // A single image has only rounding-sized widths: correlations buy nothing there, so
        // both analyses run without generators (exact up to rounding, and fast). Not so for a
        // float32 execution, whose rounding is a width that correlations do reduce.
        let settings = match (&region, settings.method, settings.semantics) {
            (Region::Point(_), _, Semantics::Real) | (_, Method::DiffInterval, _) => {
                Settings { region_budget: 0, diff_budget: 0, ..settings }
            }
            _ => settings,
        };
        let maps = PreparedMaps::new(net).with_semantics(settings.semantics);
        let mut pool = SymbolPool::new();
        let domain = region_domain(settings);
        let input = Zonotope::from_box(&region.input_box(), &mut pool, domain != Domain::Interval);
        let keep_bounds = matches!(settings.method, Method::DiffZonotope | Method::DiffInterval);
        let (x, kept) = forward_keeping(net, &maps, input.clone(), &mut pool, domain, Keep { bounds: keep_bounds, values: keep });
        let classes = x.output.dim();
        let dx = logit_differences(&x.output);
        let trivial = finish(0, delta_bounds(&dx, &unbounded_differences(classes)), false).upper;
        let p_region = probability_bounds(classes, &|j, c| dx[j][c]);
        let hull = flip_hull_bounds(net, &maps, &region, settings);
        Certifier { net, maps, region, settings, input, x, dx, pool_after_x: pool, classes, kept, trivial, p_region, hull }
    }

    /// Under `float32` semantics at an image or in a ball, the bound every pixel gets from one
    /// forward analysis of the region together with all its flips (the flip hull, see
    /// [`flip_hull_bounds`]): the largest over the classes. `None` elsewhere. Each pixel's
    /// bound is at most this; it is what keeps a single image's `float32` bound informative
    /// where the differential analysis's carried rounding compounds.
    pub fn flip_hull_bound(&self) -> Option<f64> {
        self.hull.as_ref().map(|h| h.iter().copied().fold(0.0, f64::max))
    }

    /// The bound a pixel gets when nothing is known about how its flip moves the logits: from
    /// the region's probability ranges alone (`max_c max(1 − min p_c, max p_c)` over the region;
    /// 1 when those ranges are trivial).
    pub fn trivial_bound(&self) -> f64 {
        self.trivial
    }

    /// The settings in force (budgets are 0 for a single image).
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Certifies flips of `bit` from now on. The region analysis does not depend on the bit
    /// (only each pixel's input difference does), so one certifier serves every bit; the flip
    /// hull does, and is analysed again.
    pub fn set_bit(&mut self, bit: u8) {
        if bit != self.settings.bit {
            self.settings.bit = bit;
            if self.hull.is_some() {
                self.hull = flip_hull_bounds(self.net, &self.maps, &self.region, self.settings);
            }
        }
    }

    /// The region's forward analysis (logit zonotope, bounds).
    pub fn region_analysis(&self) -> &Forward {
        &self.x
    }

    /// The input difference for pixel `i`: `±δ` with the sign of the flip when the image is
    /// known exactly, `[−δ, δ]` otherwise.
    fn difference_box(&self, i: usize) -> Vec<Interval> {
        let delta = flip_size(self.settings.bit);
        let mut d = vec![Interval::point(0.0); PIXELS];
        d[i] = match &self.region {
            Region::Point(px) => {
                if px[i] >> self.settings.bit & 1 == 0 {
                    delta
                } else {
                    Interval::new(-delta.hi, -delta.lo)
                }
            }
            _ => Interval::new(-delta.hi, delta.hi),
        };
        // In float32 both images' bytes are rounded on conversion, differently.
        if let Semantics::F32(m) = self.settings.semantics {
            let e = 2.0 * m.input_error(&[Interval::new(0.0, 1.0)])[0];
            d[i] = Interval::new((d[i].lo - e).next_down(), (d[i].hi + e).next_up());
        }
        d
    }

    /// The region zonotopes kept by [`Certifier::with_kept`], in the order asked.
    pub fn kept(&self) -> &[Zonotope] {
        &self.kept
    }

    /// Moves the kept region zonotopes out (for a refiner that owns them; the certifier does
    /// not use them itself).
    pub fn take_kept(&mut self) -> Vec<Zonotope> {
        std::mem::take(&mut self.kept)
    }

    /// Certifies pixel `i`.
    pub fn pixel(&self, i: usize) -> PixelBound {
        self.pixel_refined(i, None)
    }

    /// Certifies pixel `i`, letting `refiner` tighten the differential bounds (method
    /// `diff-zonotope` only; other methods ignore it).
    pub fn pixel_refined(&self, i: usize, refiner: Option<&dyn DeltaRefiner>) -> PixelBound {
        self.pixel_at_budget(i, refiner, self.settings.diff_budget)
    }

    /// [`Certifier::pixel_refined`] with difference generator budget `budget` (the screening
    /// pass, when one is set, still runs at its own budget).
    pub fn pixel_at_budget(&self, i: usize, refiner: Option<&dyn DeltaRefiner>, budget: usize) -> PixelBound {
        let k = self.classes;
        let dx = &self.dx;
        if self.x.overflow.is_some() {
            // The region's own analysis overflowed: nothing is known about any pixel.
            return finish(i, delta_bounds(dx, &unbounded_differences(k)), false);
        }
        let per_class = match self.settings.method {
            Method::DiffZonotope | Method::DiffInterval => {
                if let (None, Some(screen)) = (refiner, self.settings.screen) {
                    if screen.budget < budget {
                        // The screening pass stays cheap: no reverse passes inside it.
                        let (dd, _) = self.differences_with(i, screen.budget, None, false);
                        let shrunk: Vec<Vec<Interval>> = dd
                            .iter()
                            .map(|row| row.iter().map(|d| Interval::new(d.lo / screen.factor, d.hi / screen.factor)).collect())
                            .collect();
                        if finish(i, delta_bounds(&self.dx, &shrunk), true).upper >= self.trivial {
                            return self.finish_rounded(i, delta_bounds(&self.dx, &dd), &dd, true);
                        }
                    }
                }
                let (mut dd, record) = self.differences(i, budget, refiner.map(|r| r.keep()));
                let finite = dd.iter().flatten().all(Interval::is_finite);
                if let (Some(r), Some(rec), true) = (refiner, record.as_ref(), finite) {
                    r.refine(i, rec, &mut dd, &|dd: &[Vec<Interval>]| delta_bounds(dx, dd));
                }
                (delta_bounds(dx, &dd), dd)
            }
            Method::TwinZonotope | Method::Interval => {
                let (dxp, delta) = self.twin(i, budget);
                (class_bounds(k, &|j, c| dx[j][c], &|j, c| dxp[j][c], &|c, j| delta[c][j]), delta)
            }
        };
        self.finish_rounded(i, per_class.0, &per_class.1, false)
    }

    /// The pixel's result; with `float32` semantics, each class's bound first grows by the
    /// rounding of the two `float32` softmaxes (bounded through the region's probability
    /// ranges and the spread of the logits, at `x` and at `x′`).
    fn finish_rounded(&self, i: usize, mut per_class: Vec<ClassBound>, delta: &[Vec<Interval>], screened: bool) -> PixelBound {
        if let Semantics::F32(m) = self.settings.semantics {
            let k = self.classes;
            // How far below the top logit each class can be, at x and at x′ (where
            // z′_j − z′_c = (z_j − z_c) + Δ(z_j − z_c)).
            let at_twin: Vec<Vec<Interval>> = (0..k).map(|j| (0..k).map(|c| self.dx[j][c].add(&delta[j][c])).collect()).collect();
            let below_max = below_top(&[&self.dx, &at_twin]);
            let p_hi: Vec<f64> = per_class.iter().zip(&self.p_region).map(|(b, p)| (p.hi + b.bound).min(1.0)).collect();
            let (theta, abs) = m.softmax_errors(&below_max, &p_hi);
            for ((b, p), theta) in per_class.iter_mut().zip(&self.p_region).zip(theta) {
                // |p̂_c − p_c| ≤ θ_c·p_c + a at x, and at x′ where p_c ≤ p_c(x) + |Δp_c|.
                let grow = (theta * (2.0 * p.hi + b.bound) + 2.0 * abs) * (1.0 + 1e-12);
                b.bound = if grow.is_finite() { (b.bound + grow).next_up().min(1.0) } else { 1.0 };
            }
            if let Some(hull) = &self.hull {
                for (b, &h) in per_class.iter_mut().zip(hull) {
                    b.bound = b.bound.min(h);
                }
            }
        }
        finish(i, per_class, screened)
    }

    /// The certified bounds on every `Δ(z_c − z_j) = (z′_c − z′_j) − (z_c − z_j)` for pixel `i`
    /// (`[c][j]`, zero diagonal) at difference budget `budget`, as [`Certifier::pixel_at_budget`]
    /// computes them before the softmax (no screening, no refiner); unbounded when the region's
    /// analysis overflowed. For tests that check the logit differences themselves.
    pub fn logit_difference_bounds(&self, i: usize, budget: usize) -> Vec<Vec<Interval>> {
        let k = self.classes;
        if self.x.overflow.is_some() {
            return unbounded_differences(k);
        }
        if matches!(self.settings.method, Method::DiffZonotope | Method::DiffInterval) {
            return self.differences(i, budget, None).0;
        }
        self.twin(i, budget).1
    }

    /// The difference zonotope `D` of pixel `i` at the input of the layer that produces the
    /// logits, carried terms boxed into its error, at the settings' difference budget: every
    /// certified `Δ(z_c − z_j)` is this zonotope mapped through that last dense layer. For
    /// training aids that reweight the classifier against the certified bound
    /// (`certify --export-logit-input`). `None` unless the method is differential and the
    /// logits come from a dense layer.
    pub fn logit_input_difference(&self, i: usize) -> Option<Zonotope> {
        let input = self.logit_input_value()?;
        let (_, record) = self.differences(i, self.settings.diff_budget, Some(&[input]));
        record?.kept.into_iter().next()
    }

    /// [`Certifier::pixel`] and [`Certifier::logit_input_difference`] from one differential
    /// pass (the export costs nothing beyond certification). The full-budget pass always runs
    /// here, so a pixel the screening pass would have settled at the trivial bound gets the
    /// full pass's (sound, never weaker in practice) bound instead. Without a difference to
    /// export, the same as [`Certifier::pixel`] and `None`.
    pub fn pixel_with_logit_input(&self, i: usize) -> (PixelBound, Option<Zonotope>) {
        let Some(input) = self.logit_input_value() else { return (self.pixel(i), None) };
        let (dd, record) = self.differences(i, self.settings.diff_budget, Some(&[input]));
        let z = record.and_then(|r| r.kept.into_iter().next());
        (self.finish_rounded(i, delta_bounds(&self.dx, &dd), &dd, false), z)
    }

    /// The value feeding the dense layer that produces the logits, when the method is
    /// differential, the region's analysis finite, and the logits come from a dense layer.
    fn logit_input_value(&self) -> Option<usize> {
        if !matches!(self.settings.method, Method::DiffZonotope | Method::DiffInterval) || self.x.overflow.is_some() {
            return None;
        }
        let mut k = self.net.output.0.checked_sub(1)?;
        if matches!(self.net.layers[k].op, Op::Softmax) {
            k = self.net.layers[k].inputs[0].0.checked_sub(1)?;
        }
        if !matches!(self.net.layers[k].op, Op::Linear(_)) {
            return None;
        }
        Some(self.net.layers[k].inputs[0].0)
    }

    /// The twin analysis of pixel `i` (methods `interval` and `twin-zonotope`): bounds on every
    /// `z′_j − z′_c` over the flipped region, and on every `Δ(z_c − z_j)` (zero diagonal): the
    /// difference of the two interval bounds, or of the two zonotopes over shared symbols.
    fn twin(&self, i: usize, budget: usize) -> (Vec<Vec<Interval>>, Vec<Vec<Interval>>) {
        let k = self.classes;
        let mut pool = self.pool_after_x.clone();
        let interval = self.settings.method == Method::Interval;
        let d_in = Zonotope::from_box(&self.difference_box(i), &mut pool, !interval);
        // Per pixel, so `--region-backsub`'s reverse passes cost once per pixel here.
        let domain = if interval { Domain::Interval } else { Domain::Zonotope { budget, backsub: self.settings.region_backsub } };
        let zp = forward(self.net, &self.maps, self.input.add(&d_in), &mut pool, domain, false).output;
        let dxp = logit_differences(&zp);
        let diff = zp.sub(&self.x.output);
        let delta = (0..k)
            .map(|c| {
                (0..k)
                    .map(|j| match (c == j, interval) {
                        (true, _) => Interval::point(0.0),
                        // Intervals: no correlation between the two analyses.
                        (false, true) => dxp[c][j].sub(&self.dx[c][j]),
                        (false, false) => diff.difference_bounds(c, j),
                    })
                    .collect()
            })
            .collect();
        (dxp, delta)
    }

    /// The differential analysis of pixel `i` at difference budget `budget`: bounds on every
    /// `Δ(z_c − z_j)` (antisymmetric, zero diagonal), and the record `keep` asks for.
    fn differences(&self, i: usize, budget: usize, keep: Option<&[usize]>) -> (Vec<Vec<Interval>>, Option<DifferenceRecord>) {
        self.differences_with(i, budget, keep, self.settings.diff_backsub)
    }

    /// [`Certifier::differences`], with the carried term's reverse passes at relaxation
    /// inputs on or off (`backsub`).
    fn differences_with(
        &self,
        i: usize,
        budget: usize,
        keep: Option<&[usize]>,
        backsub: bool,
    ) -> (Vec<Vec<Interval>>, Option<DifferenceRecord>) {
        let k = self.classes;
        let mut pool = SymbolPool::new();
        let d_in = Zonotope::from_box(&self.difference_box(i), &mut pool, true);
        let (d, carried, record) = differential_keeping(
            DiffPass {
                net: self.net,
                maps: &self.maps,
                x_bounds: &self.x.bounds,
                budget,
                carry_errors: self.settings.carry_errors,
                backsub,
            },
            d_in,
            &mut pool,
            keep,
        );
        let mut dd: Vec<Vec<Interval>> =
            (0..k).map(|c| (0..k).map(|j| if c == j { Interval::point(0.0) } else { d.difference_bounds(c, j) }).collect()).collect();
        if let Some(carried) = carried {
            // The carried term (float32 rounding, boxed error terms), along every difference of
            // two logits.
            let pairs: Vec<(usize, usize)> = (0..k).flat_map(|c| (c + 1..k).map(move |j| (c, j))).collect();
            let directions: Vec<Vec<f64>> = pairs.iter().map(|&(c, j)| difference_direction(k, c, j)).collect();
            for (&(c, j), r) in pairs.iter().zip(carried.along(&directions)) {
                let grow = |b: Interval| Interval::new((b.lo - r).next_down(), (b.hi + r).next_up());
                dd[c][j] = grow(dd[c][j]);
                dd[j][c] = grow(dd[j][c]);
            }
        }
        (dd, record)
    }
}

/// The abstract domain of the region's analysis for `settings`.
fn region_domain(settings: Settings) -> Domain {
    match settings.method {
        Method::Interval | Method::DiffInterval => Domain::Interval,
        _ => Domain::Zonotope { budget: settings.region_budget, backsub: settings.region_backsub },
    }
}

/// The region together with every image one flip of `bit` makes from it, as a box: at an
/// image, each pixel between its byte and its flipped byte; in a ball of radius `ε`, the ball
/// of radius `ε + 2^bit/255`. `None` over every image (the region holds its flips already).
fn flip_hull_box(region: &Region, bit: u8) -> Option<Vec<Interval>> {
    match region {
        Region::Point(px) => Some(px.iter().map(|&b| byte_value(b).hull(&byte_value(b ^ (1 << bit)))).collect()),
        // The sum may round down; the ball's own outward rounding is one ulp of a value ≤ 1,
        // so a relative margin far above it keeps every flipped image inside.
        Region::Ball(px, eps) => Some(Region::Ball(px.clone(), (eps + flip_size(bit).hi) * (1.0 + 1e-12)).input_box()),
        Region::Global => None,
    }
}

/// Under `float32` semantics at an image or in a ball: per class `c`, a bound on
/// `|p̂_c(x′) − p̂_c(x)|` for every pixel's flip at once. `x` and every `x′` lie in the flip
/// hull ([`flip_hull_box`]), so one forward analysis of the hull bounds both executions'
/// logits, and `|Δp̂_c|` is at most the width of `p_c` over those logits plus both float32
/// softmaxes' rounding (`θ_c·p_c + a` each). It ignores how the flip correlates the two
/// executions, so it is loose where the differential analysis works; it stays informative
/// where that analysis's carried rounding compounds (a float32 B0 at one image). `None`
/// elsewhere, or when the hull's analysis overflows.
fn flip_hull_bounds(net: &Network, maps: &PreparedMaps, region: &Region, settings: Settings) -> Option<Vec<f64>> {
    let Semantics::F32(m) = settings.semantics else { return None };
    let hull = flip_hull_box(region, settings.bit)?;
    let domain = region_domain(settings);
    let mut pool = SymbolPool::new();
    let input = Zonotope::from_box(&hull, &mut pool, domain != Domain::Interval);
    let out = forward(net, maps, input, &mut pool, domain, false);
    if out.overflow.is_some() {
        return None;
    }
    let classes = out.output.dim();
    let dx = logit_differences(&out.output);
    let p = probability_bounds(classes, &|j, c| dx[j][c]);
    let below_max = below_top(&[&dx]);
    let p_hi: Vec<f64> = p.iter().map(|p| p.hi.min(1.0)).collect();
    let (theta, abs) = m.softmax_errors(&below_max, &p_hi);
    let bounds = p
        .iter()
        .zip(theta)
        .map(|(p, theta)| {
            let b = ((p.hi - p.lo) + 2.0 * theta * p.hi + 2.0 * abs) * (1.0 + 1e-12);
            if b.is_finite() {
                b.next_up().min(1.0)
            } else {
                1.0
            }
        })
        .collect();
    Some(bounds)
}

/// Bounds on every `Δ(z_c − z_j)` that say nothing (zero diagonal).
fn unbounded_differences(classes: usize) -> Vec<Vec<Interval>> {
    (0..classes).map(|c| (0..classes).map(|j| if c == j { Interval::point(0.0) } else { Interval::unbounded() }).collect()).collect()
}

/// Per-class bounds implied by the region's bounds `dx` on every `z_j − z_c` and bounds `dd` on
/// every `Δ(z_c − z_j)`, using `z′_j − z′_c = (z_j − z_c) + Δ(z_j − z_c)`.
fn delta_bounds(dx: &[Vec<Interval>], dd: &[Vec<Interval>]) -> Vec<ClassBound> {
    class_bounds(dx.len(), &|j, c| dx[j][c], &|j, c| dx[j][c].add(&dd[j][c]), &|c, j| dd[c][j])
}

/// The pixel's result from its per-class bounds.
fn finish(pixel: usize, per_class: Vec<ClassBound>, screened: bool) -> PixelBound {
    let (class, upper) = per_class.iter().enumerate().fold((0, 0.0), |best, (c, b)| if b.bound > best.1 { (c, b.bound) } else { best });
    PixelBound { pixel, upper, class, per_class, screened }
}

/// The exact sensitivity of one image at pixel `i` (f64 execution of both images; rounding of
/// the evaluation itself is not bounded, so use it as a reference value, not a certificate).
pub fn exact_point(exec: &Executor<f64>, image: &[u8], i: usize, bit: u8) -> (f64, usize) {
    let mut flipped = image.to_vec();
    flipped[i] ^= 1 << bit;
    let mut input: Vec<f64> = image.iter().map(|&b| b as f64 / 255.0).collect();
    input.extend(flipped.iter().map(|&b| b as f64 / 255.0));
    let z = exec.forward(&input, 2);
    let k = z.len() / 2;
    largest_change(&probabilities(exec, &z[..k]), &probabilities(exec, &z[k..]))
}

/// `max_c |q_c − p_c|` and the first class attaining it (NaN entries never win; 0 and class 0
/// when nothing is positive).
pub fn largest_change(p: &[f64], q: &[f64]) -> (f64, usize) {
    p.iter().zip(q).map(|(a, b)| (a - b).abs()).enumerate().fold((0.0, 0), |best, (c, v)| if v > best.0 { (v, c) } else { best })
}

/// Class probabilities from a network output: softmax of the logits, or the output itself when
/// the network already ends with a Softmax layer.
pub fn probabilities<T: Real>(exec: &Executor<T>, out: &[T]) -> Vec<T> {
    if exec.network().ends_with_softmax() {
        out.to_vec()
    } else {
        softmax(out, out.len())
    }
}
