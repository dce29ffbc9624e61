//! The records zonocert writes, as types: `report.json` (`certify`, `merge`), `bench.json`,
//! `curve.json` and `bounds --json`. Every file is written from these types with serde and read
//! back through them (`--resume`, `merge`), and a test parses the README's documented examples
//! into them with unknown fields refused, so the documented schema cannot drift from the
//! written one.
//!
//! Non-finite numbers cannot appear in JSON: a field that may hold one is an `Option` (`null`).

use serde::{Deserialize, Serialize};

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The machine a run used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// Worker threads.
    pub threads: usize,
    /// The CPU model, where the system names it.
    pub cpu: Option<String>,
}

/// One certified pixel.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PixelEntry {
    /// Pixel index (row-major).
    pub pixel: usize,
    /// Row of the pixel.
    pub row: usize,
    /// Column of the pixel.
    pub col: usize,
    /// Certified upper bound on `max_c |Δp_c|`.
    pub upper: f64,
    /// The class attaining `upper`.
    pub class: usize,
    /// `precise`: a certified lower bound on the exact value; `--with-lower`: the value a
    /// concrete image pair found by search attains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// `--with-exact`: an `f64` evaluation of both images (a reference, not a certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<f64>,
    /// Decided by `diff-zonotope`'s screening pass.
    #[serde(default, skip_serializing_if = "is_false")]
    pub screened: bool,
    /// Abstract methods: the softmax mean-value bound before the cap at the probability ranges
    /// and 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_value_bound: Option<f64>,
    /// Abstract methods: the certified `max_{c,j} |Δ(z_c − z_j)|` (the logits' movement,
    /// free of any temperature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_delta_bound: Option<f64>,
    /// An abstract value overflowed: `upper` is the trivial bound.
    #[serde(default, skip_serializing_if = "is_false")]
    pub overflow: bool,
    /// `--first-budget`: `upper` is the first pass's; the full pass did not run, because this
    /// bound was already no larger than the largest full-pass bound.
    #[serde(default, skip_serializing_if = "is_false")]
    pub first_pass: bool,
}

/// The region a report certifies.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RegionRecord {
    /// One image.
    Point {
        /// Where the image came from (`mnist test #0`, a file name).
        image: String,
        /// Its label, where known.
        label: Option<u8>,
        /// Always 0.
        eps: f64,
    },
    /// The L∞ ball of radius `eps` around an image.
    Ball {
        /// Where the image came from.
        image: String,
        /// Its label, where known.
        label: Option<u8>,
        /// The radius on the [0, 1] scale.
        eps: f64,
    },
    /// Every image of `[0, 1]^784`.
    Global,
}

/// `diff-zonotope`'s screening pass.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScreenRecord {
    /// Difference budget of the screening pass.
    pub budget: usize,
    /// How much tighter the full pass would have to be to matter.
    pub factor: f64,
}

/// The engine's settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged, deny_unknown_fields)]
pub enum EngineRecord {
    /// An abstract method.
    Abstract {
        /// Generator budget of the region analysis.
        region_budget: usize,
        /// Generator budget of each pixel's difference analysis.
        diff_budget: usize,
        /// Whether the difference's boxed error terms were carried (`--carry-errors`).
        #[serde(default)]
        carry_errors: bool,
        /// Whether the region analysis bounded its error terms by reverse passes
        /// (`--region-backsub`).
        #[serde(default)]
        region_backsub: bool,
        /// Whether each pixel's difference analysis bounded its carried term again by reverse
        /// passes (`--diff-backsub`).
        #[serde(default)]
        diff_backsub: bool,
        /// The screening pass (`diff-zonotope` without LP refinement only).
        screen: Option<ScreenRecord>,
        /// `--first-budget`: every pixel's first pass ran at this difference budget, and only
        /// pixels whose first bound could still be the largest got the `diff_budget` pass.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_budget: Option<usize>,
    },
    /// The precise method.
    Precise {
        /// `fixed-256` or `bigfloat-N`.
        arithmetic: String,
        /// Bits of the balls' centres.
        precision_bits: usize,
        /// In a finished report: evaluations that fell back from fixed point to `BigFloat`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallbacks_to_bigfloat: Option<usize>,
    },
}

/// The lower-bound search's settings (`--with-lower`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LowerSearchRecord {
    /// Coordinate-ascent rounds.
    pub rounds: usize,
    /// Restarts.
    pub restarts: usize,
    /// Candidate images per batch.
    pub batch: usize,
    /// Seed.
    pub seed: u64,
    /// Gradient-ascent steps.
    pub ascent_steps: usize,
}

/// A shard of a split run, as the run record names it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    /// This shard, 1-based.
    pub k: usize,
    /// Number of shards.
    pub n: usize,
}

/// A shard as the report names it, with the run's pixel count.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardTotal {
    /// This shard, 1-based.
    pub k: usize,
    /// Number of shards.
    pub n: usize,
    /// Pixels of the whole run.
    pub pixels_total: usize,
}

/// What a run's numbers depend on; `--resume` and `merge` refuse reports whose record differs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// The version that wrote the report.
    pub zonocert_version: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// `point`, `ball` or `global`.
    pub region_kind: String,
    /// Radius of the ball (0 otherwise).
    pub eps: f64,
    /// Where the image came from (`global` for the global region).
    pub image: String,
    /// SHA-256 of the image's bytes (none for the global region).
    pub image_sha256: Option<String>,
    /// The flipped bit.
    pub bit: u8,
    /// The method's name.
    pub method: String,
    /// The engine's settings.
    pub settings: EngineRecord,
    /// LP refinement settings (`--refine lp`), as text.
    pub lp: Option<String>,
    /// The lower-bound search's settings (`--with-lower`).
    pub lower_search: Option<LowerSearchRecord>,
    /// What the numbers are about: `real` (the real-valued function of the weights).
    pub semantics: String,
    /// This shard of a split run.
    pub shard: Option<ShardRecord>,
}

/// The heatmap a report drew.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeatmapRecord {
    /// File name, beside the report.
    pub file: String,
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Always `viridis`.
    pub colour_map: String,
    /// Whether colours follow log10 of the bound.
    pub log_scale: bool,
    /// Bottom of the colour bar.
    pub min: f64,
    /// Top of the colour bar.
    pub max: f64,
    /// The grid step when strided pixels were drawn as blocks.
    pub blocks: Option<BlocksRecord>,
    /// The title drawn above.
    pub title: String,
    /// `auto`, `linear` or `log`, as asked.
    pub scale: String,
}

/// A regular grid of analysed pixels, drawn as blocks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlocksRecord {
    /// Rows between analysed pixels.
    pub row_step: usize,
    /// Columns between analysed pixels.
    pub col_step: usize,
}

/// The LP window a refinement used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowRecord {
    /// First layer of the window.
    pub start_layer: usize,
    /// The window's layers, `name (kind)`.
    pub layers: Vec<String>,
    /// The values tied to their zonotopes.
    pub inputs: Vec<String>,
}

/// Size of the largest LP.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProgramRecord {
    /// Variables.
    pub variables: usize,
    /// Rows.
    pub rows: usize,
    /// Non-zero coefficients.
    pub nonzeros: usize,
}

/// What LP refinement did (`--refine lp`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LpRecord {
    /// Always `lp`.
    pub method: String,
    /// The solver and how its results are proven.
    pub solver: String,
    /// The window.
    pub window: WindowRecord,
    /// The largest program.
    pub program: ProgramRecord,
    /// Neurons whose region bounds were tightened (`--lp-neurons`).
    pub neurons_tightened: usize,
    /// The values those neurons belong to.
    pub neurons_tightened_in: Vec<String>,
    /// LPs solved.
    pub lps: usize,
    /// LPs that tightened a bound.
    pub improved: usize,
    /// LPs stopped by `--lp-timeout`.
    pub timeouts: usize,
    /// Objectives left unrefined when `--lp-budget` was spent.
    pub skipped_for_budget: usize,
    /// Seconds spent in LPs.
    pub seconds: f64,
    /// Total width of the refined bounds before.
    pub width_before: f64,
    /// Width removed.
    pub width_gained: f64,
    /// `width_gained / width_before`.
    pub width_gained_fraction: f64,
}

/// The summary of a report's pixels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct Summary {
    /// The largest certified bound.
    pub max_upper: Option<f64>,
    /// Its pixel.
    pub max_pixel: Option<usize>,
    /// The largest lower bound.
    pub max_lower: Option<f64>,
    /// Median of `upper / lower` over pixels with a positive lower bound.
    pub median_ratio_upper_over_lower: Option<f64>,
    /// Pixels decided by screening.
    pub screened_pixels: usize,
    /// Pixels whose analysis overflowed.
    pub overflow_pixels: usize,
    /// Pixels that kept their first pass's bound (`--first-budget`).
    pub first_pass_pixels: usize,
    /// The largest certified `max_{c,j} |Δ(z_c − z_j)|`, when every pixel has one.
    pub max_logit_delta_bound: Option<f64>,
}

/// The certified logit movement against the model's typical logit margin on test images: a
/// measure of the bound that no temperature (rescaling of the logits) can improve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TemperatureFree {
    /// Where the test images came from (the `--test-margins` directory).
    pub test_set: String,
    /// How many test images the statistics cover.
    pub test_images: usize,
    /// Median over those images of the gap between the largest and second-largest logit
    /// (float32 executor).
    pub median_test_logit_margin: f64,
    /// Median over those images of the largest class probability.
    pub median_test_max_probability: f64,
    /// Test accuracy over those images.
    pub test_accuracy: f64,
    /// The report's `max_logit_delta_bound / median_test_logit_margin`.
    pub ratio: f64,
}

/// One shard a merged report was made from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MergedShard {
    /// The shard's output directory.
    pub dir: String,
    /// Which shard.
    pub shard: Option<ShardTotal>,
    /// Its wall time.
    pub time_s: f64,
    /// Its machine.
    pub machine: Machine,
    /// Its peak memory.
    pub peak_rss_mib: f64,
    /// Its engine settings (with what it found on the way).
    pub settings: EngineRecord,
}

/// `report.json` of `certify` (a finished run) and `merge`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Every requested pixel is in `pixels`.
    pub complete: bool,
    /// Pixels asked for.
    pub pixels_requested: usize,
    /// The model file.
    pub model: String,
    /// The method's name.
    pub method: String,
    /// The region.
    pub region: RegionRecord,
    /// The flipped bit.
    pub bit: u8,
    /// `2^bit / 255`: the size of the flip on the [0, 1] scale.
    pub flip_size: f64,
    /// What the numbers are about.
    pub semantics: String,
    /// The engine's settings, with what the run found on the way.
    pub settings: EngineRecord,
    /// The certified pixels, sorted.
    pub pixels: Vec<PixelEntry>,
    /// What the numbers depend on.
    pub run: RunRecord,
    /// This shard of a split run.
    pub shard: Option<ShardTotal>,
    /// The image's bytes in hex (point and ball regions).
    pub image_hex: Option<String>,
    /// Wall time, seconds.
    pub time_s: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
    /// The machine.
    pub machine: Machine,
    /// Time of the region analysis (with LP neuron tightening), seconds.
    pub region_analysis_s: f64,
    /// Largest generator count in the region analysis.
    pub region_peak_generators: usize,
    /// Under `--semantics f32` at an image or in a ball: the bound every pixel gets from one
    /// forward analysis of the region with all its flips (every pixel's `upper` is at most it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flip_hull_bound: Option<f64>,
    /// What LP refinement did.
    pub refinement: Option<LpRecord>,
    /// The heatmap.
    pub heatmap: HeatmapRecord,
    /// See [`Summary`].
    pub max_upper: Option<f64>,
    /// See [`Summary`].
    pub max_pixel: Option<usize>,
    /// See [`Summary`].
    pub max_lower: Option<f64>,
    /// See [`Summary`].
    pub median_ratio_upper_over_lower: Option<f64>,
    /// See [`Summary`].
    pub screened_pixels: usize,
    /// See [`Summary`].
    pub overflow_pixels: usize,
    /// See [`Summary`].
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_pass_pixels: usize,
    /// See [`Summary`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_logit_delta_bound: Option<f64>,
    /// `--test-margins`: the certified logit movement against the test logit margin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_free: Option<TemperatureFree>,
    /// `merge`: the shards it combined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<MergedShard>,
}

impl Report {
    /// Sets the summary fields.
    pub fn set_summary(&mut self, s: Summary) {
        self.max_upper = s.max_upper;
        self.max_pixel = s.max_pixel;
        self.max_lower = s.max_lower;
        self.median_ratio_upper_over_lower = s.median_ratio_upper_over_lower;
        self.screened_pixels = s.screened_pixels;
        self.overflow_pixels = s.overflow_pixels;
        self.first_pass_pixels = s.first_pass_pixels;
        self.max_logit_delta_bound = s.max_logit_delta_bound;
        if let (Some(t), Some(m)) = (self.temperature_free.as_mut(), s.max_logit_delta_bound) {
            t.ratio = m / t.median_test_logit_margin;
        }
    }
}

/// `report.json` while a run is under way (after each chunk of pixels).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartialReport {
    /// Always false.
    pub complete: bool,
    /// The model file.
    pub model: String,
    /// The method's name.
    pub method: String,
    /// The region.
    pub region: RegionRecord,
    /// The flipped bit.
    pub bit: u8,
    /// The pixels certified so far.
    pub pixels: Vec<PixelEntry>,
    /// Pixels asked for.
    pub pixels_requested: usize,
    /// What the numbers depend on.
    pub run: RunRecord,
}

/// One row of `bench.json`: one method on one region, over the pixels.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BenchRow {
    /// The method's name.
    pub method: String,
    /// `0`, a radius, or `global`.
    pub eps: String,
    /// MNIST test index (none for the global region).
    pub image: Option<usize>,
    /// Pixels.
    pub pixels: usize,
    /// Median certified bound.
    pub median_upper: Option<f64>,
    /// Largest certified bound.
    pub max_upper: f64,
    /// Median lower bound.
    pub median_lower: Option<f64>,
    /// Largest lower bound.
    pub max_lower: f64,
    /// Single images: the largest exact (`f64`) value.
    pub max_exact: Option<f64>,
    /// Median of `upper / lower` over pixels with a positive lower bound.
    pub median_ratio_upper_over_lower: Option<f64>,
    /// Wall time of the method, seconds.
    pub time_s: f64,
    /// `time_s` per pixel.
    pub time_per_pixel_s: f64,
    /// Wall time of the lower-bound search (shared by the methods), seconds.
    pub lower_search_s: f64,
    /// Peak resident memory so far, MiB.
    pub peak_rss_mib: f64,
    /// Pixels decided by screening.
    pub screened_pixels: usize,
}

/// `bench.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BenchReport {
    /// The model file.
    pub model: String,
    /// `real` or `f32` (`--semantics`).
    pub execution: String,
    /// The machine.
    pub machine: Machine,
    /// Whether the difference's boxed error terms were carried (`--carry-errors`).
    #[serde(default)]
    pub carry_errors: bool,
    /// Whether region analyses bounded their error terms by reverse passes (`--region-backsub`).
    #[serde(default)]
    pub region_backsub: bool,
    /// Whether difference analyses bounded their carried terms again by reverse passes
    /// (`--diff-backsub`).
    #[serde(default)]
    pub diff_backsub: bool,
    /// Generator budget of the region zonotope (`--region-budget`); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_budget: Option<usize>,
    /// Generator budget of the difference zonotope (`--diff-budget`); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_budget: Option<usize>,
    /// One row per (region, method).
    pub rows: Vec<BenchRow>,
    /// Certified bounds below a lower bound (must be empty).
    pub soundness_failures: Vec<String>,
}

/// One point of a sensitivity curve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    /// The flipped bit.
    pub bit: u8,
    /// The ball's radius (0: the image itself).
    pub eps: f64,
    /// The method's name.
    pub method: String,
    /// Largest certified bound over the pixels.
    pub certified_max: f64,
    /// Its pixel.
    pub certified_pixel: usize,
    /// Largest lower bound over the pixels.
    pub lower_max: f64,
    /// Its pixel.
    pub lower_pixel: usize,
    /// `certified_max / lower_max` (none when the lower bound is 0).
    pub ratio: Option<f64>,
    /// Wall time, seconds (over the global region, of the pixels' passes: the region
    /// analysis runs once for every bit and counts in the report's `time_s` only).
    pub time_s: f64,
}

/// `curve.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurveReport {
    /// The model file.
    pub model: String,
    /// Where the image came from.
    pub image: String,
    /// Its label, where known.
    pub label: Option<u8>,
    /// Pixels per point.
    pub pixels: usize,
    /// Against the flipped bit, at the image itself.
    pub by_bit: Vec<CurvePoint>,
    /// Against the ball's radius, for the chosen bit.
    pub by_eps: Vec<CurvePoint>,
    /// `image` (one image and balls around it) or `global` (every image).
    #[serde(default = "image_region")]
    pub region: String,
    /// With `global`: against the number of pixels flipped at once, for the chosen bit.
    #[serde(default)]
    pub by_flips: Vec<FlipsPoint>,
    /// Wall time, seconds.
    pub time_s: f64,
    /// `real` or `f32` (`--semantics`).
    pub execution: String,
    /// Whether the difference's boxed error terms were carried (`--carry-errors`).
    #[serde(default)]
    pub carry_errors: bool,
    /// Whether region analyses bounded their error terms by reverse passes (`--region-backsub`).
    #[serde(default)]
    pub region_backsub: bool,
    /// Whether difference analyses bounded their carried terms again by reverse passes
    /// (`--diff-backsub`).
    #[serde(default)]
    pub diff_backsub: bool,
    /// Generator budget of the region zonotope (`--region-budget`); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_budget: Option<usize>,
    /// Generator budget of the difference zonotope (`--diff-budget`); absent in older files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_budget: Option<usize>,
    /// What the numbers mean.
    pub semantics: String,
}

fn image_region() -> String {
    "image".to_string()
}

/// One point of the global curve against the number of pixels flipped at once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlipsPoint {
    /// At most this many of the selected pixels flip the bit at once.
    pub flips: usize,
    /// The flipped bit.
    pub bit: u8,
    /// Certified: the sum of the `flips` largest per-pixel global bounds (at most 1).
    pub certified_max: f64,
    /// The largest change found for such a pair.
    pub lower_max: f64,
    /// The pixels that pair flips.
    pub lower_pixels: Vec<usize>,
    /// The pair's first image (bytes, row-major); the second flips `bit` at `lower_pixels`.
    pub lower_image: Vec<u8>,
    /// `certified_max / lower_max` (none when the lower bound is 0).
    pub ratio: Option<f64>,
}

/// Lower and upper ends per class.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RangeRecord {
    /// Lower ends (none where not finite).
    pub lower: Vec<Option<f64>>,
    /// Upper ends (none where not finite).
    pub upper: Vec<Option<f64>>,
}

/// `bounds --json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundsReport {
    /// Where the image came from.
    pub image: String,
    /// Its label, where known.
    pub label: Option<u8>,
    /// The ball's radius.
    pub eps: f64,
    /// `interval` or `zonotope`.
    pub method: String,
    /// `real` or `f32` (`--semantics`).
    pub execution: String,
    /// Logit bounds.
    pub logits: RangeRecord,
    /// Probability bounds.
    pub probabilities: RangeRecord,
    /// The image's predicted class.
    pub predicted: usize,
    /// Every other class's logit is certainly below the predicted one's.
    pub verified: bool,
    /// Wall time, seconds.
    pub time_s: f64,
    /// Largest generator count.
    pub peak_generators: usize,
    /// What LP refinement did.
    pub refinement: Option<LpRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON block of README.md that follows the heading `### ` + `file` (a file name in
    /// backquotes, and what else the heading says).
    fn readme_example(file: &str) -> serde_json::Value {
        let readme = include_str!("../../../README.md");
        let heading = format!("### {file}\n");
        let at = readme.find(&heading).unwrap_or_else(|| panic!("README has no section {heading}"));
        let rest = &readme[at..];
        let start = rest.find("```json\n").unwrap_or_else(|| panic!("{heading} has no json block")) + 8;
        let end = rest[start..].find("```").expect("closed block") + start;
        serde_json::from_str(&rest[start..end]).unwrap_or_else(|e| panic!("README's {file} example is not JSON: {e}"))
    }

    fn parses<T: serde::de::DeserializeOwned + Serialize>(file: &str) {
        let v = readme_example(file);
        let typed: T =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("README's {file} example does not match the schema: {e}"));
        // Nothing documented is lost on the way (no field ignored, none renamed).
        assert_eq!(serde_json::to_value(&typed).expect("serialises"), v, "README's {file} example does not round-trip");
    }

    #[test]
    fn readme_examples_match_the_written_schema() {
        parses::<Report>("`report.json`");
        parses::<BenchReport>("`bench.json`");
        parses::<CurveReport>("`curve.json`");
        parses::<CurveReport>("`curve.json` over every image");
        parses::<BoundsReport>("`bounds --json`");
    }

    #[test]
    fn unknown_and_missing_fields_are_refused() {
        let mut v = readme_example("`report.json`");
        v["pixels"][0]["uper"] = serde_json::json!(1.0);
        assert!(serde_json::from_value::<Report>(v.clone()).is_err(), "a misspelt pixel field was accepted");
        let mut v = readme_example("`report.json`");
        v.as_object_mut().expect("object").remove("run");
        assert!(serde_json::from_value::<Report>(v).is_err(), "a report without its run record was accepted");
    }
}
