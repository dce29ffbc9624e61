//! Per-pixel bounds and times of the global certificate's differential pass at several
//! difference budgets (the certified B0's settings otherwise: region budget 1,024,
//! `--carry-errors`, `--region-backsub`, no screening): what `certify --first-budget` should
//! start from (`benchmarks/RESULTS.md`, § Largest first).
//!
//!   cargo run --release --example budget_ladder -- MODEL PIXELS BUDGETS
use std::path::Path;
use std::time::Instant;
use zonocert_network::onnx;
use zonocert_transform::sensitivity::{Certifier, Method, Region, Settings};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: budget_ladder MODEL PIXELS BUDGETS   (comma-separated pixels and difference budgets)");
        std::process::exit(2);
    }
    let net = onnx::load(Path::new(&args[1])).unwrap_or_else(|e| panic!("{}: {e}", args[1]));
    let pixels: Vec<usize> = args[2].split(',').map(|s| s.parse().expect("pixel")).collect();
    let budgets: Vec<usize> = args[3].split(',').map(|s| s.parse().expect("budget")).collect();
    let settings = Settings {
        method: Method::DiffZonotope,
        region_budget: 1024,
        diff_budget: 4096,
        screen: None,
        carry_errors: true,
        region_backsub: true,
        ..Settings::default()
    };
    let t0 = Instant::now();
    let cert = Certifier::new(&net, Region::Global, settings);
    eprintln!("region {:.1} s", t0.elapsed().as_secs_f64());
    for &p in &pixels {
        let mut line = format!("pixel {p}");
        for &b in &budgets {
            let t = Instant::now();
            let u = cert.pixel_at_budget(p, None, b).upper;
            line += &format!(" | {b}: {u:.4} ({:.2} s)", t.elapsed().as_secs_f64());
        }
        println!("{line}");
    }
}
