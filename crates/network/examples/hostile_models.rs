//! Writes the hostile test models of `tests/vectors` that soundness tests run on:
//!
//! * `softmax_inside.onnx`: Flatten → Gemm(784→2; row 0 zero, row 1 = 255·e₃₀₀) → Softmax →
//!   Gemm([[10, 0], [0, 0]], b = [0, 5]). On a black image, flipping pixel 300's LSB moves p₀
//!   by about 0.41; an analysis that treats the inner Softmax as the identity certifies ~0.
//! * `overflow_chain.onnx`: Flatten → Gemm(784→1; +3·10³⁸ at pixel 300, −3·10³⁸ at pixel 301)
//!   → eight Gemm(1→1, 3·10³⁸) → Gemm(1→2, [[1], [0]]). Every weight is a finite float32, but
//!   abstract values overflow f64; the real-valued change at x₃₀₀ = x₃₀₁ is 0.5.
//!
//! Run: `cargo run --release -p zonocert-network --example hostile_models` (from the
//! repository root; it overwrites both files).

use prost::Message;
use zonocert_network::proto::{
    tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim, tensor_shape_proto::Dimension, type_proto, AttributeProto,
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims.iter().map(|d| Dimension { value: Some(d.clone()), denotation: None }).collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: data,
        ..Default::default()
    }
}

/// Gemm `y = x·Wᵀ + b` (transB = 1), with `W` given as `out × in` and bias `b`.
fn gemm(name: &str, x: &str, y: &str, w: Vec<f32>, b: Vec<f32>, inits: &mut Vec<TensorProto>) -> NodeProto {
    let (n_out, n_in) = (b.len(), w.len() / b.len());
    inits.push(tensor(&format!("{name}.weight"), &[n_out as i64, n_in as i64], w));
    inits.push(tensor(&format!("{name}.bias"), &[n_out as i64], b));
    NodeProto {
        name: Some(name.into()),
        op_type: Some("Gemm".into()),
        input: vec![x.into(), format!("{name}.weight"), format!("{name}.bias")],
        output: vec![y.into()],
        attribute: vec![AttributeProto { name: Some("transB".into()), i: Some(1), r#type: Some(proto_attr_int()), ..Default::default() }],
        ..Default::default()
    }
}

fn proto_attr_int() -> i32 {
    zonocert_network::proto::attribute_proto::AttributeType::Int as i32
}

fn node(name: &str, op: &str, x: &str, y: &str) -> NodeProto {
    NodeProto { name: Some(name.into()), op_type: Some(op.into()), input: vec![x.into()], output: vec![y.into()], ..Default::default() }
}

fn model(nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str, classes: i64) -> ModelProto {
    let batch = Dim::DimParam("N".into());
    let input = value_info("input", &[batch.clone(), Dim::DimValue(1), Dim::DimValue(28), Dim::DimValue(28)]);
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("zonocert hostile_models example".into()),
        graph: Some(GraphProto {
            name: Some("hostile".into()),
            node: nodes,
            initializer: inits,
            input: vec![input],
            output: vec![value_info(output, &[batch, Dim::DimValue(classes)])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn softmax_inside() -> ModelProto {
    let mut inits = vec![];
    let mut w1 = vec![0.0f32; 2 * 784];
    w1[784 + 300] = 255.0;
    let nodes = vec![
        node("flatten", "Flatten", "input", "flat"),
        gemm("fc1", "flat", "h", w1, vec![0.0, 0.0], &mut inits),
        node("inner_softmax", "Softmax", "h", "p"),
        gemm("fc2", "p", "logits", vec![10.0, 0.0, 0.0, 0.0], vec![0.0, 5.0], &mut inits),
    ];
    model(nodes, inits, "logits", 2)
}

fn overflow_chain() -> ModelProto {
    let mut inits = vec![];
    let mut w = vec![0.0f32; 784];
    w[300] = 3e38;
    w[301] = -3e38;
    let mut nodes = vec![node("flatten", "Flatten", "input", "flat"), gemm("fc0", "flat", "h0", w, vec![0.0], &mut inits)];
    for k in 1..=8 {
        nodes.push(gemm(&format!("fc{k}"), &format!("h{}", k - 1), &format!("h{k}"), vec![3e38], vec![0.0], &mut inits));
    }
    nodes.push(gemm("head", "h8", "logits", vec![1.0, 0.0], vec![0.0, 0.0], &mut inits));
    model(nodes, inits, "logits", 2)
}

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors");
    for (name, m) in [("softmax_inside.onnx", softmax_inside()), ("overflow_chain.onnx", overflow_chain())] {
        std::fs::write(dir.join(name), m.encode_to_vec())?;
        println!("wrote tests/vectors/{name}");
    }
    Ok(())
}
