//! Golden tests: the importer and executor against ONNX Runtime.
//!
//! The vectors in `tests/vectors/` (workspace root) are written by `tests/vectors/generate.py`:
//! small seeded PyTorch models exported to ONNX, each with a batch of 2 inputs and ONNX
//! Runtime's outputs (the reference). Each case is imported with [`onnx::load`] (so the
//! optimisation passes run), executed in `f32` and `f64`, and compared element-wise.
//!
//! Tolerance: |ours − ORT| ≤ 4e-6 · max(1, |ORT|). Neither side is exact: ORT computes in `f32`
//! with its own summation order (im2col/GEMM blocking), our `f32` executor reassociates the
//! same sums differently and applies folded BatchNorm weights, and our `f64` executor differs
//! from ORT by ORT's own `f32` rounding. Measured (`--nocapture` prints it): at most 4.8e-7
//! absolute on these cases, the same size as PyTorch against ORT; 4e-6 leaves about 8× room
//! and still catches a wrong padding, stride or weight layout (errors of order 1e-1) and any
//! op that rounds through a narrower type.

use serde_json::Value;
use std::path::{Path, PathBuf};
use zonocert_network::ir::Conv;
use zonocert_network::{onnx, Act, Executor, Network, Op};

const REL_TOL: f64 = 4e-6;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

struct Case {
    name: String,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    input: Vec<f32>,
    output: Vec<f64>,
    torch_vs_ort: f64,
}

fn floats(v: &Value, key: &str, name: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: '{key}' missing or not an array"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("{name}: non-number in '{key}'")))
        .collect()
}

fn dims(v: &Value, key: &str, name: &str) -> Vec<usize> {
    floats(v, key, name).into_iter().map(|d| d as usize).collect()
}

fn load_case(dir: &Path, name: &str) -> (Network, Case) {
    let json_path = dir.join(format!("{name}.json"));
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", json_path.display()));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: bad JSON: {e}", json_path.display()));
    let case = Case {
        name: name.to_string(),
        input_shape: dims(&v, "input_shape", name),
        output_shape: dims(&v, "output_shape", name),
        // The JSON holds exact decimal expansions of f32 values, so this cast is exact.
        input: floats(&v, "input", name).into_iter().map(|x| x as f32).collect(),
        output: floats(&v, "output", name),
        torch_vs_ort: v["max_abs_torch_vs_ort"].as_f64().unwrap_or(f64::NAN),
    };
    assert_eq!(case.input.len(), case.input_shape.iter().product::<usize>(), "{name}: input length");
    assert_eq!(case.output.len(), case.output_shape.iter().product::<usize>(), "{name}: output length");
    let onnx_path = dir.join(format!("{name}.onnx"));
    let net = onnx::load(&onnx_path).unwrap_or_else(|e| panic!("{name}: import failed: {e}"));
    (net, case)
}

/// Largest absolute difference, and largest difference in units of max(1, |ref|).
fn compare(ours: &[f64], reference: &[f64]) -> (f64, f64) {
    assert_eq!(ours.len(), reference.len());
    ours.iter().zip(reference).fold((0.0f64, 0.0f64), |(abs, rel), (&a, &r)| {
        let d = if a.is_finite() { (a - r).abs() } else { f64::INFINITY };
        (abs.max(d), rel.max(d / r.abs().max(1.0)))
    })
}

/// Runs the case in f32 and f64 and asserts the tolerance; returns the max abs diffs.
fn check(net: &Network, case: &Case) -> (f64, f64) {
    let name = &case.name;
    assert_eq!(net.input_shape, case.input_shape[1..], "{name}: per-sample input shape");
    assert_eq!(net.output_shape(), &case.output_shape[1..], "{name}: per-sample output shape");
    let n = case.input_shape[0];

    let out32: Vec<f64> = Executor::<f32>::new(net).forward(&case.input, n).into_iter().map(f64::from).collect();
    let in64: Vec<f64> = case.input.iter().map(|&x| x as f64).collect();
    let out64 = Executor::<f64>::new(net).forward(&in64, n);

    let (abs32, rel32) = compare(&out32, &case.output);
    let (abs64, rel64) = compare(&out64, &case.output);
    println!(
        "{name:24} max|f32 - ort| = {abs32:.3e}  max|f64 - ort| = {abs64:.3e}  (torch vs ort {:.3e}; {} layers)",
        case.torch_vs_ort,
        net.layers.len()
    );
    assert!(rel32 <= REL_TOL, "{name}: f32 executor differs from ONNX Runtime by {abs32:e} (relative {rel32:e} > {REL_TOL:e})\n{net}");
    assert!(rel64 <= REL_TOL, "{name}: f64 executor differs from ONNX Runtime by {abs64:e} (relative {rel64:e} > {REL_TOL:e})\n{net}");
    (abs32, abs64)
}

fn run(name: &str) -> Network {
    let (net, case) = load_case(&vectors_dir(), name);
    check(&net, &case);
    net
}

fn count(net: &Network, pred: impl Fn(&Op) -> bool) -> usize {
    net.layers.iter().filter(|l| pred(&l.op)).count()
}

fn convs(net: &Network) -> Vec<&Conv> {
    net.layers
        .iter()
        .filter_map(|l| match &l.op {
            Op::Conv(c) => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn conv_variants() {
    let net = run("conv_variants");
    let cs = convs(&net);
    assert_eq!(cs.len(), 7, "{net}");
    assert!(cs.iter().any(|c| c.groups == 2 && c.stride == [2, 2]), "grouped stride-2 conv missing\n{net}");
    assert!(cs.iter().any(|c| c.dilation == [2, 2] && c.pads == [2, 1, 2, 1]), "dilated conv missing\n{net}");
    assert_eq!(cs.iter().filter(|c| c.is_depthwise()).count(), 2, "{net}");
    assert!(cs.iter().any(|c| c.kernel == [1, 1]), "1x1 conv missing\n{net}");
    assert!(cs.iter().any(|c| c.kernel == [3, 1] && c.stride == [2, 1]), "non-square conv missing\n{net}");
    // nn.ZeroPad2d((1, 2, 0, 1)) and F.pad(x, (0, 1, 2, 0)), as (top, left, bottom, right).
    let pads: Vec<[usize; 4]> = net
        .layers
        .iter()
        .filter_map(|l| match l.op {
            Op::Pad(p) => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(pads, vec![[0, 1, 1, 2], [2, 0, 0, 1]], "{net}");
}

#[test]
fn bn_unfolded() {
    let net = run("bn_unfolded");
    assert_eq!(count(&net, |op| matches!(op, Op::ChannelAffine(_))), 0, "BatchNorm not folded into the convs\n{net}");
    assert_eq!(convs(&net).len(), 2, "{net}");
}

#[test]
fn mlp_ops() {
    let net = run("mlp_ops");
    assert_eq!(count(&net, |op| matches!(op, Op::Linear(_))), 3, "two Gemm and one MatMul\n{net}");
    assert_eq!(count(&net, |op| *op == Op::Softmax), 1, "{net}");
    assert_eq!(count(&net, |op| *op == Op::Act(Act::Sigmoid)), 1, "{net}");
    assert_eq!(count(&net, |op| *op == Op::Act(Act::Relu)), 1, "{net}");
    assert!(count(&net, |op| matches!(op, Op::ChannelAffine(a) if a.divide)) >= 2, "divisions by constants kept as division\n{net}");
}

#[test]
fn clamped_activations() {
    let net = run("clamped_activations");
    let acts: Vec<Act> = net
        .layers
        .iter()
        .filter_map(|l| match l.op {
            Op::Act(a) => Some(a),
            _ => None,
        })
        .collect();
    // F.relu6, F.hardtanh, torch.relu, F.hardsigmoid (alpha 1/6 in float32), torch.clamp(max=0.5).
    let hard = Act::HardSigmoid { alpha: (1.0f32 / 6.0) as f64, beta: 0.5 };
    let expected = vec![
        Act::Clip { lo: 0.0, hi: 6.0 },
        Act::Clip { lo: -1.0, hi: 1.0 },
        Act::Relu,
        hard,
        Act::Clip { lo: f64::NEG_INFINITY, hi: 0.5 },
    ];
    assert_eq!(acts, expected, "{net}");
}

fn check_effnet(net: &Network, same_pads: usize) {
    assert!(count(net, |op| *op == Op::Act(Act::Swish)) > 0, "no Swish after fusion\n{net}");
    assert_eq!(net.squeeze_excite.len(), 2, "squeeze-excite blocks\n{net}");
    assert_eq!(count(net, |op| *op == Op::Add), 1, "one residual add\n{net}");
    assert_eq!(count(net, |op| matches!(op, Op::Conv(c) if c.is_depthwise())), 2, "{net}");
    assert_eq!(count(net, |op| matches!(op, Op::Pad(_))), same_pads, "{net}");
    // The exporter folded BatchNorm; the only affine layer left is the input normalisation.
    assert_eq!(count(net, |op| matches!(op, Op::ChannelAffine(_))), 2, "(x - 0.1307) / 0.3081\n{net}");
    for se in &net.squeeze_excite {
        assert_eq!(net.layers[se.pool].op, Op::GlobalAvgPool);
        assert_eq!(net.layers[se.mul].op, Op::Mul);
    }
}

#[test]
fn tiny_effnet_tv() {
    let net = run("tiny_effnet_tv");
    check_effnet(&net, 0);
}

#[test]
fn tiny_effnet_timm() {
    let net = run("tiny_effnet_timm");
    // Conv2dSame on the stride-2 stem and the stride-2 depthwise conv: 28 → pad (0, 0, 1, 1) → 14,
    // 14 → pad (0, 0, 1, 1) → 7. The Shape/Gather/Ceil/Clip/... chains are folded at import.
    check_effnet(&net, 2);
    for l in &net.layers {
        if let Op::Pad(p) = l.op {
            assert_eq!(p, [0, 0, 1, 1], "TF 'same' padding puts the extra row/column at the end\n{net}");
        }
    }
}

#[test]
fn onnx_misc() {
    let net = run("onnx_misc");
    let cs = convs(&net);
    assert_eq!(cs.len(), 2, "{net}");
    assert_eq!(cs[0].pads, [1, 1, 2, 2], "auto_pad SAME_UPPER puts the extra padding at the end");
    assert_eq!(cs[1].pads, [1, 1, 0, 0], "auto_pad SAME_LOWER puts the extra padding at the start");
    assert!(net.layers.iter().any(|l| l.op == Op::Pad([2, 1, 0, 2])), "pads from the constant chain\n{net}");
    assert_eq!(count(&net, |op| matches!(op, Op::Linear(_))), 3, "{net}");
    assert_eq!(count(&net, |op| *op == Op::Add), 1, "{net}");
}

/// Every committed case has a test above.
#[test]
fn all_vectors_covered() {
    let mut found: Vec<String> = std::fs::read_dir(vectors_dir())
        .expect("tests/vectors exists")
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".onnx")).map(str::to_string))
        .collect();
    found.sort();
    let known = [
        "bn_unfolded",
        "clamped_activations",
        "conv_variants",
        "mlp_ops",
        "onnx_misc",
        "overflow_chain",
        "softmax_inside",
        "tiny_effnet_timm",
        "tiny_effnet_tv",
    ];
    assert_eq!(found, known, "a vector was added or removed: update golden.rs");
}

/// The hostile models (written by `examples/hostile_models.rs`, no ORT reference): a Softmax
/// inside the network is refused naming the node; the overflow chain imports unchanged (its
/// weights are finite float32) so the analyses meet its overflow.
#[test]
fn hostile_vectors() {
    let err = onnx::load(&vectors_dir().join("softmax_inside.onnx")).expect_err("a non-final Softmax is refused");
    let msg = err.to_string();
    assert!(msg.contains("inner_softmax") && msg.contains("Softmax only as the network's output"), "{msg}");
    let net = onnx::load(&vectors_dir().join("overflow_chain.onnx")).expect("the overflow chain imports");
    assert_eq!(count(&net, |op| matches!(op, Op::Linear(_))), 10, "{net}");
}

/// Full-size EfficientNet-B0 exports (random weights) written by `generate.py` to a directory
/// outside the repository (they are ~16 MB each). Run with
/// `ZONOCERT_BIG_DIR=/tmp/zonocert_big cargo test -p zonocert-network --release --test golden -- --ignored --nocapture`.
#[test]
#[ignore = "needs the full-size exports from tests/vectors/generate.py in $ZONOCERT_BIG_DIR"]
fn big_effnets() {
    let dir = PathBuf::from(std::env::var("ZONOCERT_BIG_DIR").expect("set ZONOCERT_BIG_DIR to generate.py's --big-dir"));
    for (name, pads) in [("tv_efficientnet_b0", 0), ("timm_tf_efficientnet_b0", 5)] {
        let (net, case) = load_case(&dir, name);
        check(&net, &case);
        // B0 has 16 MBConv blocks, each with squeeze-excite.
        assert_eq!(net.squeeze_excite.len(), 16, "{name}\n{net}");
        assert!(count(&net, |op| *op == Op::Act(Act::Swish)) > 0, "{name}");
        // timm's Conv2dSame pads before the stem and the four stride-2 depthwise convs.
        assert_eq!(count(&net, |op| matches!(op, Op::Pad(_))), pads, "{name}\n{net}");
    }
}
