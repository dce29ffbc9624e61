//! Rewrites on the IR: Swish fusion, BatchNorm folding, dead-layer removal, zero-branch removal
//! (for real-valued analyses), and recognition of squeeze-excite blocks.

use crate::act::Act;
use crate::ir::{Layer, Network, Op, SqueezeExcite, ValueId};

/// The standard pipeline run after import.
pub fn optimize(net: Network) -> Network {
    let net = fold_batchnorm(net);
    let net = fuse_swish(net);
    let mut net = eliminate_dead(net);
    net.squeeze_excite = find_squeeze_excite(&net);
    net
}

/// Rewrites `Mul(x, Sigmoid(x))` (either operand order) into `Swish(x)`.
///
/// Exact: both compute x·σ(x). The Swish transformer is tighter than a product of two abstract
/// values because it knows both factors come from the same x.
pub fn fuse_swish(mut net: Network) -> Network {
    for k in 0..net.layers.len() {
        if net.layers[k].op != Op::Mul {
            continue;
        }
        let (a, b) = (net.layers[k].inputs[0], net.layers[k].inputs[1]);
        let sigmoid_of = |v: ValueId| -> Option<ValueId> {
            let l = net.layers.get(v.0.checked_sub(1)?)?;
            (l.op == Op::Act(Act::Sigmoid)).then(|| l.inputs[0])
        };
        let x = if sigmoid_of(b) == Some(a) {
            Some(a)
        } else if sigmoid_of(a) == Some(b) {
            Some(b)
        } else {
            None
        };
        if let Some(x) = x {
            net.layers[k].op = Op::Act(Act::Swish);
            net.layers[k].inputs = vec![x];
        }
    }
    net
}

/// Folds a per-channel multiply-add that directly follows a conv (and is that conv's only
/// reader) into the conv's weights and bias.
///
/// In real arithmetic the rewrite is an identity. The folded weights are computed in `f64`, so
/// they differ from the real products by at most one rounding (relative 2⁻⁵³) each; analyses of
/// a folded model certify the network with those `f64` weights. PyTorch's exporter already
/// folds BatchNorm, so the shipped model never goes through this pass.
pub fn fold_batchnorm(mut net: Network) -> Network {
    let uses = net.use_counts();
    for k in 0..net.layers.len() {
        let Op::ChannelAffine(aff) = &net.layers[k].op else { continue };
        if aff.divide {
            continue;
        }
        let src = net.layers[k].inputs[0];
        if src.0 == 0 || uses[src.0] != 1 {
            continue;
        }
        let aff = aff.clone();
        let Op::Conv(conv) = &mut net.layers[src.0 - 1].op else { continue };
        let per_out = conv.weight.len() / conv.out_channels;
        for oc in 0..conv.out_channels {
            let (s, t) = aff.at(oc);
            conv.weight[oc * per_out..(oc + 1) * per_out].iter_mut().for_each(|w| *w *= s);
            conv.bias[oc] = conv.bias[oc] * s + t;
        }
        // The affine layer becomes an alias of the conv output.
        net.layers[k].op = Op::Reshape;
        let name = format!("the per-channel multiply-add '{}' (folded into the convolution before it)", net.layers[k].name);
        net.float64_folds.push(name);
    }
    remove_identity_reshapes(net)
}

/// Replaces reads of shape-preserving `Reshape` layers by reads of their input.
fn remove_identity_reshapes(mut net: Network) -> Network {
    let n = net.layers.len();
    let mut alias: Vec<ValueId> = (0..=n).map(ValueId).collect();
    for k in 0..n {
        let l = &net.layers[k];
        if l.op == Op::Reshape && net.shape_of(l.inputs[0]) == &l.shape {
            alias[k + 1] = alias[l.inputs[0].0];
        }
    }
    for l in &mut net.layers {
        for v in &mut l.inputs {
            *v = alias[v.0];
        }
    }
    net.output = alias[net.output.0];
    net
}

/// Drops layers whose results are never used and renumbers values.
pub fn eliminate_dead(net: Network) -> Network {
    let n = net.layers.len();
    let mut live = vec![false; n + 1];
    live[net.output.0] = true;
    for k in (0..n).rev() {
        if live[k + 1] {
            for v in &net.layers[k].inputs {
                live[v.0] = true;
            }
        }
    }
    let mut new_id = vec![ValueId(0); n + 1];
    let mut layers: Vec<Layer> = Vec::new();
    for (k, layer) in net.layers.into_iter().enumerate() {
        if !live[k + 1] {
            continue;
        }
        let mut layer = layer;
        for v in &mut layer.inputs {
            *v = new_id[v.0];
        }
        layers.push(layer);
        new_id[k + 1] = ValueId(layers.len());
    }
    Network { output: new_id[net.output.0], layers, ..net }
}

/// Replaces `Add(a, b)` by `a` where `b` is computed by a convolution or linear layer whose
/// weights and biases are all exactly zero, then drops the layers that only fed it. Returns the
/// network and how many additions were removed.
///
/// Exact over the reals: such a layer outputs 0 for every finite input, and every value of the
/// network is finite. Not so for a float32 execution, where an input that overflowed to ±∞
/// makes `0·∞` a NaN, so analyses of `--semantics f32` must not use it. Residual blocks whose
/// last BatchNorm has scale and shift 0 (an identity block) are the case this serves: their
/// branch is most of a B0's cost and contributes nothing.
pub fn drop_zero_branches(mut net: Network) -> (Network, usize) {
    let mut dropped = 0;
    for k in 0..net.layers.len() {
        if net.layers[k].op != Op::Add {
            continue;
        }
        let (a, b) = (net.layers[k].inputs[0], net.layers[k].inputs[1]);
        let zero = |v: ValueId| v.0 > 0 && is_zero_map(&net.layers[v.0 - 1]);
        let kept = if zero(b) {
            a
        } else if zero(a) {
            b
        } else {
            continue;
        };
        net.layers[k].op = Op::Reshape;
        net.layers[k].inputs = vec![kept];
        dropped += 1;
    }
    let mut net = eliminate_dead(remove_identity_reshapes(net));
    net.squeeze_excite = find_squeeze_excite(&net);
    (net, dropped)
}

/// Whether `layer` is a convolution or linear layer whose weights and biases are all exactly
/// zero: its output is 0 for every finite input.
pub fn is_zero_map(layer: &Layer) -> bool {
    match &layer.op {
        Op::Conv(c) => c.weight.iter().chain(&c.bias).all(|&w| w == 0.0),
        Op::Linear(l) => l.weight.iter().chain(&l.bias).all(|&w| w == 0.0),
        _ => false,
    }
}

/// Per value (index = value id), whether the network's output depends on it for finite
/// inputs: some path from it to the output avoids every all-zero map ([`is_zero_map`]).
pub fn live_values(net: &Network) -> Vec<bool> {
    let mut live = vec![false; net.layers.len() + 1];
    live[net.output.0] = true;
    for (k, layer) in net.layers.iter().enumerate().rev() {
        if live[k + 1] && !is_zero_map(layer) {
            layer.inputs.iter().for_each(|v| live[v.0] = true);
        }
    }
    live
}

/// Finds `Mul(x, Sigmoid(Conv(Swish|Relu(Conv(GlobalAvgPool(x))))))` blocks.
pub fn find_squeeze_excite(net: &Network) -> Vec<SqueezeExcite> {
    let producer = |v: ValueId| -> Option<(usize, &Layer)> { v.0.checked_sub(1).map(|k| (k, &net.layers[k])) };
    let mut found = Vec::new();
    for (k, l) in net.layers.iter().enumerate() {
        if l.op != Op::Mul {
            continue;
        }
        let gate_chain = |x: ValueId, gate: ValueId| -> Option<usize> {
            let (_, sig) = producer(gate).filter(|(_, s)| s.op == Op::Act(Act::Sigmoid))?;
            let (_, c2) = producer(sig.inputs[0]).filter(|(_, c)| matches!(c.op, Op::Conv(_)))?;
            let (_, act) = producer(c2.inputs[0]).filter(|(_, a)| matches!(a.op, Op::Act(_)))?;
            let (_, c1) = producer(act.inputs[0]).filter(|(_, c)| matches!(c.op, Op::Conv(_)))?;
            let (pk, pool) = producer(c1.inputs[0]).filter(|(_, p)| p.op == Op::GlobalAvgPool)?;
            (pool.inputs[0] == x).then_some(pk)
        };
        // With 1×1 spatial maps both operands have the same shape, so either order can occur.
        let chain = gate_chain(l.inputs[0], l.inputs[1]).or_else(|| gate_chain(l.inputs[1], l.inputs[0]));
        if let Some(pool) = chain {
            found.push(SqueezeExcite { pool, mul: k });
        }
    }
    found
}
