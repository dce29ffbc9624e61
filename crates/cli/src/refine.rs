//! `--refine lp` and its options, shared by `bounds` and `certify`.

use crate::report::{LpRecord, ProgramRecord, WindowRecord};
use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use zonocert_network::Network;
use zonocert_refine::window::Window;
use zonocert_refine::{LpSettings, LpStats};

/// Whether to refine bounds after the abstract analysis.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum RefineArg {
    /// No refinement.
    None,
    /// LPs over a window of late layers (each result proven by a safe dual bound).
    Lp,
}

/// LP refinement options.
#[derive(Args, Clone, Debug)]
pub struct RefineArgs {
    /// Tighten the bounds with linear programs over a window of late layers; refined bounds
    /// are proven and never looser than unrefined ones.
    #[arg(long, value_enum, default_value = "none")]
    pub refine: RefineArg,
    /// Number of final layers in the LP window (default: the last 2, the classifier's flatten and dense layers).
    #[arg(long)]
    pub lp_window: Option<usize>,
    /// Time limit of one LP in seconds (a timed-out LP still gives a valid, looser bound).
    #[arg(long, default_value_t = 10.0)]
    pub lp_timeout: f64,
    /// Total seconds for all LPs of the run; objectives left after it keep unrefined bounds.
    #[arg(long, default_value_t = 600.0)]
    pub lp_budget: f64,
    /// Noise symbols kept when tying the window's inputs to their zonotopes (the rest are
    /// boxed; more is tighter and slower).
    #[arg(long, default_value_t = LpSettings::default().link_generators)]
    pub lp_generators: usize,
    /// Before the final objectives, tighten the region bounds of every neuron entering an
    /// activation or product inside the window (two LPs per neuron; useful with --lp-window 3
    /// or more, where the window holds nonlinear layers).
    #[arg(long)]
    pub lp_neurons: bool,
}

impl RefineArgs {
    /// The LP settings, or `None` without `--refine lp`; checks the options against `net`.
    pub fn settings(&self, net: &Network) -> Result<Option<LpSettings>> {
        if self.refine == RefineArg::None {
            return Ok(None);
        }
        if let Some(w) = self.lp_window {
            if w == 0 || w > net.layers.len() {
                bail!("--lp-window must be between 1 and the network's {} layers, got {w}", net.layers.len());
            }
        }
        if !(self.lp_timeout > 0.0) || !(self.lp_budget >= 0.0) {
            bail!("--lp-timeout must be positive and --lp-budget non-negative (got {} and {})", self.lp_timeout, self.lp_budget);
        }
        Ok(Some(LpSettings {
            window: self.lp_window,
            timeout_s: self.lp_timeout,
            budget_s: self.lp_budget,
            link_generators: self.lp_generators,
            neurons: self.lp_neurons,
            // The engine (or `bounds`) sets the run's semantics.
            ..LpSettings::default()
        }))
    }
}

/// The report's `refinement` entry: which layers and values the LPs covered and what they did.
pub fn report(net: &Network, window: &Window, stats: &LpStats) -> LpRecord {
    let name = |v: usize| if v == 0 { net.input_name.clone() } else { net.layers[v - 1].name.clone() };
    LpRecord {
        method: "lp".to_string(),
        solver: format!(
            "{}; every bound proven by a safe dual bound (Neumaier-Shcherbina) in outward-rounded arithmetic",
            zonocert_refine::lp::SOLVER
        ),
        window: WindowRecord {
            start_layer: window.start,
            layers: net.layers[window.start..].iter().map(|l| format!("{} ({})", l.name, l.op.kind())).collect(),
            inputs: window.inputs.iter().map(|&v| name(v)).collect(),
        },
        program: ProgramRecord { variables: stats.size.0, rows: stats.size.1, nonzeros: stats.size.2 },
        neurons_tightened: stats.neurons,
        neurons_tightened_in: stats.neuron_values.iter().map(|&v| name(v)).collect(),
        lps: stats.lps,
        improved: stats.improved,
        timeouts: stats.timeouts,
        skipped_for_budget: stats.skipped,
        seconds: stats.seconds,
        width_before: stats.width_before,
        width_gained: stats.width_gained,
        width_gained_fraction: if stats.width_before > 0.0 { stats.width_gained / stats.width_before } else { 0.0 },
    }
}
