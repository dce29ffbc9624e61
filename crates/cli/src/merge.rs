//! `zonocert merge`: combines the reports of `certify --shard K/N` runs into the report, CSV and
//! heatmap of the unsharded run (bit for bit, apart from timings and machines).

use crate::certify::{print_summary, summarise, write_outputs, Pictured};
use crate::common::write_atomic;
use crate::heatmap::Scale;
use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Arguments of `zonocert merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Output directories of the shards (each holding a complete `report.json`).
    #[arg(required = true, num_args = 1..)]
    dirs: Vec<PathBuf>,
    /// Output directory of the merged report, CSV and heatmap.
    #[arg(long)]
    out: PathBuf,
    /// Print the merged report to stdout as JSON.
    #[arg(long)]
    json: bool,
}

/// One shard's report, checked to be complete.
fn read_shard(dir: &Path) -> Result<Value> {
    let path = dir.join("report.json");
    let bytes = std::fs::read(&path).with_context(|| format!("merge: reading {}", path.display()))?;
    let v: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("merge: {} is truncated or not a zonocert report", path.display()))?;
    if v["complete"] != true {
        bail!("merge: {} is not complete (resume that shard first)", path.display());
    }
    if !v["shard"].is_object() || !v["run"].is_object() {
        bail!("merge: {} was not made with --shard K/N", path.display());
    }
    Ok(v)
}

/// The run record without its shard: what every shard must share.
fn shared_run(v: &Value) -> Value {
    let mut run = v["run"].clone();
    if let Some(m) = run.as_object_mut() {
        m.remove("shard");
    }
    run
}

/// Checks that the shards are the N shards of one run and returns their pixel entries, sorted.
fn combine(dirs: &[PathBuf], shards: &[Value]) -> Result<Vec<Value>> {
    let first = &shards[0];
    let n = first["shard"]["n"].as_u64().context("merge: shard record without n")? as usize;
    let mut seen = vec![false; n];
    for (dir, v) in dirs.iter().zip(shards) {
        let (a, b) = (shared_run(first), shared_run(v));
        if let Some((field, _)) = a.as_object().into_iter().flatten().find(|(k, val)| b.get(k.as_str()) != Some(val)) {
            bail!(
                "merge: {} was made with a different {field} than {} ({} there, {} here)",
                dir.display(),
                dirs[0].display(),
                b[field],
                a[field]
            );
        }
        let k = v["shard"]["k"].as_u64().context("merge: shard record without k")? as usize;
        if v["shard"]["n"].as_u64() != Some(n as u64) || v["shard"]["pixels_total"] != first["shard"]["pixels_total"] {
            bail!("merge: {} belongs to a split into {} shards, not {n}", dir.display(), v["shard"]["n"]);
        }
        if k == 0 || k > n || std::mem::replace(&mut seen[k - 1], true) {
            bail!("merge: shard {k}/{n} ({}) is given twice or is out of range", dir.display());
        }
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        bail!("merge: shard {}/{n} is missing", k + 1);
    }
    let mut entries: Vec<Value> = shards.iter().flat_map(|v| v["pixels"].as_array().cloned().unwrap_or_default()).collect();
    entries.sort_by_key(|p| p["pixel"].as_u64());
    if entries.windows(2).any(|w| w[0]["pixel"] == w[1]["pixel"]) {
        bail!("merge: a pixel appears in two shards");
    }
    if Some(entries.len() as u64) != first["shard"]["pixels_total"].as_u64() {
        bail!("merge: the shards hold {} pixels, the run asked for {}", entries.len(), first["shard"]["pixels_total"]);
    }
    Ok(entries)
}

/// Runs `merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let shards: Vec<Value> = args.dirs.iter().map(|d| read_shard(d)).collect::<Result<_>>()?;
    let entries = combine(&args.dirs, &shards)?;
    let first = &shards[0];
    let image = match first["image_hex"].as_str() {
        Some(h) => Some(
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .context("merge: the report's image_hex is not hex")?,
        ),
        None => None,
    };
    let scale = match first["heatmap"]["scale"].as_str() {
        Some("linear") => Scale::Linear,
        Some("log") => Scale::Log,
        _ => Scale::Auto,
    };
    let pictured = Pictured { image, title: first["heatmap"]["title"].as_str().unwrap_or_default().to_string(), scale };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let heatmap = write_outputs(&args.out, &entries, &pictured)?;
    let mut report = first.clone();
    let secs: f64 = shards.iter().filter_map(|v| v["time_s"].as_f64()).sum();
    report["pixels"] = Value::Array(entries);
    report["pixels_requested"] = first["shard"]["pixels_total"].clone();
    report["run"] = shared_run(first);
    report["run"]["shard"] = Value::Null;
    report["shard"] = Value::Null;
    report["heatmap"] = heatmap;
    report["time_s"] = json!(secs);
    report["merged_from"] = json!(args
        .dirs
        .iter()
        .zip(&shards)
        .map(|(d, v)| json!({"dir": d.display().to_string(), "shard": v["shard"], "time_s": v["time_s"], "machine": v["machine"], "peak_rss_mib": v["peak_rss_mib"], "settings": v["settings"]}))
        .collect::<Vec<_>>());
    for (key, value) in summarise(report["pixels"].as_array().map_or(&[][..], Vec::as_slice)).as_object().into_iter().flatten() {
        report[key] = value.clone();
    }
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&args.out.join("report.json"), text.as_bytes())?;
    if args.json {
        println!("{text}");
    } else {
        let origin = report["region"]["image"].as_str().unwrap_or("global").to_string();
        print_summary(&report, &origin, secs);
        println!("merged {} shards into {}/{{report.json, bounds.csv, heatmap.png}}", shards.len(), args.out.display());
    }
    Ok(())
}
