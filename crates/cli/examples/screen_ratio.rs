//! How much tighter the full `diff-zonotope` pass is than its screening pass, per pixel: the
//! ratio of the two passes' unclamped mean-value bounds `max_c p_c(1 − p_c)·max_j |Δ(z_c − z_j)|`
//! (budget 0 against the default 256). Screening skips the full pass only when it would have
//! to be `--screen-factor` (10¹²) times tighter to matter, so this ratio is what that factor
//! must dominate. Prints a Markdown table row per model, region and image.
//!
//!   cargo run --release --example screen_ratio -- MODEL MNIST_DIR IMAGES EPS_LIST PIXELS
//!
//! `EPS_LIST` holds radii and/or `global`; `PIXELS` is `a-b:s` (every s-th pixel of a..=b).

use std::path::Path;
use std::time::Instant;
use zonocert_network::{data::Mnist, onnx};
use zonocert_transform::sensitivity::{Certifier, Method, Region, Settings};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: screen_ratio MODEL MNIST_DIR IMAGES EPS_LIST PIXELS");
        std::process::exit(2);
    }
    let net = onnx::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let mnist = Mnist::test(Path::new(&args[2])).unwrap_or_else(|e| panic!("{}: {e}", args[2]));
    let images: Vec<usize> = args[3].split(',').map(|s| s.parse().expect("image index")).collect();
    let (range, step) = args[5].split_once(':').unwrap_or((&args[5], "1"));
    let (a, b) = range.split_once('-').expect("PIXELS is a-b:s");
    let pixels: Vec<usize> = (a.parse::<usize>().unwrap()..=b.parse().unwrap()).step_by(step.parse().unwrap()).collect();
    let model = Path::new(&args[1]).file_name().unwrap().to_string_lossy().into_owned();
    for eps in args[4].split(',') {
        let cases: Vec<(String, Region)> = if eps == "global" {
            vec![("–".into(), Region::Global)]
        } else {
            let e: f64 = eps.parse().expect("radius");
            images.iter().map(|&i| (i.to_string(), Region::Ball(mnist.image(i).unwrap().to_vec(), e))).collect()
        };
        for (image, region) in cases {
            let cert = Certifier::new(&net, region, Settings { method: Method::DiffZonotope, screen: None, ..Settings::default() });
            let (mut ratios, mut t) = (vec![], [0.0f64; 2]);
            let mut full_max = 0.0f64;
            for &p in &pixels {
                let t0 = Instant::now();
                let cheap = cert.pixel_at_budget(p, None, 0).mean_value_bound();
                let t1 = Instant::now();
                let full = cert.pixel_at_budget(p, None, Settings::default().diff_budget).mean_value_bound();
                t[0] += (t1 - t0).as_secs_f64();
                t[1] += t1.elapsed().as_secs_f64();
                full_max = full_max.max(full);
                if full > 0.0 {
                    ratios.push(cheap / full);
                }
            }
            ratios.sort_by(f64::total_cmp);
            let region_name = match eps.parse::<f64>() {
                Ok(e) if (e * 255.0 - (e * 255.0).round()).abs() < 1e-9 => format!("ε = {}/255", (e * 255.0).round()),
                Ok(e) => format!("ε = {:.2}/255", e * 255.0),
                Err(_) => "global".to_string(),
            };
            let n = pixels.len() as f64;
            println!(
                "| {model} | {region_name} | {image} | {} | {:.3e} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} |",
                pixels.len(),
                full_max,
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1],
                t[0] / n,
                t[1] / n
            );
        }
    }
}
