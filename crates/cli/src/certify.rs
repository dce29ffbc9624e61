//! `zonocert certify`: certified per-pixel bit-flip sensitivity, with JSON, CSV and heatmap.

use crate::common::{
    budgets_within, check_classifier, hex, machine, median, npy_f64, peak_rss_mib, progress_bar, sha256_hex, write_atomic, BudgetArgs,
    ModelArg, QuestionArgs, SemanticsArgs,
};
use crate::heatmap;
use crate::refine::{RefineArg, RefineArgs};
use crate::report::{
    BlocksRecord, EngineRecord, HeatmapRecord, LowerSearchRecord, PartialReport, PixelEntry, RegionRecord, Report, RunRecord, ScreenRecord,
    ShardRecord, ShardTotal, Summary, TemperatureFree,
};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;
use zonocert_domain::Zonotope;
use zonocert_network::data::{PIXELS, SIDE};
use zonocert_network::{Executor, Network};
use zonocert_refine::engine::{Engine, EngineMethod, EngineSettings};
use zonocert_refine::LpSettings;
use zonocert_transform::falsify::{search, PairScore, SearchSettings};
use zonocert_transform::float32::Semantics;
use zonocert_transform::precise::Arithmetic;
use zonocert_transform::sensitivity::{exact_point, Certified, CertifyPixel, Method, Region, Screen};

/// The method that bounds the difference between an image and its flipped twin.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MethodArg {
    /// `precise` for a single image, `diff-zonotope` for a ball or the global region (and for
    /// everything under `--semantics f32`).
    Auto,
    /// Both images bounded with intervals, then subtracted.
    Interval,
    /// Both images as zonotopes over shared input symbols, then subtracted.
    TwinZonotope,
    /// Differential zonotope: the difference carried by mean-value transformers.
    DiffZonotope,
    /// The differential analysis in interval form (the bound training can differentiate).
    DiffInterval,
    /// Single image only: both images evaluated in high-precision ball arithmetic, giving a
    /// certified enclosure [lower, upper] of the exact value.
    Precise,
}

impl MethodArg {
    /// The library's method of that name.
    pub fn engine(self) -> EngineMethod {
        match self {
            MethodArg::Auto => EngineMethod::Auto,
            MethodArg::Interval => EngineMethod::Abstract(Method::Interval),
            MethodArg::TwinZonotope => EngineMethod::Abstract(Method::TwinZonotope),
            MethodArg::DiffZonotope => EngineMethod::Abstract(Method::DiffZonotope),
            MethodArg::DiffInterval => EngineMethod::Abstract(Method::DiffInterval),
            MethodArg::Precise => EngineMethod::Precise,
        }
    }
}

/// The arithmetic of the precise method.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ArithmeticArg {
    /// 256-bit fixed point (falls back to BigFloat where values leave its range).
    Fixed,
    /// Arbitrary-precision floating point (`--precision` bits).
    Bigfloat,
}

/// Arguments of `zonocert certify`.
#[derive(Args)]
pub struct CertifyArgs {
    #[command(flatten)]
    model: ModelArg,
    #[command(flatten)]
    question: QuestionArgs,
    #[command(flatten)]
    semantics: SemanticsArgs,
    /// Method (`auto`: `precise` for a single image, `diff-zonotope` for a ball or the
    /// global region).
    #[arg(long, value_enum, default_value = "auto")]
    method: MethodArg,
    #[command(flatten)]
    budgets: BudgetArgs,
    /// Carry the difference zonotope's boxed error terms beside it and bound them along each
    /// logit difference by reverse passes, instead of boxing them through every later layer
    /// (tighter, about 1.5× the time; always done for the rounding under `--semantics f32`).
    #[arg(long)]
    carry_errors: bool,
    /// `diff-zonotope` first runs a screening pass (difference budget 0) and skips the full
    /// pass when even logit-difference bounds this many times tighter would give no better
    /// bound than the region's probability ranges alone (reported per pixel as "screened").
    #[arg(long, default_value_t = Screen::default().factor, value_parser = positive_factor)]
    screen_factor: f64,
    /// Run the full-budget pass on every pixel (no screening).
    #[arg(long)]
    no_screen: bool,
    /// Largest first (`diff-zonotope`): certify every pixel at this difference budget first,
    /// then run the `--diff-budget` pass only on pixels whose first bound could still be the
    /// largest, in decreasing order of that bound, until the next one is no larger than the
    /// largest bound so far. Every pixel keeps a certified bound (the first pass's where the
    /// full pass did not run: `"first_pass": true`), and the largest comes from a full pass.
    /// A global question without --model sets it to half the difference budget.
    #[arg(long, value_name = "B")]
    first_budget: Option<usize>,
    /// Memory budget in MiB: generator budgets are lowered (tightness traded for memory)
    /// until the estimated peak fits; an error if it cannot.
    #[arg(long)]
    max_memory: Option<f64>,
    /// Arithmetic of `--method precise`: 256-bit fixed point (fast), or BigFloat at
    /// `--precision` bits.
    #[arg(long, value_enum, default_value = "fixed")]
    arithmetic: ArithmeticArg,
    /// Working precision in bits of `--arithmetic bigfloat` (rounded up to a multiple of 64).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(128..=4096))]
    precision: u32,
    /// Also compute the exact value (single image only, f64 execution) beside each bound.
    #[arg(long)]
    with_exact: bool,
    /// Also search for a lower bound beside each upper bound (concrete image pairs on the
    /// 8-bit grid; `precise` already gives a certified one) and report the ratio.
    #[arg(long)]
    with_lower: bool,
    /// MNIST directory: also report the largest certified `|Δ(z_c − z_j)|` divided by the
    /// median logit margin of the model on the test images (a temperature-free measure).
    #[arg(long)]
    test_margins: Option<PathBuf>,
    /// Ascent rounds per pixel of the lower-bound search.
    #[arg(long, default_value_t = 4)]
    attack_rounds: usize,
    /// Heatmap colours: `auto` is log10 of the bound when the bounds span more than two
    /// decades, linear otherwise.
    #[arg(long, value_enum, default_value = "auto")]
    scale: heatmap::Scale,
    /// Same as `--scale log`.
    #[arg(long, hide = true)]
    log_scale: bool,
    /// Output directory (report.json, bounds.csv, heatmap.png).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    refine: RefineArgs,
    /// Also write, per pixel, the difference zonotope at the input of the logit layer as
    /// `DIR/logit_input_<pixel>.npy` (float64, rows: centre, one per generator, then the error
    /// box with the carried terms; columns: the layer's inputs). A training aid: every
    /// certified `Δ(z_c − z_j)` is this zonotope through the final dense layer, so a
    /// classifier can be refitted against the bound (`training/refit_classifier.py`).
    /// Written by the certifying pass itself (no extra cost; every pixel gets the full-budget
    /// pass, screening is off), except with `--refine lp`, where a second, plain pass per
    /// pixel writes it. Methods diff-zonotope and diff-interval.
    #[arg(long, value_name = "DIR")]
    export_logit_input: Option<PathBuf>,
    /// Print the report to stdout as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Stop after this many seconds (at a 32-pixel boundary, after at least one), leaving a
    /// report marked `"complete": false` with the pixels done so far (continue with --resume).
    #[arg(long)]
    timeout: Option<f64>,
    /// Continue the run whose report is in --out: pixels already there are not redone.
    #[arg(long)]
    resume: bool,
    /// Certify only shard K of N (1-based): every N-th of the selected pixels, starting at the
    /// K-th. `zonocert merge` combines the N shard reports into the unsharded one.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
}

/// `--shard K/N`: a deterministic share of the pixel work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, 1-based.
    pub k: usize,
    /// How many shards.
    pub n: usize,
}

impl Shard {
    /// The pixels of this shard: positions K−1, K−1+N, … of the sorted selection.
    pub fn select(self, pixels: &[usize]) -> Vec<usize> {
        pixels.iter().copied().skip(self.k - 1).step_by(self.n).collect()
    }
}

/// Parses `K/N` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<Shard, String> {
    let parsed = s.split_once('/').and_then(|(k, n)| Some((k.trim().parse::<usize>().ok()?, n.trim().parse::<usize>().ok()?)));
    match parsed {
        Some((k, n)) if 1 <= k && k <= n => Ok(Shard { k, n }),
        _ => Err(format!("'{s}' is not K/N with 1 ≤ K ≤ N (e.g. 2/8)")),
    }
}

/// The median of upper/lower over pixels with a positive lower bound.
fn median_ratio(results: &[PixelEntry]) -> Option<f64> {
    let mut r: Vec<f64> = results.iter().filter_map(|d| d.lower.filter(|&l| l > 0.0).map(|l| d.upper / l)).collect();
    (!r.is_empty()).then(|| median(&mut r))
}

/// Why `--method precise` refuses a region.
const PRECISE_NEEDS_POINT: &str =
    "--method precise certifies a single image: give --mnist/--index or --image with --eps 0 (balls and the global region need an abstract method)";

/// Pixels certified between two partial reports.
const CHUNK: usize = 32;

/// A report's pixel entry from what the engine certified (no exact value yet).
fn entry(c: Certified) -> PixelEntry {
    PixelEntry {
        pixel: c.pixel,
        row: c.pixel / SIDE,
        col: c.pixel % SIDE,
        upper: c.upper,
        class: c.class,
        lower: c.lower,
        exact: None,
        screened: c.screened,
        mean_value_bound: c.mean_value_bound,
        logit_delta_bound: c.logit_delta_bound,
        overflow: c.overflow,
        first_pass: false,
    }
}

/// Checks a stored pixel entry: every field a bound depends on must make sense.
fn checked_entry(p: PixelEntry) -> Result<PixelEntry> {
    if p.pixel >= PIXELS || p.row != p.pixel / SIDE || p.col != p.pixel % SIDE {
        bail!("pixel entry {} (row {}, col {}) is not a pixel of the 28×28 grid", p.pixel, p.row, p.col);
    }
    if !(0.0..=1.0).contains(&p.upper) {
        bail!("pixel {}: no bound in [0, 1]", p.pixel);
    }
    Ok(p)
}

/// A screening factor: a finite number ≥ 1.
fn positive_factor(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 1.0 => Ok(v),
        _ => Err(format!("'{s}' is not a finite number ≥ 1")),
    }
}

/// Pixels already certified by an earlier, interrupted run of the same question: the stored
/// report's `run` record must equal `run` in every field (model hash, image hash, region,
/// ε, bit, method, budgets, screening, LP, semantics, version), or the resume is refused.
fn resumed(path: &std::path::Path, run: &RunRecord) -> Result<Vec<PixelEntry>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("--resume: reading {}", path.display())),
    };
    let v: Value = serde_json::from_slice(&text)
        .with_context(|| format!("--resume: {} is truncated or not a zonocert report; remove it or use a fresh --out", path.display()))?;
    let stored = v.get("run").and_then(Value::as_object).with_context(|| {
        format!("--resume: {} has no run record (made by another zonocert version?); use a fresh --out", path.display())
    })?;
    let expected = serde_json::to_value(run)?;
    let expected = expected.as_object().context("run record is an object")?;
    let mut fields: Vec<&String> = expected.keys().chain(stored.keys()).collect();
    fields.sort();
    fields.dedup();
    for field in fields {
        let (was, now) = (stored.get(field).unwrap_or(&Value::Null), expected.get(field).unwrap_or(&Value::Null));
        if was != now {
            bail!("--resume: {} was made with a different {field} ({was} there, {now} now); use a fresh --out, or drop --resume to overwrite it", path.display());
        }
    }
    let pixels: Vec<PixelEntry> =
        serde_json::from_value(v["pixels"].clone()).with_context(|| format!("--resume: {} has no valid pixel list", path.display()))?;
    pixels.into_iter().map(|p| checked_entry(p).with_context(|| format!("--resume: {}", path.display()))).collect()
}

/// Everything that determines a report's numbers (what `--resume` must find unchanged).
/// The run record of a certify run.
fn run_record(args: &CertifyArgs, q: (&Region, &str), engine: &Engine, model_sha256: String, lower: Option<SearchSettings>) -> RunRecord {
    let (region, origin) = q;
    let (kind, eps) = match region {
        Region::Point(_) => ("point", 0.0),
        Region::Ball(_, e) => ("ball", *e),
        Region::Global => ("global", 0.0),
    };
    RunRecord {
        zonocert_version: env!("CARGO_PKG_VERSION").to_string(),
        model_sha256,
        region_kind: kind.to_string(),
        eps,
        image: origin.to_string(),
        image_sha256: region.image().map(sha256_hex),
        bit: args.question.bit,
        method: engine.method().name().to_string(),
        settings: engine_settings(engine, args.first_budget),
        lp: engine.refiner().map(|r| format!("{:?}", r.settings())),
        lower_search: lower.map(|s| LowerSearchRecord {
            rounds: s.rounds,
            restarts: s.restarts,
            batch: s.batch,
            seed: s.seed,
            ascent_steps: s.ascent_steps,
        }),
        semantics: engine.certifier().map_or("real", |c| c.settings().semantics.name()).to_string(),
        shard: args.shard.map(|s| ShardRecord { k: s.k, n: s.n }),
    }
}

/// Runs `certify`.
pub fn run(mut args: CertifyArgs) -> Result<()> {
    let q = args.question.resolve()?;
    let (region, origin, label) = (q.region, q.origin, q.label);
    if region == Region::Global {
        certified_defaults(&mut args);
    }
    let pixels_total = q.pixels.len();
    let pixels = match args.shard {
        Some(shard) => shard.select(&q.pixels),
        None => q.pixels,
    };
    let method = checked_method(&args, &region)?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let net = args.model.load_for(args.semantics.semantics()?)?;
    let model_sha256 = args.model.sha256()?;
    check_classifier(&net)?;
    if let Some(dir) = &args.export_logit_input {
        if !matches!(method, EngineMethod::Abstract(Method::DiffZonotope | Method::DiffInterval)) {
            bail!("--export-logit-input needs --method diff-zonotope or diff-interval");
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let lp = args.refine.settings(&net)?;
    let method = match (method, lp) {
        (m, None) => m,
        // A refined run is a different method for reports, tables and --resume.
        (EngineMethod::Abstract(Method::DiffZonotope), Some(_)) => EngineMethod::DiffZonotopeLp,
        (_, Some(_)) => bail!(
            "--refine lp refines the differential analysis: use it with --method diff-zonotope (or auto on a ball or the global region)"
        ),
    };
    if let Some(b) = args.first_budget {
        if args.export_logit_input.is_some() {
            bail!("--first-budget and --export-logit-input: the export needs every pixel's full pass; drop one of them");
        }
        if method != EngineMethod::Abstract(Method::DiffZonotope) {
            bail!("--first-budget needs --method diff-zonotope without --refine lp (method here: {})", method.name());
        }
        if b >= args.budgets.diff_budget() {
            bail!("--first-budget {b} is not below the difference budget {} of the full pass", args.budgets.diff_budget());
        }
    }
    // Before the long part, so that a bad test-set directory fails at once.
    let test_stats = match &args.test_margins {
        Some(dir) => Some((dir, crate::run::test_statistics(&net, dir)?)),
        None => None,
    };
    let t0 = Instant::now();
    let engine = build_engine(&args, &net, &region, method, lp)?;
    let region_secs = t0.elapsed().as_secs_f64();
    let first_pass = match (args.first_budget, &engine) {
        (None, _) => None,
        (Some(b), Engine::Abstract(c)) if b < c.settings().diff_budget => Some(FirstPass { certifier: c, budget: b }),
        (Some(b), _) => {
            let budget = engine.certifier().map_or(0, |c| c.settings().diff_budget);
            bail!("--first-budget {b} is not below the difference budget {budget} that --max-memory left for the full pass")
        }
    };
    // The precise method's enclosure already has a certified lower end: search only otherwise.
    let lower_exec = (args.with_lower && method != EngineMethod::Precise).then(|| Executor::<f64>::new(&net));
    let search_settings = SearchSettings::per_pixel(args.attack_rounds);
    let run = run_record(&args, (&region, &origin), &engine, model_sha256, lower_exec.is_some().then_some(search_settings));
    let job = Job { args: &args, region: &region, region_record: region_record(&region, &origin, label), run: &run, t0 };
    let score = PairScore::new(&net, args.semantics.semantics()?);
    let lower = lower_exec.as_ref().map(|exec| (exec, search_settings, &score));
    let (results, finished) = job.certify_pixels(&pixels, &engine, lower, first_pass)?;
    if let (Some(dir), Engine::Refined(..)) = (&args.export_logit_input, &engine) {
        // A refined engine's pass is not the plain one: the export runs its own.
        export_logit_inputs(dir, &engine, &results)?;
    }
    let entries = with_exact(results, &net, &region, args.with_exact.then_some(args.question.bit));
    let secs = t0.elapsed().as_secs_f64();
    let (pictured, heatmap) = job.pictures(&entries, &origin)?;
    let summary = summarise(&entries);
    let report = Report {
        complete: finished && entries.len() == pixels.len(),
        pixels_requested: pixels.len(),
        model: args.model.path().display().to_string(),
        method: run.method.clone(),
        region: job.region_record.clone(),
        bit: args.question.bit,
        flip_size: (1u32 << args.question.bit) as f64 / 255.0,
        semantics: match engine.certifier().map(|c| c.settings().semantics) {
            Some(Semantics::F32(m)) => {
                format!("{SEMANTICS_F32} (K = {}{})", m.ulp, if m.same_order { ", same order for both images" } else { "" })
            }
            _ => SEMANTICS.to_string(),
        },
        settings: report_settings(&run, &engine),
        pixels: entries,
        run: run.clone(),
        shard: args.shard.map(|s| ShardTotal { k: s.k, n: s.n, pixels_total }),
        image_hex: pictured.image.as_deref().map(hex),
        time_s: secs,
        peak_rss_mib: peak_rss_mib(),
        machine: machine(),
        region_analysis_s: region_secs,
        region_peak_generators: engine.certifier().map_or(0, |c| c.region_analysis().peak_generators),
        flip_hull_bound: engine.certifier().and_then(|c| c.flip_hull_bound()),
        refinement: engine.refiner().map(|r| crate::refine::report(&net, r.window(), &r.stats())),
        heatmap,
        max_upper: summary.max_upper,
        max_pixel: summary.max_pixel,
        max_lower: summary.max_lower,
        median_ratio_upper_over_lower: summary.median_ratio_upper_over_lower,
        screened_pixels: summary.screened_pixels,
        overflow_pixels: summary.overflow_pixels,
        first_pass_pixels: summary.first_pass_pixels,
        max_logit_delta_bound: summary.max_logit_delta_bound,
        temperature_free: match (test_stats, summary.max_logit_delta_bound) {
            (Some((dir, stats)), Some(bound)) => Some(temperature_free(dir, &stats, bound)),
            (Some(_), None) => bail!("--test-margins: some pixel has no finite logit-difference bound (an overflow, or method precise)"),
            (None, _) => None,
        },
        merged_from: vec![],
    };
    job.finish(&report, &origin, secs)
}

/// `--region global` without `--model`: the certified model with its certificate's settings
/// ([`crate::common::certified_defaults`]), and for `diff-zonotope` largest first from half
/// the difference budget where the command line left it out; says so on stderr.
fn certified_defaults(args: &mut CertifyArgs) {
    if !crate::common::certified_defaults(&mut args.model, &mut args.budgets, &mut args.carry_errors) {
        return;
    }
    let diff_zonotope = matches!(args.method, MethodArg::Auto | MethodArg::DiffZonotope);
    if diff_zonotope && args.refine.refine == RefineArg::None && args.export_logit_input.is_none() {
        args.first_budget.get_or_insert(args.budgets.diff_budget() / 2);
    }
    if !args.quiet && !args.json {
        let extra = args.first_budget.map(|b| format!(" --first-budget {b}")).unwrap_or_default();
        eprintln!("{}", crate::common::certified_defaults_note(&args.model, &args.budgets, &extra));
    }
}

/// `--export-logit-input` after a refined run: each certified pixel's difference zonotope at
/// the logit layer's input, from a second (plain) differential pass.
fn export_logit_inputs(dir: &std::path::Path, engine: &Engine, results: &[PixelEntry]) -> Result<()> {
    let certifier = engine.certifier().context("--export-logit-input: no differential analysis in this run")?;
    results.par_iter().try_for_each(|r| write_logit_input(dir, r.pixel, certifier.logit_input_difference(r.pixel)))
}

/// Writes pixel `pixel`'s exported difference as `DIR/logit_input_<pixel>.npy` (see the
/// option); `None` (nothing to export) is an error naming the pixel.
fn write_logit_input(dir: &std::path::Path, pixel: usize, z: Option<Zonotope>) -> Result<()> {
    let z = z.with_context(|| {
        format!("--export-logit-input: pixel {pixel}: the logits do not come from a dense layer, or the region overflowed")
    })?;
    let dim = z.dim();
    let mut data = z.centre;
    data.extend_from_slice(&z.gens);
    data.extend_from_slice(&z.err);
    write_atomic(&dir.join(format!("logit_input_{pixel}.npy")), &npy_f64(data.len() / dim, dim, &data))
}

/// The report's pixel entries; with `exact_bit`, on a single image, each with the exact value
/// (`--with-exact`).
fn with_exact(mut entries: Vec<PixelEntry>, net: &Network, region: &Region, exact_bit: Option<u8>) -> Vec<PixelEntry> {
    if let (Region::Point(px), Some(bit)) = (region, exact_bit) {
        let exec = Executor::<f64>::new(net);
        let exact: Vec<f64> = entries.par_iter().map(|r| exact_point(&exec, px, r.pixel, bit).0).collect();
        for (e, x) in entries.iter_mut().zip(exact) {
            e.exact = Some(x);
        }
    }
    entries
}

/// What `semantics` says in every report.
/// What the numbers are about with `--semantics f32`.
const SEMANTICS_F32: &str = "upper bounds on max over x in region, class c of |p_c(x with the bit flipped) - p_c(x)| for every float32 execution of the graph, its input conversion b/255 and the final softmax, in which each operation is correctly rounded to nearest with gradual underflow, every sum is accumulated in any order, and sigmoid and exp are within K units (README, What is certified); 'lower': with --with-lower, the change a concrete image pair found by search makes under one float32 execution (zonocert's executor in f32, its float32 softmax)";

const SEMANTICS: &str = "upper bounds on max over x in region, class c of |p_c(x with the bit flipped) - p_c(x)| for the real-valued function the model's weights define; the analysis's own rounding is accounted for; 'lower': with method precise, a certified lower bound on the same exact value; with --with-lower and another method, the value attained by a concrete image pair in the region found by search (evaluated in f64)";

/// The method `--method` resolves to on `region`, and the options that need a single image.
fn checked_method(args: &CertifyArgs, region: &Region) -> Result<EngineMethod> {
    let method = args.method.engine().resolve(region, args.semantics.semantics()?);
    let single = matches!(region, Region::Point(_));
    if method == EngineMethod::Precise && !single {
        bail!("{PRECISE_NEEDS_POINT}");
    }
    if args.with_exact && !single {
        bail!("--with-exact needs a single image (--eps 0)");
    }
    Ok(method)
}

/// The engine `method` names, with the command line's budgets (fitted to `--max-memory`),
/// screening, arithmetic and LP settings.
fn build_engine<'a>(
    args: &CertifyArgs,
    net: &'a Network,
    region: &Region,
    method: EngineMethod,
    lp: Option<LpSettings>,
) -> Result<Engine<'a>> {
    let (region_budget, diff_budget) = match (args.max_memory, method) {
        (Some(mib), EngineMethod::Abstract(_) | EngineMethod::DiffZonotopeLp) => {
            budgets_within(net, args.budgets.region_budget(), args.budgets.diff_budget(), rayon::current_num_threads(), mib)?
        }
        _ => (args.budgets.region_budget(), args.budgets.diff_budget()),
    };
    let settings = EngineSettings {
        bit: args.question.bit,
        region_budget,
        diff_budget,
        screen: (!args.no_screen).then_some(Screen { factor: args.screen_factor, ..Screen::default() }),
        arithmetic: match args.arithmetic {
            ArithmeticArg::Fixed => Arithmetic::Fixed,
            ArithmeticArg::Bigfloat => Arithmetic::BigFloat(args.precision as usize),
        },
        lp: lp.unwrap_or_default(),
        semantics: args.semantics.semantics()?,
        carry_errors: args.carry_errors,
        region_backsub: args.budgets.region_backsub,
        diff_backsub: args.budgets.diff_backsub,
    };
    Ok(Engine::new(net, region, method, &settings)?)
}

/// The report's settings: the run record's, plus what the run found out on the way.
fn report_settings(run: &RunRecord, engine: &Engine) -> EngineRecord {
    match (&run.settings, engine.precise()) {
        (EngineRecord::Precise { arithmetic, precision_bits, .. }, Some(c)) => EngineRecord::Precise {
            arithmetic: arithmetic.clone(),
            precision_bits: *precision_bits,
            fallbacks_to_bigfloat: Some(c.fallbacks()),
        },
        (settings, _) => settings.clone(),
    }
}

/// The engine's settings as the run record states them.
fn engine_settings(engine: &Engine, first_budget: Option<usize>) -> EngineRecord {
    match (engine.certifier(), engine.precise()) {
        (_, Some(c)) => EngineRecord::Precise {
            arithmetic: c.arithmetic_name().to_string(),
            precision_bits: if c.arithmetic_name() == "fixed-256" { 256 } else { c.precision() },
            fallbacks_to_bigfloat: None,
        },
        (c, None) => {
            let s = c.map(|c| c.settings()).unwrap_or_default();
            EngineRecord::Abstract {
                region_budget: s.region_budget,
                diff_budget: s.diff_budget,
                carry_errors: s.carry_errors,
                region_backsub: s.region_backsub,
                diff_backsub: s.diff_backsub,
                screen: s
                    .screen
                    .filter(|_| engine.method() == EngineMethod::Abstract(Method::DiffZonotope))
                    .map(|s| ScreenRecord { budget: s.budget, factor: s.factor }),
                first_budget,
            }
        }
    }
}

/// The region as reports describe it.
fn region_record(region: &Region, origin: &str, label: Option<u8>) -> RegionRecord {
    match region {
        Region::Point(_) => RegionRecord::Point { image: origin.to_string(), label, eps: 0.0 },
        Region::Ball(_, e) => RegionRecord::Ball { image: origin.to_string(), label, eps: *e },
        Region::Global => RegionRecord::Global,
    }
}

/// `--first-budget`: the certifier whose full pass the second stage runs, and the first
/// pass's difference budget.
#[derive(Clone, Copy)]
struct FirstPass<'a, 'n> {
    certifier: &'a zonocert_transform::sensitivity::Certifier<'n>,
    budget: usize,
}

/// One certify run's fixed facts, shared by its steps.
struct Job<'a> {
    args: &'a CertifyArgs,
    region: &'a Region,
    region_record: RegionRecord,
    run: &'a RunRecord,
    t0: Instant,
}

impl Job<'_> {
    /// Certifies `pixels` (those a resumed report lacks) in chunks, writing a partial report
    /// after each; with `first`, then runs the full pass on the pixels whose first bound could
    /// still be the largest. Returns every pixel's result, sorted, resumed ones included, and
    /// whether the run finished (not stopped by `--timeout`).
    fn certify_pixels(
        &self,
        pixels: &[usize],
        engine: &Engine,
        lower: Option<(&Executor<f64>, SearchSettings, &PairScore)>,
        first: Option<FirstPass>,
    ) -> Result<(Vec<PixelEntry>, bool)> {
        let args = self.args;
        let mut results: Vec<PixelEntry> = if args.resume { resumed(&args.out.join("report.json"), self.run)? } else { vec![] };
        results.retain(|d| pixels.contains(&d.pixel));
        let todo: Vec<usize> = pixels.iter().copied().filter(|p| !results.iter().any(|d| d.pixel == *p)).collect();
        let deadline = args.timeout.map(|t| self.t0 + std::time::Duration::from_secs_f64(t.max(0.0)));
        let past_deadline = || deadline.is_some_and(|d| Instant::now() >= d);
        let bar = progress_bar(pixels.len() as u64, if first.is_some() { "pixels (first pass)" } else { "pixels" }, args.quiet);
        bar.set_position(results.len() as u64);
        // Chunks bound how much work an interruption can lose: after each one a partial report
        // (complete: false) replaces the previous one atomically.
        for (k, chunk) in todo.chunks(CHUNK).enumerate() {
            // The first chunk always runs, so a stopped run always leaves a report.
            if k > 0 && past_deadline() {
                break;
            }
            let part: Vec<PixelEntry> = chunk
                .par_iter()
                .map(|&i| -> Result<PixelEntry> {
                    let certified = match (&args.export_logit_input, engine, &first) {
                        // One pass both certifies and yields the exported difference.
                        (Some(dir), Engine::Abstract(c), _) => {
                            let (bound, z) = c.pixel_with_logit_input(i);
                            write_logit_input(dir, i, z)?;
                            bound.into()
                        }
                        (_, _, Some(f)) => f.certifier.pixel_at_budget(i, None, f.budget).into(),
                        _ => engine.certify(i),
                    };
                    let mut d = entry(certified);
                    d.first_pass = first.is_some();
                    if let (None, Some((exec, settings, score))) = (d.lower, lower) {
                        let bit = args.question.bit;
                        d.lower = Some(score.of(&search(exec, self.region, i, bit, settings), bit));
                    }
                    bar.inc(1);
                    Ok(d)
                })
                .collect::<Result<_>>()?;
            results.extend(part);
            self.save_partial(&results, pixels.len())?;
        }
        bar.finish_and_clear();
        let mut finished = results.len() == pixels.len();
        if let (Some(f), true) = (first, finished) {
            finished = self.refine_largest(&mut results, f, pixels.len(), &past_deadline)?;
        }
        results.sort_by_key(|r| r.pixel);
        Ok((results, finished))
    }

    /// `--first-budget`'s second stage: full passes on first-pass pixels in decreasing order of
    /// their bound, while that bound exceeds the largest full-pass bound so far (a pixel below
    /// it cannot hold the largest bound). Each pixel keeps the smaller of its two bounds (both
    /// are certified; the full pass is not always the tighter). Resumable: the stage restarts
    /// from the entries' `first_pass` flags. Returns false if `--timeout` stopped it.
    fn refine_largest(&self, results: &mut [PixelEntry], first: FirstPass, total: usize, past_deadline: &dyn Fn() -> bool) -> Result<bool> {
        let mut largest = results.iter().filter(|d| !d.first_pass).map(|d| d.upper).fold(0.0, f64::max);
        let mut order: Vec<usize> = (0..results.len()).filter(|&k| results[k].first_pass).collect();
        order.sort_by(|&a, &b| results[b].upper.total_cmp(&results[a].upper));
        // One pixel per thread at a time: the threshold rises after every batch, so few full
        // passes go to pixels that a later threshold would have skipped.
        let batch = rayon::current_num_threads().max(1);
        let bar = progress_bar(order.len() as u64, "full passes (largest first)", self.args.quiet);
        let mut done = 0;
        while done < order.len() && results[order[done]].upper > largest {
            if past_deadline() {
                bar.finish_and_clear();
                return Ok(false);
            }
            let take: Vec<usize> = order[done..].iter().copied().take(batch).filter(|&k| results[k].upper > largest).collect();
            let full: Vec<Certified> = take.par_iter().map(|&k| first.certifier.pixel(results[k].pixel).into()).collect();
            for (&k, certified) in take.iter().zip(full) {
                let d = &mut results[k];
                if certified.upper < d.upper {
                    let lower = d.lower;
                    *d = PixelEntry { lower, ..entry(certified) };
                }
                d.first_pass = false;
                largest = largest.max(d.upper);
            }
            done += batch.min(order.len() - done);
            bar.set_position(done as u64);
            self.save_partial(results, total)?;
        }
        bar.finish_and_clear();
        Ok(true)
    }

    /// Replaces `report.json` by a partial report (`"complete": false`) holding `results`.
    fn save_partial(&self, results: &[PixelEntry], requested: usize) -> Result<()> {
        let partial = PartialReport {
            complete: false,
            model: self.args.model.path().display().to_string(),
            method: self.run.method.clone(),
            region: self.region_record.clone(),
            bit: self.args.question.bit,
            pixels: results.to_vec(),
            pixels_requested: requested,
            run: self.run.clone(),
        };
        write_atomic(&self.args.out.join("report.json"), serde_json::to_string_pretty(&partial)?.as_bytes())
    }

    /// Writes `bounds.csv` and the heatmap; returns what was pictured and the heatmap's record.
    fn pictures(&self, entries: &[PixelEntry], origin: &str) -> Result<(Pictured, HeatmapRecord)> {
        let args = self.args;
        let model_name = args.model.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let region_text = match self.region {
            Region::Point(_) => format!("{origin}, eps 0"),
            Region::Ball(_, e) => format!("{origin}, eps {:.4} ({:.2}/255)", e, e * 255.0),
            Region::Global => "global region".to_string(),
        };
        let title = format!("{model_name} | {region_text} | {} | bit {}", self.run.method, args.question.bit);
        let scale = if args.log_scale { heatmap::Scale::Log } else { args.scale };
        let pictured = Pictured { image: self.region.image().map(<[u8]>::to_vec), title, scale };
        let heatmap = write_outputs(&args.out, entries, &pictured)?;
        Ok((pictured, heatmap))
    }

    /// Writes the finished report and prints its summary; an incomplete run (`--timeout`) is
    /// an error that says how to continue.
    fn finish(&self, report: &Report, origin: &str, secs: f64) -> Result<()> {
        let args = self.args;
        let report_path = args.out.join("report.json");
        let text = serde_json::to_string_pretty(report)?;
        write_atomic(&report_path, text.as_bytes())?;
        let done = report.pixels.len();
        if args.json {
            println!("{text}");
        } else {
            print_summary(report, origin, secs);
            if report.screened_pixels > 0 {
                println!(
                    "{} of {} pixels screened: the cheap pass showed that a full pass {:e} times tighter would still certify nothing, so it was skipped (--no-screen runs it)",
                    report.screened_pixels,
                    done,
                    args.screen_factor
                );
            }
            println!("wrote {}/{{report.json, bounds.csv, heatmap.png}}", args.out.display());
        }
        if !report.complete {
            bail!(
                "--timeout reached: {} holds {} of {} pixels (\"complete\": false); rerun with --resume to continue",
                report_path.display(),
                done,
                report.pixels_requested
            );
        }
        Ok(())
    }
}

/// What a report's heatmap shows: the image, the title and the colour scale.
pub struct Pictured {
    /// The region's image bytes (point and ball regions).
    pub image: Option<Vec<u8>>,
    /// The heatmap's title.
    pub title: String,
    /// The colour scale asked for.
    pub scale: heatmap::Scale,
}

/// Writes `bounds.csv` and `heatmap.png` for the pixel entries of a report (sorted by pixel);
/// returns the report's `heatmap` entry. `certify` and `merge` share it, so a merged run's
/// files equal an unsharded run's.
pub fn write_outputs(out: &std::path::Path, entries: &[PixelEntry], pictured: &Pictured) -> Result<HeatmapRecord> {
    let mut csv = String::from("pixel,row,col,upper,class,exact,lower,pass\n");
    let mut grid = vec![None; PIXELS];
    for d in entries {
        let d = checked_entry(*d)?;
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:e}")).unwrap_or_default();
        // Which pass gave `upper` (the report's per-pixel flags, for readers of the CSV alone).
        let pass = match (d.overflow, d.screened, d.first_pass) {
            (true, _, _) => "overflow",
            (_, true, _) => "screened",
            (_, _, true) => "first",
            _ => "full",
        };
        csv.push_str(&format!("{},{},{},{:e},{},{},{},{pass}\n", d.pixel, d.row, d.col, d.upper, d.class, fmt(d.exact), fmt(d.lower)));
        grid[d.pixel] = Some(d.upper);
    }
    let drawn = heatmap::write(&out.join("heatmap.png"), &grid, pictured.image.as_deref(), pictured.scale, &pictured.title)?;
    write_atomic(&out.join("bounds.csv"), csv.as_bytes())?;
    Ok(HeatmapRecord {
        file: "heatmap.png".to_string(),
        width: drawn.width,
        height: drawn.height,
        colour_map: "viridis".to_string(),
        log_scale: drawn.log,
        min: drawn.min,
        max: drawn.max,
        blocks: drawn.blocks.map(|(row_step, col_step)| BlocksRecord { row_step, col_step }),
        title: pictured.title.clone(),
        scale: format!("{:?}", pictured.scale).to_lowercase(),
    })
}

/// The report's summary fields computed from its pixel entries.
pub fn summarise(entries: &[PixelEntry]) -> Summary {
    let best = entries.iter().fold(None, |b: Option<&PixelEntry>, d| if b.is_none_or(|b| d.upper > b.upper) { Some(d) } else { b });
    Summary {
        max_upper: best.map(|d| d.upper),
        max_pixel: best.map(|d| d.pixel),
        max_lower: entries.iter().filter_map(|r| r.lower).fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.max(l)))),
        median_ratio_upper_over_lower: median_ratio(entries),
        screened_pixels: entries.iter().filter(|r| r.screened).count(),
        overflow_pixels: entries.iter().filter(|r| r.overflow).count(),
        first_pass_pixels: entries.iter().filter(|r| r.first_pass).count(),
        max_logit_delta_bound: entries
            .iter()
            .map(|r| r.logit_delta_bound)
            .try_fold(0.0, |m: f64, d| d.map(|d| m.max(d)))
            .filter(|_| !entries.is_empty()),
    }
}

/// The terminal line of a finished report.
pub fn print_summary(report: &Report, origin: &str, secs: f64) {
    let pixel = report.max_pixel.unwrap_or(0);
    println!(
        "{} pixels, method {}, region {origin}: max certified |Δp| = {:.6e} at pixel {pixel} (row {}, col {}), {secs:.1} s",
        report.pixels.len(),
        report.method,
        report.max_upper.unwrap_or(f64::NAN),
        pixel / SIDE,
        pixel % SIDE,
    );
    if let Some(hull) = report.flip_hull_bound {
        let binding = report.pixels.iter().filter(|p| p.upper >= hull).count();
        println!("every pixel's bound is at most the flip hull's {hull:.6e} (f32: the image with all its flips, one forward analysis); {binding} pixels take it");
    }
    if let (Some(t), Some(bound)) = (&report.temperature_free, report.max_logit_delta_bound) {
        println!(
            "max certified |Δ(z_c − z_j)| = {bound:.4e}; median test logit margin {:.4} ({} images, accuracy {:.4}): ratio {:.4e}",
            t.median_test_logit_margin, t.test_images, t.test_accuracy, t.ratio
        );
    }
}

/// The report's temperature-free measure: `bound` against the model's median test logit margin.
fn temperature_free(dir: &std::path::Path, stats: &crate::run::TestStatistics, bound: f64) -> TemperatureFree {
    TemperatureFree {
        test_set: dir.display().to_string(),
        test_images: stats.images,
        median_test_logit_margin: stats.median_logit_margin,
        median_test_max_probability: stats.median_max_probability,
        test_accuracy: stats.accuracy,
        ratio: bound / stats.median_logit_margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        certify: CertifyArgs,
    }

    /// What `run` does to the arguments of a global question.
    fn defaults(argv: &[&str]) -> CertifyArgs {
        let mut args =
            Cli::try_parse_from([&["certify", "--quiet", "--out", "o", "--region", "global"][..], argv].concat()).expect("parses").certify;
        certified_defaults(&mut args);
        args
    }

    /// Without `--model` a global question certifies the certified model with its
    /// certificate's settings, largest first from half the difference budget (not where that
    /// cannot run: another method, LP refinement, the logit-input export); options given on the
    /// command line still win, and an explicit `--model` (even the shipped one) changes
    /// nothing.
    #[test]
    fn a_global_question_defaults_to_the_certified_model_and_its_settings() {
        let a = defaults(&[]);
        assert_eq!(a.model.path(), std::path::Path::new(crate::common::CERTIFIED_MODEL));
        assert_eq!((a.budgets.region_budget(), a.budgets.diff_budget(), a.first_budget), (1024, 4096, Some(2048)));
        assert!(a.carry_errors && a.budgets.region_backsub && !a.budgets.diff_backsub);
        let b = defaults(&["--diff-budget", "1024", "--first-budget", "64"]);
        assert_eq!((b.budgets.region_budget(), b.budgets.diff_budget(), b.first_budget), (1024, 1024, Some(64)));
        let c = defaults(&["--diff-budget", "100"]);
        assert_eq!(c.first_budget, Some(50));
        for other in [&["--method", "diff-interval"][..], &["--refine", "lp"], &["--export-logit-input", "d"]] {
            assert_eq!(defaults(other).first_budget, None, "{other:?}");
        }
        let d = defaults(&["--model", crate::common::DEFAULT_MODEL]);
        assert_eq!(d.model.path(), std::path::Path::new(crate::common::DEFAULT_MODEL));
        assert_eq!((d.budgets.region_budget(), d.budgets.diff_budget(), d.first_budget), (512, 256, None));
        assert!(!d.carry_errors && !d.budgets.region_backsub);
    }
}
