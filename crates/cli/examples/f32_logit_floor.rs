//! How much of a global `float32` bound the rounding model itself must cost, whatever the
//! analysis. For each image (test images, then seeded random grey and black-and-white images),
//! the first-order worst case of the model's rounding on every logit difference `z_c − z_j`,
//! linearised at the image (`Σ_values Σ_i |∂(z_c − z_j)/∂v_i|·r_i`, `r_i` the model's rounding
//! bound of value `i` at the image): an estimate, not a bound, of what one execution's rounding
//! can move a logit difference there. A sound global `f32` certificate must cover twice the
//! largest of these (both executions) on top of the real one, so it is a floor on how close to
//! the real certificate any analysis under this rounding model can come. Prints the largest
//! value per image kind and the layers that contribute most at the worst image.
//!
//!   cargo run --release --example f32_logit_floor -- MODEL MNIST_DIR TEST_IMAGES RANDOM_IMAGES [ULP]

use std::path::Path;
use zonocert_network::{data::Mnist, onnx, Executor};
use zonocert_transform::float32::{point_rounding, F32Model};
use zonocert_transform::maps::PreparedMaps;

/// The largest first-order rounding of `z_c − z_j` over every ordered pair, and per layer the
/// contribution to that pair.
fn logit_floor(exec: &Executor<f64>, model: &F32Model, net: &zonocert_network::Network, maps: &PreparedMaps, x: &[f64]) -> (f64, Vec<f64>) {
    let values = exec.forward_all_values(x, 1, true);
    let radii = point_rounding(model, net, maps, &values);
    let classes = values[net.output.0].as_ref().expect("output kept").len();
    // One reverse pass per class; a pair's gradient is the difference of two (the derivative
    // is linear in the output direction), and |∂(z_c − z_j)| is the same both ways round.
    let grads: Vec<Vec<Option<Vec<f64>>>> = (0..classes)
        .map(|c| {
            let mut dz = vec![0.0; classes];
            dz[c] = 1.0;
            exec.value_gradients(&values, 1, dz)
        })
        .collect();
    let mut best = (0.0, vec![]);
    for c in 0..classes {
        for j in c + 1..classes {
            let per_layer: Vec<f64> = (0..radii.len())
                .map(|v| match (&grads[c][v], &grads[j][v]) {
                    (Some(gc), Some(gj)) => gc.iter().zip(gj).zip(&radii[v]).map(|((a, b), r)| (a - b).abs() * r).sum(),
                    _ => 0.0,
                })
                .collect();
            let total: f64 = per_layer.iter().sum();
            if total > best.0 {
                best = (total, per_layer);
            }
        }
    }
    best
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(5..=6).contains(&args.len()) {
        eprintln!("usage: f32_logit_floor MODEL MNIST_DIR TEST_IMAGES RANDOM_IMAGES [ULP]");
        std::process::exit(2);
    }
    let net = onnx::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let mnist = Mnist::test(Path::new(&args[2])).unwrap_or_else(|e| panic!("{}: {e}", args[2]));
    let tests: usize = args[3].parse().expect("TEST_IMAGES");
    let randoms: usize = args[4].parse().expect("RANDOM_IMAGES");
    let model = F32Model { ulp: args.get(5).map_or(4.0, |k| k.parse().expect("ULP")), ..F32Model::default() };
    model.check(&net).unwrap_or_else(|e| panic!("{e}"));
    let exec = Executor::<f64>::new(&net);
    let maps = PreparedMaps::new(&net);

    // A fixed linear congruential sequence: the images are the same on every run.
    let mut state: u64 = 0x2026_1201;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut images: Vec<(String, Vec<f64>)> = vec![];
    for i in 0..tests {
        images.push(("test".into(), mnist.image(i).expect("test image").iter().map(|&b| f64::from(b) / 255.0).collect()));
    }
    for _ in 0..randoms {
        images.push(("grey".into(), (0..784).map(|_| f64::from(next() % 256) / 255.0).collect()));
        images.push(("black-and-white".into(), (0..784).map(|_| f64::from(next() % 2)).collect()));
    }
    let mut worst: std::collections::BTreeMap<String, f64> = Default::default();
    let mut overall = (0.0, vec![], String::new());
    for (kind, x) in &images {
        let (floor, per_layer) = logit_floor(&exec, &model, &net, &maps, x);
        let w = worst.entry(kind.clone()).or_insert(0.0);
        *w = w.max(floor);
        if floor > overall.0 {
            overall = (floor, per_layer, kind.clone());
        }
    }
    println!("| images | largest first-order rounding of a logit difference (one execution) |\n|---|---|");
    for (kind, w) in &worst {
        println!("| {kind} | {w:.3e} |");
    }
    let (total, per_layer, kind) = overall;
    let mut order: Vec<usize> = (0..per_layer.len()).collect();
    order.sort_by(|&a, &b| per_layer[b].total_cmp(&per_layer[a]));
    println!("\nlargest: {total:.3e} ({kind} image); the layers that contribute most:");
    for &k in order.iter().take(8) {
        let name = if k == 0 { "input conversion".to_string() } else { net.layers[k - 1].name.clone() };
        println!("  {name}: {:.3e} ({:.1} %)", per_layer[k], 100.0 * per_layer[k] / total);
    }
}
