//! Lower bounds: a search for images in a region whose bit flip moves some class probability
//! the most, on the 8-bit grid. Each restart first climbs by signed-gradient ascent (reverse
//! mode through the IR, [`Executor::input_gradient`]) on the pair's probability change, every
//! iterate rounded to the grid and evaluated exactly; the best pair then gets the flipped
//! pixel's own byte swept and greedy coordinate ascent with concrete evaluations. Every pair
//! found is a witness: the true sensitivity is at least its value.

use crate::float32::Semantics;
use crate::sensitivity::{largest_change, probabilities, Region};
use rayon::prelude::*;
use zonocert_network::data::PIXELS;
use zonocert_network::exec::Executor;

/// Search effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchSettings {
    /// Independent starting points (the region's centre image is always one of them).
    pub restarts: usize,
    /// Ascent rounds per start.
    pub rounds: usize,
    /// Candidate moves evaluated (as one batch) per round.
    pub batch: usize,
    /// Seed of the deterministic pseudo-random generator.
    pub seed: u64,
    /// Signed-gradient ascent steps per start (0: coordinate ascent only).
    pub ascent_steps: usize,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { restarts: 2, rounds: 10, batch: 16, seed: 0, ascent_steps: 30 }
    }
}

impl SearchSettings {
    /// The light search run beside every certified pixel (`certify`, `bench`, `curve`): one
    /// start, `3 · rounds` gradient steps and `rounds` coordinate rounds of 8 candidates;
    /// `rounds = 0` evaluates the start alone.
    pub fn per_pixel(rounds: usize) -> Self {
        SearchSettings { restarts: 1, rounds, batch: 8, seed: 0, ascent_steps: 3 * rounds }
    }
}

/// The best pair found for one pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Witness {
    /// Pixel index.
    pub pixel: usize,
    /// `max_c |p_c(x′) − p_c(x)|` at the witness (f64 evaluation).
    pub value: f64,
    /// The class attaining it.
    pub class: usize,
    /// The image `x` (bytes); `x′` is `x` with the bit flipped at `pixel`.
    pub image: Vec<u8>,
    /// Concrete evaluations spent.
    pub evaluations: usize,
}

impl Witness {
    /// Re-evaluates the pair on its own (not in a search batch): `Some(max_c |Δp_c|)` when the
    /// image lies in `region` on the 8-bit grid, `None` when it does not (a search bug) or when
    /// there is no image.
    pub fn recheck(&self, exec: &Executor<f64>, region: &Region, bit: u8) -> Option<f64> {
        // Checked against the region's real box, independently of the search's byte ranges.
        let bx = region.input_box();
        let inside = self.image.len() == PIXELS && self.image.iter().zip(&bx).all(|(&b, iv)| iv.contains(b as f64 / 255.0));
        inside.then(|| objective(exec, std::slice::from_ref(&self.image), self.pixel, bit)[0].0)
    }
}

/// How a pair found by the search is scored, for the semantics its certificate is about: the
/// real-valued change (evaluated in f64), or, under `--semantics f32`, the change one float32
/// execution of the graph makes (zonocert's own executor in `f32`: every operation correctly
/// rounded, its own summation order, the overflow-safe softmax), which is what an `f32`
/// certificate must cover.
pub enum PairScore {
    /// The f64 value the search found.
    Real,
    /// The change under the float32 executor.
    Float32(Executor<f32>),
}

impl PairScore {
    /// The score for certificates of `semantics` about `net`.
    pub fn new(net: &zonocert_network::Network, semantics: Semantics) -> Self {
        match semantics {
            Semantics::Real => PairScore::Real,
            Semantics::F32(_) => PairScore::Float32(Executor::new(net)),
        }
    }

    /// The witness's pair, scored.
    pub fn of(&self, w: &Witness, bit: u8) -> f64 {
        match self {
            PairScore::Real => w.value,
            PairScore::Float32(exec) => float32_change(exec, &w.image, &[w.pixel], bit),
        }
    }
}

/// `max_c |p̂_c(x′) − p̂_c(x)|` where `x′` is `image` with `bit` flipped at every pixel of
/// `pixels`, both run by the float32 executor from their bytes (`b/255` in float32) through
/// its float32 softmax.
pub fn float32_change(exec: &Executor<f32>, image: &[u8], pixels: &[usize], bit: u8) -> f64 {
    let mut flipped = image.to_vec();
    pixels.iter().for_each(|&i| flipped[i] ^= 1 << bit);
    let unit = |b: &[u8]| -> Vec<f32> { b.iter().map(|&v| v as f32 / 255.0).collect() };
    let mut input = unit(image);
    input.extend(unit(&flipped));
    let z = exec.forward(&input, 2);
    let k = z.len() / 2;
    let p = |z: &[f32]| -> Vec<f64> { probabilities(exec, z).into_iter().map(f64::from).collect() };
    largest_change(&p(&z[..k]), &p(&z[k..])).0
}

/// SplitMix64: small, seedable, and identical on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Byte bounds of the region per pixel.
fn byte_bounds(region: &Region) -> Vec<(u8, u8)> {
    match region {
        Region::Point(px) => px.iter().map(|&b| (b, b)).collect(),
        Region::Ball(px, eps) => {
            // Grid points within eps of b/255: |k − b| ≤ 255·eps (a hair of slack for rounding).
            let r = (255.0 * eps + 1e-9).floor().max(0.0) as i32;
            px.iter().map(|&b| ((b as i32 - r).max(0) as u8, (b as i32 + r).min(255) as u8)).collect()
        }
        Region::Global => vec![(0, 255); PIXELS],
    }
}

/// Evaluates `max_c |Δp_c|` for a batch of images, flipping `bit` of `pixel`.
fn objective(exec: &Executor<f64>, images: &[Vec<u8>], pixel: usize, bit: u8) -> Vec<(f64, usize)> {
    let n = images.len();
    let z = exec.forward(&pair_input(images, pixel, bit), 2 * n);
    let k = z.len() / (2 * n).max(1);
    (0..n)
        .map(|s| largest_change(&probabilities(exec, &z[s * k..(s + 1) * k]), &probabilities(exec, &z[(n + s) * k..(n + s + 1) * k])))
        .collect()
}

/// The images `x` on the grid and `x′` (bit `bit` of `pixel` flipped) as one input batch:
/// the `n` images first, then their `n` twins.
fn pair_input(images: &[Vec<u8>], pixel: usize, bit: u8) -> Vec<f64> {
    let mut input = Vec::with_capacity(images.len() * 2 * PIXELS);
    for img in images {
        input.extend(img.iter().map(|&b| b as f64 / 255.0));
    }
    for img in images {
        input.extend(img.iter().enumerate().map(|(j, &b)| (if j == pixel { b ^ (1 << bit) } else { b }) as f64 / 255.0));
    }
    input
}

/// Signed-gradient ascent from each of `starts` (one batch): at every step the pair's current
/// largest `|Δp_c|` picks the class and sign to climb, the gradient of `±(p_c(x′) − p_c(x))`
/// with respect to the shared pixels steers a continuous image (step shrinking from 64 to 1
/// grey level), and the image rounded to the grid is what gets evaluated. Returns, per start,
/// the best grid image visited with its value and class.
fn ascend(
    exec: &Executor<f64>,
    bounds: &[(u8, u8)],
    starts: Vec<Vec<u8>>,
    pixel: usize,
    bit: u8,
    steps: usize,
) -> Vec<(Vec<u8>, f64, usize)> {
    let n = starts.len();
    let softmax_out = exec.network().ends_with_softmax();
    let mut cont: Vec<Vec<f64>> = starts.iter().map(|x| x.iter().map(|&b| b as f64).collect()).collect();
    let mut best: Vec<(Vec<u8>, f64, usize)> = starts.into_iter().map(|x| (x, -1.0, 0)).collect();
    for t in 0..=steps {
        let grid = on_grid(&cont);
        // Values are kept for the gradient, which the last iterate does not need.
        let values = exec.forward_all_values(&pair_input(&grid, pixel, bit), 2 * n, t < steps);
        let out = values.last().and_then(|v| v.as_ref()).expect("network output");
        let k = out.len() / (2 * n);
        let mut seed = vec![0.0; out.len()];
        for s in 0..n {
            let (p, q) = (probabilities(exec, &out[s * k..(s + 1) * k]), probabilities(exec, &out[(n + s) * k..(n + s + 1) * k]));
            let (v, c) = largest_change(&p, &q);
            if v > best[s].1 {
                best[s] = (grid[s].clone(), v, c);
            }
            // d(±(q_c − p_c)) / d logits: the softmax's Jacobian row, unless the net ends in one.
            let sign = if q[c] >= p[c] { 1.0 } else { -1.0 };
            for (probs, slot, dir) in [(&q, n + s, sign), (&p, s, -sign)] {
                for j in 0..k {
                    let e = if j == c { 1.0 } else { 0.0 };
                    seed[slot * k + j] = dir * if softmax_out { e } else { probs[c] * (e - probs[j]) };
                }
            }
        }
        if t == steps {
            break;
        }
        signed_step(&mut cont, &exec.input_gradient(&values, 2 * n, seed), Some(pixel), t, steps, bounds);
    }
    best
}

/// The continuous images rounded to the 8-bit grid (what gets evaluated).
fn on_grid(cont: &[Vec<f64>]) -> Vec<Vec<u8>> {
    cont.iter().map(|u| u.iter().map(|&v| v.round().clamp(0.0, 255.0) as u8).collect()).collect()
}

/// One signed-gradient step of every continuous image `cont[s]` (step shrinking from 64 grey
/// levels at `t = 0` to 1 at `t = steps`), `g` holding the gradients of the `n` images and then
/// of their `n` twins (which share every pixel but the flipped one); `held` is not moved.
fn signed_step(cont: &mut [Vec<f64>], g: &[f64], held: Option<usize>, t: usize, steps: usize, bounds: &[(u8, u8)]) {
    let n = cont.len();
    let step = 1.0 + 63.0 * (1.0 - t as f64 / steps.max(1) as f64);
    for (s, u) in cont.iter_mut().enumerate() {
        for (j, v) in u.iter_mut().enumerate() {
            let d = g[s * PIXELS + j] + g[(n + s) * PIXELS + j];
            if Some(j) != held && d != 0.0 {
                *v = (*v + step * d.signum()).clamp(bounds[j].0 as f64, bounds[j].1 as f64);
            }
        }
    }
}

/// The starting images of a search: the region's own image first (when it has one), then
/// uniform draws from the region's byte ranges.
fn starting_images(region: &Region, bounds: &[(u8, u8)], restarts: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    (0..restarts.max(1))
        .map(|restart| match (restart, region.image()) {
            (0, Some(img)) => img.to_vec(),
            _ => bounds.iter().map(|&(lo, hi)| lo + rng.below((hi - lo) as u64 + 1) as u8).collect(),
        })
        .collect()
}

/// The largest logit-difference change found at one pixel ([`logit_difference_ascent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LogitWitness {
    /// `Δ(z_c − z_j) = (z′_c − z′_j) − (z_c − z_j)` of the pair (f64 evaluation of the pair alone).
    pub value: f64,
    /// The classes `c` and `j`.
    pub classes: (usize, usize),
    /// The image `x` (bytes); `x′` is `x` with the bit flipped at the pixel.
    pub image: Vec<u8>,
}

/// Signed-gradient ascent on `max_{c,j} Δ(z_c − z_j)` over the region, from `s.restarts`
/// starting images for `s.ascent_steps` steps: how far one pixel's flip can move a logit
/// difference, the quantity a certificate bounds before its softmax step (logits do not
/// saturate, so this search is not slowed where probabilities are near 0 or 1). A witness:
/// the true maximum is at least its value.
pub fn logit_difference_ascent(exec: &Executor<f64>, region: &Region, pixel: usize, bit: u8, s: SearchSettings) -> LogitWitness {
    let bounds = byte_bounds(region);
    let mut rng = Rng(s.seed ^ (pixel as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let starts = starting_images(region, &bounds, s.restarts, &mut rng);
    let n = starts.len();
    let mut cont: Vec<Vec<f64>> = starts.iter().map(|x| x.iter().map(|&b| b as f64).collect()).collect();
    let mut best = LogitWitness { value: f64::NEG_INFINITY, classes: (0, 0), image: starts[0].clone() };
    for t in 0..=s.ascent_steps {
        let grid = on_grid(&cont);
        let values = exec.forward_all_values(&pair_input(&grid, pixel, bit), 2 * n, t < s.ascent_steps);
        let out = values.last().and_then(|v| v.as_ref()).expect("network output");
        let k = out.len() / (2 * n);
        let mut seed = vec![0.0; out.len()];
        for i in 0..n {
            let (v, c, j) = largest_logit_change(&out[i * k..(i + 1) * k], &out[(n + i) * k..(n + i + 1) * k]);
            if v > best.value {
                best = LogitWitness { value: v, classes: (c, j), image: grid[i].clone() };
            }
            // d(Δ(z_c − z_j)) / d logits of the twin and of the image.
            seed[(n + i) * k + c] += 1.0;
            seed[(n + i) * k + j] -= 1.0;
            seed[i * k + c] -= 1.0;
            seed[i * k + j] += 1.0;
        }
        if t < s.ascent_steps {
            signed_step(&mut cont, &exec.input_gradient(&values, 2 * n, seed), None, t, s.ascent_steps, &bounds);
        }
    }
    // The reported value is the pair's own evaluation (not a batch member's).
    let z = exec.forward(&pair_input(std::slice::from_ref(&best.image), pixel, bit), 2);
    let k = z.len() / 2;
    let (c, j) = best.classes;
    best.value = (z[k + c] - z[k + j]) - (z[c] - z[j]);
    best
}

/// The ordered class pair `(c, j)` whose logit difference the flip moves up the most, with that
/// change, from the logits `z` of an image and `zp` of its twin.
fn largest_logit_change(z: &[f64], zp: &[f64]) -> (f64, usize, usize) {
    let mut best = (f64::NEG_INFINITY, 0, 0);
    for c in 0..z.len() {
        for j in 0..z.len() {
            let d = (zp[c] - zp[j]) - (z[c] - z[j]);
            if d > best.0 {
                best = (d, c, j);
            }
        }
    }
    best
}

/// Searches the region for a large bit-flip effect at `pixel`.
pub fn search(exec: &Executor<f64>, region: &Region, pixel: usize, bit: u8, s: SearchSettings) -> Witness {
    let bounds = byte_bounds(region);
    let mut rng = Rng(s.seed ^ (pixel as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut evals = 0;
    let starts = starting_images(region, &bounds, s.restarts, &mut rng);
    let n_starts = starts.len();
    let climbed = ascend(exec, &bounds, starts, pixel, bit, s.ascent_steps);
    evals += n_starts * (s.ascent_steps + 1);
    let (mut x, mut val, mut class) = climbed.into_iter().max_by(|a, b| a.1.total_cmp(&b.1)).expect("at least one start");
    // The flipped pixel's own grey level: both parities (the flip's two directions) of every
    // eighth level of its range, as one batch.
    let (lo, hi) = bounds[pixel];
    let effort = s.ascent_steps + s.rounds;
    let levels: Vec<Vec<u8>> = (lo..=hi)
        .filter(|b| effort > 0 && b % 8 < 2)
        .map(|b| {
            let mut c = x.clone();
            c[pixel] = b;
            c
        })
        .collect();
    evals += levels.len();
    if let Some((k, &(v, c))) = objective(exec, &levels, pixel, bit).iter().enumerate().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)) {
        if v > val {
            (x, val, class) = (levels[k].clone(), v, c);
        }
    }
    let movable: Vec<usize> = (0..PIXELS).filter(|&j| bounds[j].0 < bounds[j].1).collect();
    if !movable.is_empty() {
        for _ in 0..s.rounds * n_starts {
            // Candidate moves: a few random pixels set to an end or a random grid value of their range.
            let cands: Vec<Vec<u8>> = (0..s.batch)
                .map(|_| {
                    let mut c = x.clone();
                    let moves = 1 + rng.below(8) as usize;
                    for _ in 0..moves {
                        let j = movable[rng.below(movable.len() as u64) as usize];
                        let (lo, hi) = bounds[j];
                        c[j] = match rng.below(3) {
                            0 => lo,
                            1 => hi,
                            _ => lo + rng.below((hi - lo) as u64 + 1) as u8,
                        };
                    }
                    c
                })
                .collect();
            let vals = objective(exec, &cands, pixel, bit);
            evals += cands.len();
            if let Some((k, &(v, c))) = vals.iter().enumerate().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)) {
                if v > val {
                    (x, val, class) = (cands[k].clone(), v, c);
                }
            }
        }
    }
    let mut best = Witness { pixel, value: val, class, image: x, evaluations: evals };
    // The reported value is the pair's own evaluation, and only for a pair in the region.
    match best.recheck(exec, region, bit) {
        Some(v) => best.value = v,
        None => best = Witness { pixel, value: 0.0, class: 0, image: vec![], evaluations: evals },
    }
    best
}

/// Runs [`search`] for several pixels in parallel.
pub fn search_pixels(exec: &Executor<f64>, region: &Region, pixels: &[usize], bit: u8, s: SearchSettings) -> Vec<Witness> {
    pixels.par_iter().map(|&i| search(exec, region, i, bit, s)).collect()
}
