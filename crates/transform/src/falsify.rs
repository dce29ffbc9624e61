//! Lower bounds: a search for images in a region whose bit flip moves some class probability
//! the most, on the 8-bit grid, by random restarts and greedy coordinate ascent with concrete
//! evaluations. Every pair found is a witness: the true sensitivity is at least its value.

use crate::sensitivity::{probabilities, Region};
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
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings { restarts: 2, rounds: 10, batch: 16, seed: 0 }
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
    let mut input = Vec::with_capacity(images.len() * 2 * PIXELS);
    for img in images {
        input.extend(img.iter().map(|&b| b as f64 / 255.0));
        input.extend(img.iter().enumerate().map(|(j, &b)| (if j == pixel { b ^ (1 << bit) } else { b }) as f64 / 255.0));
    }
    let z = exec.forward(&input, images.len() * 2);
    let k = z.len() / (images.len() * 2);
    z.chunks(2 * k)
        .map(|pair| {
            let (p, q) = (probabilities(exec, &pair[..k]), probabilities(exec, &pair[k..]));
            p.iter().zip(&q).map(|(a, b)| (a - b).abs()).enumerate().fold((0.0, 0), |best, (c, v)| if v > best.0 { (v, c) } else { best })
        })
        .map(|(v, c)| (v, c))
        .collect()
}

/// Searches the region for a large bit-flip effect at `pixel`.
pub fn search(exec: &Executor<f64>, region: &Region, pixel: usize, bit: u8, s: SearchSettings) -> Witness {
    let bounds = byte_bounds(region);
    let mut rng = Rng(s.seed ^ (pixel as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut best = Witness { pixel, value: -1.0, class: 0, image: vec![], evaluations: 0 };
    let mut evals = 0;
    for restart in 0..s.restarts.max(1) {
        let mut x: Vec<u8> = match (restart, region.image()) {
            (0, Some(img)) => img.to_vec(),
            _ => bounds.iter().map(|&(lo, hi)| lo + rng.below((hi - lo) as u64 + 1) as u8).collect(),
        };
        let (mut val, mut class) = objective(exec, std::slice::from_ref(&x), pixel, bit)[0];
        evals += 1;
        let movable: Vec<usize> = (0..PIXELS).filter(|&j| bounds[j].0 < bounds[j].1).collect();
        if !movable.is_empty() {
            for _ in 0..s.rounds {
                // Candidate moves: a random pixel set to a random grid value of its range, and
                // the flipped pixel's neighbourhood pushed to its extremes.
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
                        val = v;
                        class = c;
                        x = cands[k].clone();
                    }
                }
            }
        }
        if val > best.value {
            best = Witness { pixel, value: val, class, image: x, evaluations: 0 };
        }
    }
    best.evaluations = evals;
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
