//! How far one pixel's flip can move a logit difference over every image, found by
//! [`logit_difference_ascent`] (signed-gradient ascent on `max_{c,j} Δ(z_c − z_j)`, logits
//! only, so nothing saturates): the search-side counterpart of a certificate's logit movement
//! (`logit_delta_bound` in `certify`'s report).
//!
//!   cargo run --release --example logit_ascent -- MODEL PIXELS RESTARTS STEPS SEED
use std::path::Path;
use zonocert_network::{onnx, Executor};
use zonocert_transform::falsify::{logit_difference_ascent, SearchSettings};
use zonocert_transform::sensitivity::Region;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: logit_ascent MODEL PIXELS RESTARTS STEPS SEED");
        std::process::exit(2);
    }
    let net = onnx::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let pixels: Vec<usize> = args[2].split(',').map(|s| s.parse().expect("pixel")).collect();
    let settings = SearchSettings {
        restarts: args[3].parse().expect("restarts"),
        ascent_steps: args[4].parse().expect("steps"),
        seed: args[5].parse().expect("seed"),
        ..SearchSettings::default()
    };
    let exec = Executor::<f64>::new(&net);
    for &pixel in &pixels {
        let w = logit_difference_ascent(&exec, &Region::Global, pixel, 0, settings);
        let z = exec.forward(&w.image.iter().map(|&b| b as f64 / 255.0).collect::<Vec<_>>(), 1);
        let (c, j) = w.classes;
        println!("pixel {pixel}: Δ(z_{c} − z_{j}) = {:.5} at an image with z_{c} − z_{j} = {:.3}", w.value, z[c] - z[j]);
    }
}
