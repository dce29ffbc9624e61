//! `zonocert merge`: combines the reports of `certify --shard K/N` runs into the report, CSV and
//! heatmap of the unsharded run (bit for bit, apart from timings and machines).

use crate::certify::{print_summary, summarise, write_outputs, Pictured};
use crate::common::write_atomic;
use crate::heatmap::Scale;
use crate::report::{MergedShard, PixelEntry, RegionRecord, Report, RunRecord};
use anyhow::{bail, Context, Result};
use clap::Args;
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
fn read_shard(dir: &Path) -> Result<Report> {
    let path = dir.join("report.json");
    let bytes = std::fs::read(&path).with_context(|| format!("merge: reading {}", path.display()))?;
    let v: Report =
        serde_json::from_slice(&bytes).with_context(|| format!("merge: {} is truncated or not a zonocert report", path.display()))?;
    if !v.complete {
        bail!("merge: {} is not complete (resume that shard first)", path.display());
    }
    if v.shard.is_none() || v.run.shard.is_none() {
        bail!("merge: {} was not made with --shard K/N", path.display());
    }
    Ok(v)
}

/// The run record without its shard: what every shard must share.
fn shared_run(v: &Report) -> RunRecord {
    RunRecord { shard: None, ..v.run.clone() }
}

/// Checks that the shards are the N shards of one run and returns their pixel entries, sorted.
fn combine(dirs: &[PathBuf], shards: &[Report]) -> Result<Vec<PixelEntry>> {
    let first = &shards[0];
    let total = first.shard.context("merge: report without its shard")?;
    let n = total.n;
    let mut seen = vec![false; n];
    let first_run = serde_json::to_value(shared_run(first))?;
    for (dir, v) in dirs.iter().zip(shards) {
        let run = serde_json::to_value(shared_run(v))?;
        if let Some((field, _)) = first_run.as_object().into_iter().flatten().find(|(k, val)| run.get(k.as_str()) != Some(val)) {
            bail!(
                "merge: {} was made with a different {field} than {} ({} there, {} here)",
                dir.display(),
                dirs[0].display(),
                run[field],
                first_run[field]
            );
        }
        let shard = v.shard.context("merge: report without its shard")?;
        if shard.n != n || shard.pixels_total != total.pixels_total {
            bail!("merge: {} belongs to a split into {} shards, not {n}", dir.display(), shard.n);
        }
        let k = shard.k;
        if k == 0 || k > n || std::mem::replace(&mut seen[k - 1], true) {
            bail!("merge: shard {k}/{n} ({}) is given twice or is out of range", dir.display());
        }
    }
    if let Some(k) = seen.iter().position(|s| !s) {
        bail!("merge: shard {}/{n} is missing", k + 1);
    }
    let mut entries: Vec<PixelEntry> = shards.iter().flat_map(|v| v.pixels.iter().copied()).collect();
    entries.sort_by_key(|p| p.pixel);
    if entries.windows(2).any(|w| w[0].pixel == w[1].pixel) {
        bail!("merge: a pixel appears in two shards");
    }
    if entries.len() != total.pixels_total {
        bail!("merge: the shards hold {} pixels, the run asked for {}", entries.len(), total.pixels_total);
    }
    Ok(entries)
}

/// Runs `merge`.
pub fn run(args: MergeArgs) -> Result<()> {
    let shards: Vec<Report> = args.dirs.iter().map(|d| read_shard(d)).collect::<Result<_>>()?;
    let entries = combine(&args.dirs, &shards)?;
    let first = &shards[0];
    let image = match &first.image_hex {
        Some(h) => Some(
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(h.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .context("merge: the report's image_hex is not hex")?,
        ),
        None => None,
    };
    let scale = match first.heatmap.scale.as_str() {
        "linear" => Scale::Linear,
        "log" => Scale::Log,
        _ => Scale::Auto,
    };
    let pictured = Pictured { image, title: first.heatmap.title.clone(), scale };
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating output directory {}", args.out.display()))?;
    let heatmap = write_outputs(&args.out, &entries, &pictured)?;
    let secs: f64 = shards.iter().map(|v| v.time_s).sum();
    let merged_from = args
        .dirs
        .iter()
        .zip(&shards)
        .map(|(d, v)| MergedShard {
            dir: d.display().to_string(),
            shard: v.shard,
            time_s: v.time_s,
            machine: v.machine.clone(),
            peak_rss_mib: v.peak_rss_mib,
            settings: v.settings.clone(),
        })
        .collect();
    let mut report = Report {
        pixels_requested: entries.len(),
        pixels: entries,
        run: shared_run(first),
        shard: None,
        heatmap,
        time_s: secs,
        merged_from,
        ..first.clone()
    };
    report.set_summary(summarise(&report.pixels));
    let text = serde_json::to_string_pretty(&report)?;
    write_atomic(&args.out.join("report.json"), text.as_bytes())?;
    if args.json {
        println!("{text}");
    } else {
        let origin = match &report.region {
            RegionRecord::Point { image, .. } | RegionRecord::Ball { image, .. } => image.clone(),
            RegionRecord::Global => "global".to_string(),
        };
        print_summary(&report, &origin, secs);
        println!("merged {} shards into {}/{{report.json, bounds.csv, heatmap.png}}", shards.len(), args.out.display());
    }
    Ok(())
}
