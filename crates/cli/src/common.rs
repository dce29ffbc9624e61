//! Arguments and helpers shared by the subcommands.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use zonocert_network::data::PIXELS;
use zonocert_network::{data, onnx, passes, Network};
use zonocert_transform::float32::Semantics;
use zonocert_transform::sensitivity::{Region, Settings};

/// The model shipped with zonocert, relative to the repository root.
pub const DEFAULT_MODEL: &str = "models/efficientnet_b0_mnist.onnx";

/// The certified model (`models/CERTIFIED_CARD.md`): the default of `certify` and `curve` over
/// the global region.
pub const CERTIFIED_MODEL: &str = "models/efficientnet_b0_mnist_certified.onnx";

/// `--model`.
#[derive(Args, Clone)]
pub struct ModelArg {
    /// ONNX model (N×1×28×28 input in [0, 1], 10 logits out) [default: the shipped model,
    /// models/efficientnet_b0_mnist.onnx; for certify and curve with --region global, the
    /// certified model, models/efficientnet_b0_mnist_certified.onnx]
    #[arg(long)]
    model: Option<PathBuf>,
    /// `--model` was left out of a global question: the certified model stands in.
    #[arg(skip)]
    certified_default: bool,
}

/// The shipped and the certified model, embedded so that an installed binary (`cargo install
/// --path crates/cli`) certifies them from any directory: used when `--model` is left out and
/// no such file exists where the command runs.
const EMBEDDED_MODEL: &[u8] = include_bytes!("../../../models/efficientnet_b0_mnist.onnx");
const EMBEDDED_CERTIFIED_MODEL: &[u8] = include_bytes!("../../../models/efficientnet_b0_mnist_certified.onnx");

impl ModelArg {
    /// The model file's path (the default's when `--model` was left out).
    pub fn path(&self) -> &Path {
        match (&self.model, self.certified_default) {
            (Some(p), _) => p,
            (None, false) => Path::new(DEFAULT_MODEL),
            (None, true) => Path::new(CERTIFIED_MODEL),
        }
    }

    /// For a global question: the certified model stands in for a left-out `--model`.
    /// Returns whether it did.
    pub fn default_to_certified(&mut self) -> bool {
        self.certified_default = self.model.is_none();
        self.certified_default
    }

    /// The model file's bytes (the embedded model for a left-out `--model` whose file is not
    /// where the command runs).
    fn bytes(&self) -> Result<std::borrow::Cow<'static, [u8]>> {
        let path = self.path();
        match std::fs::read(path) {
            Ok(b) => Ok(std::borrow::Cow::Owned(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.model.is_none() => {
                Ok(std::borrow::Cow::Borrowed(if self.certified_default { EMBEDDED_CERTIFIED_MODEL } else { EMBEDDED_MODEL }))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read model file {} (pass an ONNX file with --model)", path.display())),
        }
    }

    /// Loads and imports the model, with the path in any error.
    pub fn load(&self) -> Result<Network> {
        let bytes = self.bytes()?;
        let net = onnx::load_bytes(&bytes, self.path()).with_context(|| format!("loading model {}", self.path().display()))?;
        Ok(net)
    }

    /// [`ModelArg::load`] for an analysis under `semantics`: over the reals, residual branches
    /// that end in an all-zero convolution are removed first (`passes::drop_zero_branches`:
    /// they contribute exactly 0, and are most of an identity-block B0's analysis time); a
    /// float32 execution keeps them (`0·∞` is a NaN there).
    pub fn load_for(&self, semantics: Semantics) -> Result<Network> {
        let net = self.load()?;
        Ok(match semantics {
            Semantics::Real => passes::drop_zero_branches(net).0,
            Semantics::F32(_) => net,
        })
    }

    /// The SHA-256 of the model file (what a report is bound to).
    pub fn sha256(&self) -> Result<String> {
        Ok(sha256_hex(&self.bytes()?))
    }
}

/// Where one image comes from: an MNIST test image or a PNG file.
#[derive(Args, Clone)]
pub struct ImageArg {
    /// Directory holding the MNIST IDX files (t10k-images-idx3-ubyte[.gz], …).
    #[arg(long, requires = "index", conflicts_with = "image")]
    pub mnist: Option<PathBuf>,
    /// Index of the test image (0-based) when reading from --mnist.
    #[arg(long, requires = "mnist")]
    pub index: Option<usize>,
    /// A 28×28 8-bit greyscale PNG.
    #[arg(long)]
    pub image: Option<PathBuf>,
}

/// One image's bytes and, for MNIST, its label.
pub struct Image {
    /// 784 bytes, row-major.
    pub pixels: Vec<u8>,
    /// The label, when known.
    pub label: Option<u8>,
    /// Human-readable origin for reports.
    pub origin: String,
}

impl ImageArg {
    /// True when an image source was given.
    pub fn given(&self) -> bool {
        self.image.is_some() || self.mnist.is_some()
    }

    /// Reads the selected image.
    pub fn load(&self) -> Result<Image> {
        if let Some(p) = &self.image {
            let pixels = data::read_png(p)?;
            return Ok(Image { pixels, label: None, origin: p.display().to_string() });
        }
        match (&self.mnist, self.index) {
            (Some(dir), Some(i)) => {
                let set = load_mnist(dir)?;
                let pixels = set.image(i)?.to_vec();
                Ok(Image { pixels, label: Some(set.labels[i]), origin: format!("mnist test #{i}") })
            }
            _ => anyhow::bail!("no image given: pass --image F.png, or --mnist DIR --index I"),
        }
    }
}

/// Loads the MNIST test split with the directory in any error.
pub fn load_mnist(dir: &Path) -> Result<data::Mnist> {
    data::Mnist::test(dir).with_context(|| format!("reading MNIST test set from {}", dir.display()))
}

/// Checks the model maps one 1×28×28 image to a vector of class scores.
pub fn check_classifier(net: &Network) -> Result<usize> {
    if net.input_shape != [1, 28, 28] {
        anyhow::bail!("model input is {:?} per sample; zonocert expects 1×28×28 (MNIST)", net.input_shape);
    }
    match net.output_shape().as_slice() {
        [k] if *k >= 2 => Ok(*k),
        other => anyhow::bail!("model output is {other:?} per sample; expected a vector of class scores"),
    }
}

/// Writes a file through a temporary sibling and a rename, so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("out")));
    let written = std::fs::write(&tmp, bytes)
        .with_context(|| format!("writing {}", tmp.display()))
        .and_then(|()| std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display())));
    if written.is_err() {
        // Never leave a partial file behind (the temporary may not exist: ignore that).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A row-major `rows × cols` float64 matrix as NumPy `.npy` (format 1.0) bytes.
pub fn npy_f64(rows: usize, cols: usize, data: &[f64]) -> Vec<u8> {
    debug_assert_eq!(data.len(), rows * cols);
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + 8 * data.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    out
}

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which region: every image, or one image / a ball around it.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum RegionArg {
    /// Every 28×28 image: [0, 1]^784.
    Global,
}

/// Which computation the certified numbers are about.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum SemanticsArg {
    /// The real-valued function the weights define.
    Real,
    /// Any float32 execution of the graph (README, § What is certified).
    F32,
}

/// The abstract analyses' generator budgets and the region analysis's reverse passes
/// (`certify`, `bench`, `curve`).
#[derive(Args, Clone, Copy, Debug)]
pub struct BudgetArgs {
    /// Generator budget of the region zonotope [default: 512; 1024 for the certified model's
    /// global default]
    #[arg(long)]
    region_budget: Option<usize>,
    /// Generator budget of the difference zonotope [default: 256; 4096 for the certified
    /// model's global default]
    #[arg(long)]
    diff_budget: Option<usize>,
    /// The region's forward analysis bounds the error terms of each activation's and
    /// product's input by reverse passes through the linear parts of the layers before it
    /// (back-substitution), instead of growing them by |W| at every layer: much tighter value
    /// ranges over large regions (the global one above all), once per region, at the cost of
    /// one reverse pass per such neuron.
    #[arg(long)]
    pub region_backsub: bool,
    /// Each pixel's difference analysis bounds its carried term (the error terms beyond
    /// --diff-budget, and the float32 rounding) again by reverse passes wherever it widens an
    /// activation's or product's relaxation by more than 5 % of the neuron's difference, instead
    /// of boxing it through every layer (each boxed term then reaches the neuron as if it were
    /// a generator of its own), at the cost of one reverse pass per such neuron per pixel.
    /// Implies --carry-errors.
    #[arg(long)]
    pub diff_backsub: bool,
}

impl BudgetArgs {
    /// The region zonotope's generator budget.
    pub fn region_budget(&self) -> usize {
        self.region_budget.unwrap_or(Settings::default().region_budget)
    }

    /// The difference zonotope's generator budget.
    pub fn diff_budget(&self) -> usize {
        self.diff_budget.unwrap_or(Settings::default().diff_budget)
    }

    /// The settings of the certified model's certificate where the command line left them
    /// out: budgets 1,024 and 4,096, and `--region-backsub`.
    pub fn certified_defaults(&mut self) {
        self.region_budget.get_or_insert(1024);
        self.diff_budget.get_or_insert(4096);
        self.region_backsub = true;
    }
}

/// A global question (`certify`, `curve`) without `--model`: the certified model stands in,
/// with its certificate's settings (budgets 1,024 and 4,096, `--region-backsub`,
/// `--carry-errors`) wherever the command line left them out. Returns whether it applied.
pub fn certified_defaults(model: &mut ModelArg, budgets: &mut BudgetArgs, carry_errors: &mut bool) -> bool {
    if !model.default_to_certified() {
        return false;
    }
    budgets.certified_defaults();
    *carry_errors = true;
    true
}

/// What [`certified_defaults`] applied, for stderr (`extra`: further options it set).
pub fn certified_defaults_note(model: &ModelArg, budgets: &BudgetArgs, extra: &str) -> String {
    format!(
        "--region global without --model: {} with its certificate's settings (--region-budget {} --diff-budget {} --carry-errors --region-backsub{extra})",
        model.path().display(),
        budgets.region_budget(),
        budgets.diff_budget()
    )
}

/// `--semantics` and the parameters of the float32 model.
#[derive(Args, Clone, Copy, Debug)]
pub struct SemanticsArgs {
    /// `real`: the real-valued function of the weights; `f32`: any float32 execution of the
    /// graph (correctly rounded operations, sums in any order, sigmoid and exp within --ulp).
    #[arg(long, value_enum, default_value = "real")]
    pub semantics: SemanticsArg,
    /// With --semantics f32: the error of sigmoid in units of 2^-23 and of exp in ulps.
    #[arg(long, default_value_t = zonocert_transform::float32::F32Model::default().ulp)]
    pub ulp: f64,
    /// With --semantics f32: the two images of a pair run through the same kernels in the same
    /// order, so neurons whose inputs do not differ round alike (tighter; an assumption about
    /// how the model is run).
    #[arg(long)]
    pub f32_same_order: bool,
    /// With --semantics f32: `keep` (gradual underflow, the IEEE default) or `flush` (results
    /// below 2^-126 flushed to zero and subnormal weights read as zero, FTZ/DAZ).
    #[arg(long, value_enum, default_value = "keep")]
    pub subnormals: SubnormalsArg,
}

/// How a float32 execution treats subnormal numbers.
#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
pub enum SubnormalsArg {
    /// Gradual underflow (IEEE 754 default).
    Keep,
    /// Flush to zero / denormals are zero.
    Flush,
}

impl SemanticsArgs {
    /// The library's semantics.
    pub fn semantics(&self) -> Result<Semantics> {
        use zonocert_transform::float32::F32Model;
        // The values themselves are checked with the network (`F32Model::check`).
        let f32_options = self.ulp != F32Model::default().ulp || self.f32_same_order || self.subnormals != SubnormalsArg::Keep;
        if self.semantics == SemanticsArg::Real && f32_options {
            bail!("--ulp, --f32-same-order and --subnormals describe a float32 execution: they need --semantics f32");
        }
        Ok(match self.semantics {
            SemanticsArg::Real => Semantics::Real,
            SemanticsArg::F32 => Semantics::F32(F32Model {
                ulp: self.ulp,
                same_order: self.f32_same_order,
                flush_subnormals: self.subnormals == SubnormalsArg::Flush,
            }),
        })
    }
}

/// The question shared by `certify` and `attack`: region, flipped bit, pixels.
#[derive(Args, Clone)]
pub struct QuestionArgs {
    #[command(flatten)]
    pub image: ImageArg,
    /// `global`: every image (no --image/--mnist needed).
    #[arg(long, value_enum, conflicts_with_all = ["image", "mnist"])]
    pub region: Option<RegionArg>,
    /// L∞ radius of the ball around the image ([0, 1] scale); 0 = the image alone.
    #[arg(long, default_value_t = 0.0)]
    pub eps: f64,
    /// Which bit flips (0 = least significant; bit B moves a pixel by 2^B/255).
    #[arg(long, default_value_t = 0)]
    pub bit: u8,
    /// Pixels: `all`, `grid:S` (every S-th row and column, from the top-left), or a list like
    /// `0,5,100-120,0-783:37` (row-major indices 0–783; `a-b:s` takes every s-th pixel of the
    /// range).
    #[arg(long, default_value = "all")]
    pub pixels: String,
}

/// A resolved question.
pub struct Question {
    /// The region of images.
    pub region: Region,
    /// Where the image came from ("global" for the global region).
    pub origin: String,
    /// The image's label, when known.
    pub label: Option<u8>,
    /// Pixels to analyse, sorted.
    pub pixels: Vec<usize>,
}

impl QuestionArgs {
    /// Validates the arguments and loads the image.
    pub fn resolve(&self) -> Result<Question> {
        if !(0.0..=1.0).contains(&self.eps) {
            bail!("--eps must lie in [0, 1], got {}", self.eps);
        }
        if self.bit > 7 {
            bail!("--bit must be 0–7 (8-bit pixels), got {}", self.bit);
        }
        let pixels = parse_pixels(&self.pixels)?;
        match (self.region, self.image.given()) {
            (Some(RegionArg::Global), _) => Ok(Question { region: Region::Global, origin: "global".into(), label: None, pixels }),
            (None, true) => {
                let img = self.image.load()?;
                let region = if self.eps == 0.0 { Region::Point(img.pixels) } else { Region::Ball(img.pixels, self.eps) };
                Ok(Question { region, origin: img.origin, label: img.label, pixels })
            }
            (None, false) => bail!("no region: pass --region global, or an image (--image F.png | --mnist DIR --index I) with --eps"),
        }
    }
}

/// Parses `all` or `0,5,10-20,0-783:37`.
pub fn parse_pixels(s: &str) -> Result<Vec<usize>> {
    if s.trim() == "all" {
        return Ok((0..PIXELS).collect());
    }
    if let Some(step) = s.trim().strip_prefix("grid:") {
        // Every `step`-th row and column from (0, 0): a sample that looks like one.
        let step: usize = step
            .trim()
            .parse()
            .ok()
            .filter(|&v| (1..data::SIDE).contains(&v))
            .with_context(|| format!("--pixels: bad grid step in '{s}' (1–27)"))?;
        return Ok((0..PIXELS).filter(|p| (p / data::SIDE) % step == 0 && (p % data::SIDE) % step == 0).collect());
    }
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let parse = |t: &str| -> Result<usize> {
            let v: usize = t.trim().parse().with_context(|| format!("--pixels: '{t}' is not a pixel index"))?;
            if v >= PIXELS {
                bail!("--pixels: {v} is out of range (pixels are 0–783)");
            }
            Ok(v)
        };
        let (range, step) = match part.split_once(':') {
            Some((r, st)) => {
                (r, st.trim().parse::<usize>().ok().filter(|&v| v > 0).with_context(|| format!("--pixels: bad step in '{part}'"))?)
            }
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse(a)?, parse(b)?);
                if a > b {
                    bail!("--pixels: empty range {a}-{b}");
                }
                out.extend((a..=b).step_by(step));
            }
            None => out.push(parse(range)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        bail!("--pixels selects no pixel");
    }
    Ok(out)
}

/// The machine a measurement ran on: worker threads and CPU model (for reports and tables).
pub fn machine() -> crate::report::Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()));
    crate::report::Machine { threads: rayon::current_num_threads(), cpu }
}

/// Peak resident memory of this process in MiB (VmHWM from /proc on Linux; 0 elsewhere).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A conservative estimate (MiB) of the peak memory of a zonotope analysis of `net` with
/// these generator budgets and `threads` concurrent pixel analyses. Calibrated on the shipped
/// B0 (peak RSS 311 MiB at budgets 8, 415 at 512/256, 640 at 1024/512, one thread): a base of
/// 96 MiB plus 64 bytes per parameter (model, prepared maps, executor), plus 1.6 live copies
/// of the widest layer times the generator count.
pub fn estimate_mib(net: &Network, region_budget: usize, diff_budget: usize, threads: usize) -> f64 {
    let widest = (0..=net.layers.len()).map(|v| zonocert_network::ir::numel(net.shape_of(zonocert_network::ValueId(v)))).max().unwrap_or(0);
    let gens = region_budget + threads * diff_budget + 2 * threads + 1;
    let bytes = 64.0 * net.parameters() as f64 + 8.0 * 1.6 * widest as f64 * gens as f64;
    96.0 + bytes / (1024.0 * 1024.0)
}

/// Largest budgets (scaled down together from the requested ones) whose estimated peak fits
/// `max_mib`; an error naming the minimum when even budgets of 8 do not fit.
pub fn budgets_within(net: &Network, region_budget: usize, diff_budget: usize, threads: usize, max_mib: f64) -> Result<(usize, usize)> {
    let (mut r, mut d) = (region_budget, diff_budget);
    while estimate_mib(net, r, d, threads) > max_mib {
        if r <= 8 && d <= 8 {
            bail!(
                "--max-memory {max_mib} MiB is below what this model needs even with generator budgets of 8 (about {:.0} MiB with {threads} threads); raise it or use fewer threads (RAYON_NUM_THREADS)",
                estimate_mib(net, 8, 8, threads)
            );
        }
        r = (r * 3 / 4).max(8);
        d = (d * 3 / 4).max(8);
    }
    Ok((r, d))
}

/// The median (the mean of the two middle values for an even count; NaN when empty).
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// A progress bar over `len` items named `unit`, with elapsed time and ETA on stderr; hidden
/// when `quiet` or when stderr is not a terminal.
pub fn progress_bar(len: u64, unit: &str, quiet: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let bar = indicatif::ProgressBar::new(len);
    if quiet || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit}  {{elapsed}} elapsed, ETA {{eta}}");
    bar.set_style(indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()));
    bar
}
