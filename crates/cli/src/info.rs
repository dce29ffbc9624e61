//! `zonocert info`: what the verifier sees in a model.

use crate::common::ModelArg;
use anyhow::Result;
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use zonocert_network::ir::numel;

/// Arguments of `zonocert info`.
#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// List every layer.
    #[arg(long)]
    layers: bool,
}

/// Prints the summary.
pub fn run(args: InfoArgs) -> Result<()> {
    let net = args.model.load()?;
    let mut ops: BTreeMap<&str, usize> = BTreeMap::new();
    let mut nonlinear_neurons = 0;
    for l in &net.layers {
        *ops.entry(l.op.kind()).or_default() += 1;
        if !l.op.is_affine() {
            nonlinear_neurons += numel(&l.shape);
        }
    }
    let total_neurons: usize = net.layers.iter().map(|l| numel(&l.shape)).sum();
    let layers: Vec<_> = net
        .layers
        .iter()
        .enumerate()
        .map(|(k, l)| {
            json!({"index": k, "name": l.name, "op": l.op.kind(), "inputs": l.inputs.iter().map(|v| v.0).collect::<Vec<_>>(),
                   "shape": l.shape, "neurons": numel(&l.shape), "parameters": l.op.parameters()})
        })
        .collect();
    if args.json {
        let mut v = json!({
            "model": args.model.path().display().to_string(),
            "input": {"name": net.input_name, "shape": net.input_shape},
            "output_shape": net.output_shape(),
            "parameters": net.parameters(),
            "layers": net.layers.len(),
            "ops": ops,
            "neurons": total_neurons,
            "nonlinear_neurons": nonlinear_neurons,
            "squeeze_excite_blocks": net.squeeze_excite.len(),
        });
        if args.layers {
            v["layer_list"] = json!(layers);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("model        {}", args.model.path().display());
    println!("input        '{}' {:?} (per sample)", net.input_name, net.input_shape);
    println!("output       {:?}", net.output_shape());
    println!("parameters   {}", net.parameters());
    println!("layers       {}", net.layers.len());
    println!("neurons      {total_neurons} ({nonlinear_neurons} after nonlinear ops)");
    println!("SE blocks    {}", net.squeeze_excite.len());
    println!("ops          {}", ops.iter().map(|(k, v)| format!("{k}×{v}")).collect::<Vec<_>>().join(", "));
    if args.layers {
        println!();
        println!("{net}");
    }
    Ok(())
}
