//! Bad inputs: every class of malformed model or data file gives a typed error (never a panic)
//! whose message names the problem.

use prost::Message;
use std::path::{Path, PathBuf};
use zonocert_network::data::{parse_idx, read_idx, read_png, Mnist};
use zonocert_network::onnx::{self, SUPPORTED_OPS};
use zonocert_network::proto::{
    self, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use zonocert_network::{DataError, ImportError, Network};

// ------------------------------------------------------------------------------------------
// helpers

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

/// A fresh scratch directory for this test (removed at the start, left behind for inspection).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zonocert-bad-input-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn dim(d: Dim) -> proto::tensor_shape_proto::Dimension {
    proto::tensor_shape_proto::Dimension { value: Some(d), denotation: None }
}

/// A float tensor value: `None` entries are symbolic (named) dimensions.
fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Some(v) => dim(Dim::DimValue(*v)),
            None => dim(Dim::DimParam(format!("d{i}"))),
        })
        .collect();
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

fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn float_init(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.to_vec(),
        data_type: Some(DataType::Float as i32),
        float_data: data,
        ..Default::default()
    }
}

fn model(input: ValueInfoProto, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, output: &str) -> ModelProto {
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("zonocert bad_input test".into()),
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: nodes,
            initializer: inits,
            input: vec![input],
            output: vec![value_info(output, &[None])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Encodes the model to bytes and imports it the way `onnx::load` does.
fn import(m: &ModelProto) -> Result<Network, ImportError> {
    onnx::load_bytes(&m.encode_to_vec(), Path::new("test.onnx"))
}

fn import_err(m: &ModelProto) -> ImportError {
    match import(m) {
        Ok(net) => panic!("import unexpectedly succeeded:\n{net}"),
        Err(e) => e,
    }
}

fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error message {msg:?} does not mention {p:?}");
    }
}

/// N×1×4×4 → Relu: a minimal valid model the negative tests perturb.
fn relu_model() -> ModelProto {
    model(value_info("x", &[None, Some(1), Some(4), Some(4)]), vec![node("relu", "Relu", &["x"], &["y"])], vec![], "y")
}

// ------------------------------------------------------------------------------------------
// ONNX

#[test]
fn baseline_model_imports() {
    let net = import(&relu_model()).expect("the unperturbed model imports");
    assert_eq!(net.input_shape, vec![1, 4, 4]);
}

#[test]
fn truncated_onnx() {
    let path = vectors_dir().join("tiny_effnet_tv.onnx");
    let bytes = std::fs::read(&path).expect("committed vector");
    let err = onnx::load_bytes(&bytes[..bytes.len() / 2], &path).unwrap_err();
    assert!(matches!(err, ImportError::Decode { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["tiny_effnet_tv.onnx", "not a valid ONNX model", "protobuf decode failed"]);
}

#[test]
fn truncated_onnx_file_on_disk() {
    let dir = scratch("truncated_onnx_file");
    let bytes = std::fs::read(vectors_dir().join("conv_variants.onnx")).expect("committed vector");
    let path = dir.join("half.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = onnx::load(&path).unwrap_err();
    assert!(matches!(&err, ImportError::Decode { path: p, .. } if *p == path), "{err:?}");
    assert_mentions(&err.to_string(), &["half.onnx", "not a valid ONNX model"]);
}

#[test]
fn missing_onnx_file() {
    let path = scratch("missing_onnx_file").join("nope.onnx");
    let err = onnx::load(&path).unwrap_err();
    assert!(matches!(err, ImportError::Io { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["cannot read model file", "nope.onnx"]);
}

#[test]
fn random_bytes() {
    // xorshift64*, fixed seed: the same "random" file on every run.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    let err = onnx::load_bytes(&bytes, Path::new("random.bin")).unwrap_err();
    assert!(matches!(err, ImportError::Decode { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["random.bin", "not a valid ONNX model"]);
}

#[test]
fn other_file_format() {
    // A PNG header is not a protobuf.
    let bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x1c\0\0\0\x1c\x08\0\0\0\0";
    let err = onnx::load_bytes(bytes, Path::new("digit.png")).unwrap_err();
    assert!(matches!(err, ImportError::Decode { .. }), "{err:?}");
}

#[test]
fn unsupported_op() {
    for op in ["Tanh", "LSTM"] {
        assert!(!SUPPORTED_OPS.contains(&op), "{op} became supported: pick another op for this test");
        let mut m = relu_model();
        m.graph.as_mut().unwrap().node = vec![node("my_layer", op, &["x"], &["y"])];
        let err = import_err(&m);
        match &err {
            ImportError::UnsupportedOp { node, op: o, supported } => {
                assert_eq!(node, "my_layer");
                assert_eq!(o, op);
                assert!(supported.contains("Conv"), "{supported}");
            }
            other => panic!("expected UnsupportedOp, got {other:?}"),
        }
        assert_mentions(&err.to_string(), &["'my_layer'", &format!("unsupported op type '{op}'")]);
    }
}

#[test]
fn unsupported_op_in_constant_subgraph() {
    // Unsupported ops are rejected even where they would only be folded.
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("c", &[1], vec![0.5]));
    g.node = vec![node("const_tanh", "Tanh", &["c"], &["t"]), node("add", "Add", &["x", "t"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::UnsupportedOp { node, op, .. } if node == "const_tanh" && op == "Tanh"), "{err:?}");
}

#[test]
fn constants_folded_in_f64_are_recorded_for_the_f32_semantics() {
    // 0.1f32 · 3 is not a float32: a float32 runtime computes a different constant.
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("a", &[1], vec![0.1]));
    g.initializer.push(float_init("b", &[1], vec![3.0]));
    g.node = vec![node("scale", "Mul", &["a", "b"], &["c"]), node("add", "Add", &["x", "c"], &["y"])];
    let net = import(&m).expect("imports");
    assert_eq!(net.float64_folds.len(), 1, "{:?}", net.float64_folds);
    assert_mentions(&net.float64_folds[0], &["'scale'", "Mul"]);
    // A product that is a float32 (0.5 · 3) computes the same in both: nothing to record.
    let g = m.graph.as_mut().unwrap();
    g.initializer[0] = float_init("a", &[1], vec![0.5]);
    assert!(import(&m).expect("imports").float64_folds.is_empty());
}

#[test]
fn unnamed_node_gets_a_name() {
    let mut m = relu_model();
    let mut n = node("", "Tanh", &["x"], &["y"]);
    n.name = None;
    m.graph.as_mut().unwrap().node = vec![n];
    let err = import_err(&m);
    assert_mentions(&err.to_string(), &["'Tanh_0'", "Tanh"]);
}

#[test]
fn dynamic_spatial_input_shape() {
    // N×1×H×28 with a symbolic H: shapes of everything downstream cannot be folded.
    let mut m = relu_model();
    m.graph.as_mut().unwrap().input = vec![value_info("x", &[None, Some(1), None, Some(28)])];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["input 'x'", "dimension 2", "not a static positive size", "d2"]);
}

#[test]
fn zero_sized_input_dimension() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().input = vec![value_info("x", &[None, Some(1), Some(0), Some(28)])];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["dimension 2", "not a static positive size"]);
}

#[test]
fn non_constant_weight() {
    // A Conv whose weight is computed from the input cannot be represented.
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node = vec![node("dyn_conv", "Conv", &["x", "x"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Unsupported { node, op, .. } if node == "dyn_conv" && op == "Conv"), "{err:?}");
    assert_mentions(&err.to_string(), &["dyn_conv", "weight", "must be a constant"]);
}

#[test]
fn wrong_input_rank() {
    // Rank 1: no room for a batch dimension plus features.
    let mut m = relu_model();
    m.graph.as_mut().unwrap().input = vec![value_info("x", &[None])];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["input 'x'", "rank 1"]);
}

#[test]
fn wrong_rank_for_conv() {
    // N×1×28 (rank 3) into a 2-D convolution.
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.input = vec![value_info("x", &[None, Some(1), Some(28)])];
    g.initializer.push(float_init("w", &[2, 1, 3, 3], vec![0.1; 18]));
    g.node = vec![node("conv", "Conv", &["x", "w"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "conv"), "{err:?}");
    assert_mentions(&err.to_string(), &["'conv'", "N×C×H×W", "[1, 28]"]);
}

#[test]
fn conv_weight_channel_mismatch() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("w", &[2, 3, 3, 3], vec![0.1; 54]));
    g.node = vec![node("conv", "Conv", &["x", "w"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "conv"), "{err:?}");
    assert_mentions(&err.to_string(), &["[2, 3, 3, 3]", "1 input channels"]);
}

fn const_i64(name: &str, v: Vec<i64>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: vec![v.len() as i64],
        data_type: Some(DataType::Int64 as i32),
        int64_data: v,
        ..Default::default()
    }
}

#[test]
fn conv_zero_sized_kernel() {
    // Used to be accepted with a nonsense output shape (and to overflow in debug builds).
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("w", &[2, 1, 0, 3], vec![]));
    g.node = vec![node("conv", "Conv", &["x", "w"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "conv"), "{err:?}");
    assert_mentions(&err.to_string(), &["[2, 1, 0, 3]", "zero dimension"]);
}

#[test]
fn slice_argument_lengths_differ() {
    // Used to panic (index out of bounds) while folding.
    for (ends, axes) in [(vec![1, 1], Some(vec![0])), (vec![1], None)] {
        let mut m = relu_model();
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(float_init("c", &[2, 2], vec![1.0, 2.0, 3.0, 4.0]));
        g.initializer.push(const_i64("starts", vec![0, 0]));
        g.initializer.push(const_i64("ends", ends));
        let mut inputs = vec!["c", "starts", "ends"];
        if let Some(axes) = axes {
            g.initializer.push(const_i64("axes", axes));
            inputs.push("axes");
        }
        g.node = vec![node("slice", "Slice", &inputs, &["s"]), node("add", "Add", &["x", "s"], &["y"])];
        let err = import_err(&m);
        assert!(matches!(&err, ImportError::Shape { node, .. } if node == "slice"), "{err:?}");
        assert_mentions(&err.to_string(), &["'slice'", "differ in length"]);
    }
}

#[test]
fn clip_bound_not_scalar() {
    // Used to panic (index out of bounds) on an empty bound while folding.
    for lo in [vec![], vec![0.0, 1.0]] {
        let mut m = relu_model();
        let g = m.graph.as_mut().unwrap();
        g.initializer.push(float_init("c", &[1], vec![1.0]));
        g.initializer.push(float_init("lo", &[lo.len() as i64], lo));
        g.node = vec![node("clip", "Clip", &["c", "lo"], &["s"]), node("add", "Add", &["x", "s"], &["y"])];
        let err = import_err(&m);
        assert!(matches!(&err, ImportError::Shape { node, .. } if node == "clip"), "{err:?}");
        assert_mentions(&err.to_string(), &["'clip'", "must be a scalar"]);
    }
}

#[test]
fn constant_of_shape_too_large() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(TensorProto {
        name: Some("shape".into()),
        dims: vec![3],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![1 << 30, 1 << 30, 1 << 30],
        ..Default::default()
    });
    g.node = vec![node("big", "ConstantOfShape", &["shape"], &["s"]), node("add", "Add", &["x", "s"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "big"), "{err:?}");
    assert_mentions(&err.to_string(), &["'big'", "ConstantOfShape", "larger than"]);
}

#[test]
fn transpose_perm_not_a_permutation() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("c", &[1, 1, 1], vec![1.0]));
    let mut t = node("tr", "Transpose", &["c"], &["s"]);
    t.attribute.push(proto::AttributeProto {
        name: Some("perm".into()),
        ints: vec![0, 1, 1],
        r#type: Some(proto::attribute_proto::AttributeType::Ints as i32),
        ..Default::default()
    });
    g.node = vec![t, node("add", "Add", &["x", "s"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Shape { node, .. } if node == "tr"), "{err:?}");
    assert_mentions(&err.to_string(), &["'tr'", "not a permutation"]);
}

#[test]
fn nan_weight() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    let mut w = vec![0.1f32; 18];
    w[5] = f32::NAN;
    g.initializer.push(float_init("conv.weight", &[2, 1, 3, 3], w));
    g.node = vec![node("conv", "Conv", &["x", "conv.weight"], &["y"])];
    let err = import_err(&m);
    match &err {
        ImportError::NonFinite { name, index, value } => {
            assert_eq!(name, "conv.weight");
            assert_eq!(*index, 5);
            assert!(value.is_nan());
        }
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert_mentions(&err.to_string(), &["'conv.weight'", "non-finite", "NaN", "index 5"]);
}

#[test]
fn infinite_weight_in_raw_data() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    let mut raw = Vec::new();
    for v in [1.0f32, f32::NEG_INFINITY] {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    g.initializer.push(TensorProto {
        name: Some("scale".into()),
        dims: vec![2],
        data_type: Some(DataType::Float as i32),
        raw_data: Some(raw),
        ..Default::default()
    });
    g.node = vec![node("mul", "Mul", &["x", "scale"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::NonFinite { name, index: 1, value } if name == "scale" && *value == f64::NEG_INFINITY), "{err:?}");
    assert_mentions(&err.to_string(), &["'scale'", "-inf"]);
}

#[test]
fn initializer_data_length_mismatch() {
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(float_init("w", &[2, 1, 3, 3], vec![0.1; 17]));
    g.node = vec![node("conv", "Conv", &["x", "w"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["'w'", "18 values", "17"]);
}

#[test]
fn graph_cycle() {
    // a = Add(x, b); b = Relu(a): b is needed to compute itself.
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node =
        vec![node("loop_add", "Add", &["x", "b"], &["a"]), node("loop_relu", "Relu", &["a"], &["b"]), node("out", "Relu", &["b"], &["y"])];
    let err = import_err(&m);
    match &err {
        ImportError::Cycle { node } => assert!(node == "loop_add" || node == "loop_relu", "{node}"),
        other => panic!("expected Cycle, got {other:?}"),
    }
    assert_mentions(&err.to_string(), &["cycle", "loop_"]);
}

#[test]
fn self_loop() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node = vec![node("self", "Add", &["x", "y"], &["y"])];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Cycle { node } if node == "self"), "{err:?}");
}

#[test]
fn missing_input() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().node = vec![node("add", "Add", &["x", "nowhere"], &["y"])];
    let err = import_err(&m);
    match &err {
        ImportError::MissingInput { node, op, input } => {
            assert_eq!((node.as_str(), op.as_str(), input.as_str()), ("add", "Add", "nowhere"));
        }
        other => panic!("expected MissingInput, got {other:?}"),
    }
    assert_mentions(&err.to_string(), &["'add'", "'nowhere'", "not produced"]);
}

#[test]
fn missing_graph_output() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().output = vec![value_info("not_there", &[None])];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["'not_there'", "not produced"]);
}

#[test]
fn no_graph() {
    let m = ModelProto { ir_version: Some(8), ..Default::default() };
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["no graph"]);
}

#[test]
fn two_graph_inputs() {
    let mut m = relu_model();
    m.graph.as_mut().unwrap().input.push(value_info("x2", &[None, Some(1), Some(4), Some(4)]));
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["exactly one graph input", "x2"]);
}

#[test]
fn non_float_input() {
    let mut m = relu_model();
    let mut vi = value_info("x", &[None, Some(1), Some(4), Some(4)]);
    if let Some(TypeProto { value: Some(type_proto::Value::TensorType(t)), .. }) = vi.r#type.as_mut() {
        t.elem_type = Some(DataType::Double as i32);
    }
    m.graph.as_mut().unwrap().input = vec![vi];
    let err = import_err(&m);
    assert!(matches!(err, ImportError::Graph(_)), "{err:?}");
    assert_mentions(&err.to_string(), &["input 'x'", "not float32"]);
}

#[test]
fn unsupported_attribute_value() {
    // Reflect padding is not zero padding.
    let mut m = relu_model();
    let g = m.graph.as_mut().unwrap();
    g.initializer.push(TensorProto {
        name: Some("pads".into()),
        dims: vec![8],
        data_type: Some(DataType::Int64 as i32),
        int64_data: vec![0, 0, 1, 1, 0, 0, 1, 1],
        ..Default::default()
    });
    let mut pad = node("reflect", "Pad", &["x", "pads"], &["y"]);
    pad.attribute.push(AttributeProto { name: Some("mode".into()), s: Some(b"reflect".to_vec()), r#type: Some(3), ..Default::default() });
    g.node = vec![pad];
    let err = import_err(&m);
    assert!(matches!(&err, ImportError::Unsupported { node, .. } if node == "reflect"), "{err:?}");
    assert_mentions(&err.to_string(), &["'reflect'", "mode 'reflect'"]);
}

// ------------------------------------------------------------------------------------------
// IDX

fn idx_bytes(dims: &[u32], payload: usize) -> Vec<u8> {
    let mut b = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..payload).map(|i| (i % 251) as u8));
    b
}

fn idx_err(test: &str, bytes: &[u8], rank: usize) -> (PathBuf, DataError) {
    let path = scratch(test).join("file-idx-ubyte");
    std::fs::write(&path, bytes).unwrap();
    match read_idx(&path, rank) {
        Ok(idx) => panic!("read_idx accepted a bad file: dims {:?}", idx.dims),
        Err(e) => (path, e),
    }
}

#[test]
fn idx_valid_baseline() {
    let idx = parse_idx(&idx_bytes(&[2, 28, 28], 2 * 784), 3).expect("valid");
    assert_eq!(idx.dims, vec![2, 28, 28]);
}

#[test]
fn idx_wrong_magic() {
    // 0x0D is the float32 type code; the reader only takes unsigned bytes.
    let mut b = idx_bytes(&[2, 28, 28], 2 * 784);
    b[2] = 0x0D;
    let (path, err) = idx_err("idx_wrong_magic", &b, 3);
    assert!(matches!(&err, DataError::Idx { path: p, .. } if *p == path), "{err:?}");
    assert_mentions(&err.to_string(), &["bad IDX file", "bad magic", "00 00 0d 03"]);

    // Not an IDX file at all (a PNG signature).
    let (_, err) = idx_err("idx_png_magic", b"\x89PNG\r\n\x1a\n\0\0\0\0", 3);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["bad magic"]);
}

#[test]
fn idx_wrong_rank() {
    let (_, err) = idx_err("idx_wrong_rank", &idx_bytes(&[10], 10), 3);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["rank 1 in the header, expected 3"]);
}

#[test]
fn idx_truncated() {
    let (_, err) = idx_err("idx_truncated", &idx_bytes(&[2, 28, 28], 784 + 100), 3);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["1568 bytes", "884 follow", "truncated"]);
}

#[test]
fn idx_truncated_header() {
    let b = idx_bytes(&[2, 28, 28], 0);
    let (_, err) = idx_err("idx_truncated_header", &b[..9], 3);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["truncated header"]);
    let (_, err) = idx_err("idx_empty", &[], 3);
    assert_mentions(&err.to_string(), &["0 bytes", "too short"]);
}

#[test]
fn idx_header_count_mismatch() {
    // The header says 10 labels, the payload holds 12.
    let (_, err) = idx_err("idx_count_mismatch", &idx_bytes(&[10], 12), 1);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["promises 10 bytes", "12 follow"]);
}

#[test]
fn idx_corrupt_gzip() {
    let (_, err) = idx_err("idx_corrupt_gzip", &[0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01], 1);
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["gzip"]);
}

#[test]
fn mnist_images_labels_count_mismatch() {
    // Each file is well formed, but 3 images come with 2 labels.
    let dir = scratch("mnist_count_mismatch");
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_bytes(&[3, 28, 28], 3 * 784)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 2, 7, 1]).unwrap();
    let err = Mnist::test(&dir).unwrap_err();
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["3 images but 2 labels"]);
}

#[test]
fn mnist_bad_label_and_image_size() {
    let dir = scratch("mnist_bad_label");
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_bytes(&[2, 28, 28], 2 * 784)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), [0, 0, 8, 1, 0, 0, 0, 2, 7, 12]).unwrap();
    let err = Mnist::test(&dir).unwrap_err();
    assert_mentions(&err.to_string(), &["label 12 is not a digit"]);

    std::fs::write(dir.join("t10k-images-idx3-ubyte"), idx_bytes(&[2, 32, 32], 2 * 1024)).unwrap();
    let err = Mnist::test(&dir).unwrap_err();
    assert!(matches!(err, DataError::Idx { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["[2, 32, 32]", "N×28×28"]);
}

#[test]
fn mnist_missing_files() {
    let err = Mnist::test(&scratch("mnist_missing")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["t10k-images-idx3-ubyte"]);
}

#[test]
fn mnist_index_out_of_range() {
    let m = Mnist { images: vec![0; 784], labels: vec![3] };
    let err = m.image(1).unwrap_err();
    assert!(matches!(err, DataError::IndexOutOfRange { index: 1, len: 1 }), "{err:?}");
}

// ------------------------------------------------------------------------------------------
// PNG

#[test]
fn png_valid_baseline() {
    let path = scratch("png_valid").join("ok.png");
    image::save_buffer(&path, &[7u8; 784], 28, 28, image::ExtendedColorType::L8).unwrap();
    assert_eq!(read_png(&path).expect("valid"), vec![7u8; 784]);
}

#[test]
fn png_wrong_size() {
    let path = scratch("png_wrong_size").join("big.png");
    image::save_buffer(&path, &[0u8; 32 * 32], 32, 32, image::ExtendedColorType::L8).unwrap();
    let err = read_png(&path).unwrap_err();
    assert!(matches!(&err, DataError::Image { path: p, .. } if *p == path), "{err:?}");
    assert_mentions(&err.to_string(), &["big.png", "32×32 pixels", "expected 28×28"]);
}

#[test]
fn png_rgb() {
    let path = scratch("png_rgb").join("colour.png");
    image::save_buffer(&path, &[128u8; 28 * 28 * 3], 28, 28, image::ExtendedColorType::Rgb8).unwrap();
    let err = read_png(&path).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["colour.png", "colour type", "Rgb8", "greyscale"]);
}

#[test]
fn png_not_a_png() {
    let path = scratch("png_garbage").join("fake.png");
    std::fs::write(&path, b"this is not an image").unwrap();
    let err = read_png(&path).unwrap_err();
    assert!(matches!(err, DataError::Image { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["fake.png", "not a readable PNG"]);
}

#[test]
fn png_missing() {
    let path = scratch("png_missing").join("absent.png");
    let err = read_png(&path).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_mentions(&err.to_string(), &["absent.png"]);
}
