//! Would a single-image `float32` enclosure be tight? For each pixel, the bit-0 flip's exact
//! change (f64 executor) beside the first-order estimate of the `float32` rounding at the image
//! and at its twin ([`first_order_rounding`]: the model's worst case linearised at the point,
//! an estimate, not a bound), their sum (what a first-order f32 enclosure would certify), and
//! the certified `diff-zonotope` bound under `--semantics f32` at the image. Prints a Markdown
//! table and a summary line.
//!
//!   cargo run --release --example f32_first_order -- MODEL MNIST_DIR INDEX PIXELS [ULP]
//!
//! `PIXELS` is `a-b:s` (every s-th pixel of a..=b); `ULP` is `--ulp` (default 4).

use std::path::Path;
use std::time::Instant;
use zonocert_network::kernels::softmax;
use zonocert_network::{data::Mnist, onnx, Executor};
use zonocert_transform::float32::{first_order_rounding, F32Model, Semantics};
use zonocert_transform::sensitivity::{Certifier, Method, Region, Settings};

fn probabilities(exec: &Executor<f64>, bytes: &[u8]) -> Vec<f64> {
    let x: Vec<f64> = bytes.iter().map(|&b| f64::from(b) / 255.0).collect();
    let z = exec.forward(&x, 1);
    softmax(&z, z.len())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(5..=6).contains(&args.len()) {
        eprintln!("usage: f32_first_order MODEL MNIST_DIR INDEX PIXELS [ULP]");
        std::process::exit(2);
    }
    let net = onnx::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let mnist = Mnist::test(Path::new(&args[2])).unwrap_or_else(|e| panic!("{}: {e}", args[2]));
    let index: usize = args[3].parse().expect("INDEX");
    let (range, step) = args[4].split_once(':').unwrap_or((&args[4], "1"));
    let (a, b) = range.split_once('-').expect("PIXELS is a-b:s");
    let pixels: Vec<usize> = (a.parse::<usize>().unwrap()..=b.parse().unwrap()).step_by(step.parse().unwrap()).collect();
    let model = F32Model { ulp: args.get(5).map_or(4.0, |k| k.parse().expect("ULP")), ..F32Model::default() };
    model.check(&net).unwrap_or_else(|e| panic!("{e}"));

    let image = mnist.image(index).unwrap().to_vec();
    let exec = Executor::<f64>::new(&net);
    let to_unit = |bytes: &[u8]| -> Vec<f64> { bytes.iter().map(|&b| f64::from(b) / 255.0).collect() };
    let t0 = Instant::now();
    let at_x = first_order_rounding(&model, &net, &to_unit(&image));
    let per_image = t0.elapsed().as_secs_f64();
    let p = probabilities(&exec, &image);
    let settings = Settings { method: Method::DiffZonotope, semantics: Semantics::F32(model), ..Settings::default() };
    let cert = Certifier::new(&net, Region::Point(image.clone()), settings);

    println!("| pixel | exact max_c |Δp_c| | first-order rounding, x and x′ | first-order f32 enclosure | enclosure / exact | certified f32 diff-zonotope |");
    println!("|---|---|---|---|---|---|");
    let (mut ratios, mut worst_rounding) = (vec![], 0.0f64);
    for &i in &pixels {
        let mut twin = image.clone();
        twin[i] ^= 1;
        let at_twin = first_order_rounding(&model, &net, &to_unit(&twin));
        let q = probabilities(&exec, &twin);
        let exact = (0..p.len()).map(|c| (q[c] - p[c]).abs()).fold(0.0, f64::max);
        let rounding = (0..p.len()).map(|c| at_x[c] + at_twin[c]).fold(0.0, f64::max);
        let enclosure = (0..p.len()).map(|c| (q[c] - p[c]).abs() + at_x[c] + at_twin[c]).fold(0.0, f64::max);
        let certified = cert.pixel(i).upper;
        worst_rounding = worst_rounding.max(rounding);
        let ratio = if exact > 0.0 { enclosure / exact } else { f64::INFINITY };
        ratios.push(ratio);
        println!("| {i} | {exact:.3e} | {rounding:.3e} | {enclosure:.3e} | {ratio:.3} | {certified:.3e} |");
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "\nimage {index}, {} pixels, K = {}: first-order rounding up to {worst_rounding:.3e}; enclosure/exact median {:.3}, max {:.3}; {per_image:.2} s per image (one forward and {} reverse passes)",
        pixels.len(),
        model.ulp,
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1],
        p.len()
    );
}
