//! ONNX import: protobuf → constant folding → typed [`Network`].
//!
//! Every subgraph that depends only on initializers and the static input shape (timm's "same"
//! padding arithmetic: Shape, Gather, Cast, Ceil, Clip, Concat, Slice, …) is evaluated here, at
//! import time, so the IR only holds ops on the data path. ONNX op-name strings live only in
//! this file. The batch dimension is symbolic; `Shape` reports it as 1 and `Reshape` treats the
//! first entry of its target as the batch dimension.

use crate::act::Act;
use crate::error::ImportError;
use crate::ir::{numel, ChannelAffine, Conv, Layer, Linear, Network, Op, Shape, ValueId};
use crate::passes;
use crate::proto;
use prost::Message;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// The op types the importer accepts.
pub const SUPPORTED_OPS: &[&str] = &[
    "Add",
    "BatchNormalization",
    "Cast",
    "Ceil",
    "Clip",
    "Concat",
    "Constant",
    "ConstantOfShape",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Floor",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "HardSigmoid",
    "Identity",
    "MatMul",
    "Max",
    "Min",
    "Mul",
    "Neg",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Shape",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Transpose",
    "Unsqueeze",
];

/// Largest constant tensor the importer materialises while folding (guards hostile shapes).
pub const MAX_FOLDED_ELEMENTS: usize = 1 << 26;

/// Reads, decodes and imports an ONNX file, then runs the standard passes
/// ([`passes::optimize`]).
pub fn load(path: &Path) -> Result<Network, ImportError> {
    let bytes = std::fs::read(path).map_err(|cause| ImportError::Io { path: path.to_path_buf(), cause })?;
    load_bytes(&bytes, path)
}

/// Like [`load`] for bytes already in memory; `origin` names them in errors.
pub fn load_bytes(bytes: &[u8], origin: &Path) -> Result<Network, ImportError> {
    let model = proto::ModelProto::decode(bytes).map_err(|e| ImportError::Decode { path: origin.to_path_buf(), reason: e.to_string() })?;
    let net = passes::optimize(import(&model)?);
    check_softmax_is_final(&net)?;
    Ok(net)
}

/// A Softmax is supported only as the network's output: every analysis reports bounds on the
/// logits and applies the softmax step itself, so a Softmax feeding further layers would be
/// analysed as the identity (unsound).
pub fn check_softmax_is_final(net: &Network) -> Result<(), ImportError> {
    for (k, layer) in net.layers.iter().enumerate() {
        if layer.op == Op::Softmax && net.output.0 != k + 1 {
            return Err(ImportError::Unsupported {
                node: layer.name.clone(),
                op: "Softmax".into(),
                reason: "a Softmax whose result feeds further layers (zonocert supports Softmax only as the network's output)".into(),
            });
        }
    }
    Ok(())
}

/// A constant tensor during folding. Integers are held in `f64` (exact below 2⁵³).
#[derive(Debug, Clone, PartialEq)]
struct Tensor {
    dims: Vec<usize>,
    data: Vec<f64>,
    int: bool,
}

impl Tensor {
    fn scalar(v: f64, int: bool) -> Self {
        Tensor { dims: vec![], data: vec![v], int }
    }
    fn vec_i(v: Vec<i64>) -> Self {
        Tensor { dims: vec![v.len()], data: v.into_iter().map(|x| x as f64).collect(), int: true }
    }
    fn ints(&self) -> Vec<i64> {
        self.data.iter().map(|&x| x as i64).collect()
    }
}

#[derive(Debug, Clone)]
enum Val {
    Const(Tensor),
    /// A computed tensor; `shape` excludes the batch dimension.
    Dyn {
        id: ValueId,
        shape: Shape,
    },
}

struct Ctx<'a> {
    node: &'a proto::NodeProto,
    name: String,
}

impl Ctx<'_> {
    fn op(&self) -> &str {
        self.node.op_type()
    }
    fn unsupported(&self, reason: impl Into<String>) -> ImportError {
        ImportError::Unsupported { node: self.name.clone(), op: self.op().into(), reason: reason.into() }
    }
    fn shape_err(&self, reason: impl Into<String>) -> ImportError {
        ImportError::Shape { node: self.name.clone(), op: self.op().into(), reason: reason.into() }
    }
    fn attr(&self, name: &str) -> Option<&proto::AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }
    fn attr_i(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map(|a| a.i()).unwrap_or(default)
    }
    fn attr_f(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map(|a| a.f()).unwrap_or(default)
    }
    fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }
}

fn tensor_from_proto(t: &proto::TensorProto) -> Result<Tensor, ImportError> {
    use proto::tensor_proto::DataType;
    let name = t.name();
    if t.data_location() == proto::tensor_proto::DataLocation::External {
        return Err(ImportError::Graph(format!("initializer '{name}' uses external data, which is not supported")));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    for &d in &t.dims {
        if d < 0 {
            return Err(ImportError::Graph(format!("initializer '{name}' has a negative dimension {d}")));
        }
        dims.push(d as usize);
    }
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let n = n.ok_or_else(|| ImportError::Graph(format!("initializer '{name}' is too large: dims {dims:?}")))?;
    let raw = t.raw_data();
    let dt = DataType::try_from(t.data_type()).unwrap_or(DataType::Undefined);
    let (data, int): (Vec<f64>, bool) = match dt {
        DataType::Float => {
            if !raw.is_empty() {
                (raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(), false)
            } else {
                (t.float_data.iter().map(|&v| v as f64).collect(), false)
            }
        }
        DataType::Double => {
            if !raw.is_empty() {
                (raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect(), false)
            } else {
                (t.double_data.clone(), false)
            }
        }
        DataType::Int64 => {
            if !raw.is_empty() {
                (raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f64).collect(), true)
            } else {
                (t.int64_data.iter().map(|&v| v as f64).collect(), true)
            }
        }
        DataType::Int32 | DataType::Int8 | DataType::Uint8 | DataType::Int16 | DataType::Bool => {
            if !raw.is_empty() {
                match dt {
                    DataType::Int32 => (raw.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(), true),
                    DataType::Int8 => (raw.iter().map(|&b| b as i8 as f64).collect(), true),
                    DataType::Int16 => (raw.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f64).collect(), true),
                    _ => (raw.iter().map(|&b| b as f64).collect(), true),
                }
            } else {
                (t.int32_data.iter().map(|&v| v as f64).collect(), true)
            }
        }
        other => {
            return Err(ImportError::Graph(format!("initializer '{name}' has unsupported element type {other:?}")));
        }
    };
    if data.len() != n {
        return Err(ImportError::Graph(format!("initializer '{name}': dims {dims:?} need {n} values but the data holds {}", data.len())));
    }
    if let Some((index, &value)) = data.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ImportError::NonFinite { name: name.to_string(), index, value });
    }
    Ok(Tensor { dims, data, int })
}

/// Imports a decoded model without running the optimisation passes.
pub fn import(model: &proto::ModelProto) -> Result<Network, ImportError> {
    let graph = model.graph.as_ref().ok_or_else(|| ImportError::Graph("the model has no graph".into()))?;
    let mut vals: HashMap<String, Val> = HashMap::new();
    for init in &graph.initializer {
        vals.insert(init.name().to_string(), Val::Const(tensor_from_proto(init)?));
    }
    let inputs: Vec<&proto::ValueInfoProto> = graph.input.iter().filter(|i| !vals.contains_key(i.name())).collect();
    if inputs.len() != 1 {
        return Err(ImportError::Graph(format!(
            "expected exactly one graph input (besides initializers), found {}: {:?}",
            inputs.len(),
            inputs.iter().map(|i| i.name()).collect::<Vec<_>>()
        )));
    }
    let input = inputs[0];
    let input_shape = input_shape(input)?;
    vals.insert(input.name().to_string(), Val::Dyn { id: ValueId(0), shape: input_shape.clone() });

    let mut layers: Vec<Layer> = Vec::new();
    let mut float64_folds = Vec::new();
    for idx in topological_order(graph, &vals)? {
        let node = &graph.node[idx];
        let name = if node.name().is_empty() { format!("{}_{idx}", node.op_type()) } else { node.name().to_string() };
        let ctx = Ctx { node, name };
        let mut args = Vec::with_capacity(node.input.len());
        for inp in &node.input {
            if inp.is_empty() {
                args.push(None);
                continue;
            }
            let v = vals.get(inp).ok_or_else(|| ImportError::MissingInput {
                node: ctx.name.clone(),
                op: node.op_type().to_string(),
                input: inp.clone(),
            })?;
            args.push(Some(v.clone()));
        }
        let out = translate(&ctx, &args, &mut layers)?;
        if let Val::Const(t) = &out {
            // A float32 runtime computes this node itself, in float32: a folded value that is
            // not a float32 differs from what it computes.
            let folded = node.op_type() != "Constant" && !args.is_empty() && args.iter().flatten().all(|a| matches!(a, Val::Const(_)));
            if folded && !t.int && t.data.iter().any(|&v| v.is_finite() && v as f32 as f64 != v) {
                float64_folds.push(format!("the constant '{}' ({} of initializers, computed in f64)", ctx.name, node.op_type()));
            }
        }
        if let Some(first) = node.output.first() {
            vals.insert(first.clone(), out);
        }
    }
    let out_name =
        graph.output.first().map(|o| o.name().to_string()).ok_or_else(|| ImportError::Graph("the graph has no output".into()))?;
    if graph.output.len() > 1 {
        return Err(ImportError::Graph(format!("expected one graph output, found {}", graph.output.len())));
    }
    let output = match vals.get(&out_name) {
        Some(Val::Dyn { id, .. }) => *id,
        Some(Val::Const(_)) => return Err(ImportError::Graph(format!("output '{out_name}' does not depend on the input"))),
        None => return Err(ImportError::Graph(format!("output '{out_name}' is not produced by any node"))),
    };
    let net = Network { input_name: input.name().to_string(), input_shape, layers, output, squeeze_excite: vec![], float64_folds };
    net.validate().map_err(ImportError::Graph)?;
    Ok(net)
}

fn input_shape(input: &proto::ValueInfoProto) -> Result<Shape, ImportError> {
    use proto::tensor_shape_proto::dimension::Value as Dim;
    use proto::type_proto::Value as Ty;
    let err = |r: String| ImportError::Graph(format!("input '{}': {r}", input.name()));
    let Some(Ty::TensorType(tt)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(err("not a tensor".into()));
    };
    if tt.elem_type() != proto::tensor_proto::DataType::Float as i32 {
        return Err(err(format!("element type {} is not float32", tt.elem_type())));
    }
    let dims = tt.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default();
    if dims.len() < 2 {
        return Err(err(format!("rank {} (expected N×C×H×W or N×F with a batch dimension first)", dims.len())));
    }
    let mut shape = Vec::new();
    for (k, d) in dims.iter().enumerate().skip(1) {
        match d.value {
            Some(Dim::DimValue(v)) if v > 0 => shape.push(v as usize),
            _ => {
                return Err(err(format!(
                    "dimension {k} is not a static positive size ({:?}); only the batch dimension may be dynamic",
                    d.value
                )))
            }
        }
    }
    Ok(shape)
}

fn topological_order(graph: &proto::GraphProto, known: &HashMap<String, Val>) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() {
                producer.insert(o.as_str(), i);
            }
        }
    }
    let mut indegree = vec![0usize; graph.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![vec![]; graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        let mut seen = HashSet::new();
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            if let Some(&p) = producer.get(inp.as_str()) {
                if !known.contains_key(inp) && seen.insert(p) {
                    indegree[i] += 1;
                    readers[p].push(i);
                }
            }
        }
    }
    let mut queue: VecDeque<usize> = (0..graph.node.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = queue.pop_front() {
        order.push(i);
        for &r in &readers[i] {
            indegree[r] -= 1;
            if indegree[r] == 0 {
                queue.push_back(r);
            }
        }
    }
    if order.len() != graph.node.len() {
        let stuck = (0..graph.node.len()).find(|&i| indegree[i] > 0).unwrap_or(0);
        let n = &graph.node[stuck];
        return Err(ImportError::Cycle { node: if n.name().is_empty() { n.op_type().to_string() } else { n.name().to_string() } });
    }
    Ok(order)
}

fn push(layers: &mut Vec<Layer>, ctx: &Ctx, op: Op, inputs: Vec<ValueId>, shape: Shape) -> Val {
    layers.push(Layer { name: ctx.name.clone(), op, inputs, shape: shape.clone() });
    Val::Dyn { id: ValueId(layers.len()), shape }
}

fn need<'v>(ctx: &Ctx, args: &'v [Option<Val>], i: usize) -> Result<&'v Val, ImportError> {
    args.get(i).and_then(|a| a.as_ref()).ok_or_else(|| ctx.unsupported(format!("missing input {i}")))
}

fn need_const<'v>(ctx: &Ctx, args: &'v [Option<Val>], i: usize, what: &str) -> Result<&'v Tensor, ImportError> {
    match need(ctx, args, i)? {
        Val::Const(t) => Ok(t),
        Val::Dyn { .. } => Err(ctx.unsupported(format!("{what} (input {i}) must be a constant, but it depends on the graph input"))),
    }
}

fn opt_const<'v>(ctx: &Ctx, args: &'v [Option<Val>], i: usize, what: &str) -> Result<Option<&'v Tensor>, ImportError> {
    match args.get(i) {
        Some(Some(_)) => need_const(ctx, args, i, what).map(Some),
        _ => Ok(None),
    }
}

fn translate(ctx: &Ctx, args: &[Option<Val>], layers: &mut Vec<Layer>) -> Result<Val, ImportError> {
    let all_const = args.iter().all(|a| matches!(a, None | Some(Val::Const(_))));
    let op = ctx.op().to_string();
    if !SUPPORTED_OPS.contains(&op.as_str()) {
        return Err(ImportError::UnsupportedOp { node: ctx.name.clone(), op, supported: SUPPORTED_OPS.join(", ") });
    }
    if op == "Shape" {
        let dims: Vec<i64> = match need(ctx, args, 0)? {
            Val::Const(t) => t.dims.iter().map(|&d| d as i64).collect(),
            Val::Dyn { shape, .. } => std::iter::once(1).chain(shape.iter().map(|&d| d as i64)).collect(),
        };
        let r = dims.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clampi(ctx.attr_i("start", 0));
        let end = clampi(ctx.attr_i("end", r));
        return Ok(Val::Const(Tensor::vec_i(dims[start..end.max(start)].to_vec())));
    }
    if op == "Constant" {
        return constant_attr(ctx).map(Val::Const);
    }
    if all_const && !args.is_empty() {
        let consts: Vec<Option<&Tensor>> = args
            .iter()
            .map(|a| {
                a.as_ref().map(|v| match v {
                    Val::Const(t) => t,
                    Val::Dyn { .. } => unreachable!(),
                })
            })
            .collect();
        return fold(ctx, &consts).map(Val::Const);
    }
    dynamic(ctx, args, layers)
}

fn constant_attr(ctx: &Ctx) -> Result<Tensor, ImportError> {
    if let Some(a) = ctx.attr("value") {
        let t = a.t.as_ref().ok_or_else(|| ctx.unsupported("'value' attribute holds no tensor"))?;
        return tensor_from_proto(t);
    }
    if let Some(a) = ctx.attr("value_float") {
        return Ok(Tensor::scalar(a.f() as f64, false));
    }
    if let Some(a) = ctx.attr("value_int") {
        return Ok(Tensor::scalar(a.i() as f64, true));
    }
    if let Some(a) = ctx.attr("value_ints") {
        return Ok(Tensor::vec_i(a.ints.clone()));
    }
    if let Some(a) = ctx.attr("value_floats") {
        return Ok(Tensor { dims: vec![a.floats.len()], data: a.floats.iter().map(|&v| v as f64).collect(), int: false });
    }
    Err(ctx.unsupported("Constant without a value attribute this importer reads"))
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

fn broadcast_binary(ctx: &Ctx, a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> f64) -> Result<Tensor, ImportError> {
    let r = a.dims.len().max(b.dims.len());
    let pad = |d: &[usize]| -> Vec<usize> { std::iter::repeat(1).take(r - d.len()).chain(d.iter().copied()).collect() };
    let (da, db) = (pad(&a.dims), pad(&b.dims));
    let mut dims = Vec::with_capacity(r);
    for i in 0..r {
        dims.push(match (da[i], db[i]) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            (x, y) => return Err(ctx.shape_err(format!("cannot broadcast {:?} with {:?} (axis {i}: {x} vs {y})", a.dims, b.dims))),
        });
    }
    let (sa, sb, so) = (strides(&da), strides(&db), strides(&dims));
    let n = numel(&dims);
    let mut data = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut ia, mut ib) = (0, 0);
        for ax in 0..r {
            let c = (flat / so[ax]) % dims[ax];
            if da[ax] > 1 {
                ia += c * sa[ax];
            }
            if db[ax] > 1 {
                ib += c * sb[ax];
            }
        }
        data.push(f(a.data[ia], b.data[ib]));
    }
    Ok(Tensor { dims, data, int: a.int && b.int })
}

/// The activation an ONNX node computes; a `Clip`'s bounds come from its constant inputs
/// `lo` and `hi` (opset 11 on) or its `min`/`max` attributes (before), else are infinite.
fn activation(ctx: &Ctx, lo: Option<&Tensor>, hi: Option<&Tensor>) -> Result<Act, ImportError> {
    let bound = |t: Option<&Tensor>, i: usize, attr: &str, default: f64| match t {
        Some(t) if t.data.len() == 1 => Ok(t.data[0]),
        Some(t) => Err(ctx.shape_err(format!("Clip bound (input {i}) must be a scalar, got shape {:?}", t.dims))),
        None => Ok(ctx.attr(attr).map(|a| a.f() as f64).unwrap_or(default)),
    };
    let f = match ctx.op() {
        "Relu" => Act::Relu,
        "Sigmoid" => Act::Sigmoid,
        "HardSigmoid" => Act::HardSigmoid { alpha: ctx.attr_f("alpha", 0.2) as f64, beta: ctx.attr_f("beta", 0.5) as f64 },
        "Clip" => Act::Clip { lo: bound(lo, 1, "min", f64::NEG_INFINITY)?, hi: bound(hi, 2, "max", f64::INFINITY)? },
        other => return Err(ctx.unsupported(format!("{other} is not an activation"))),
    };
    f.check().map_err(|why| ctx.unsupported(format!("{}: {why}", f.name())))?;
    Ok(f)
}

fn norm_axis(ctx: &Ctx, axis: i64, rank: usize) -> Result<usize, ImportError> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(ctx.shape_err(format!("axis {axis} out of range for rank {rank}")));
    }
    Ok(a as usize)
}

fn fold(ctx: &Ctx, a: &[Option<&Tensor>]) -> Result<Tensor, ImportError> {
    let get = |i: usize| a.get(i).copied().flatten().ok_or_else(|| ctx.unsupported(format!("missing input {i}")));
    let x = get(0)?;
    let map = |f: &dyn Fn(f64) -> f64| Tensor { dims: x.dims.clone(), data: x.data.iter().map(|&v| f(v)).collect(), int: x.int };
    Ok(match ctx.op() {
        "Identity" | "Dropout" => x.clone(),
        "Ceil" => map(&f64::ceil),
        "Floor" => map(&f64::floor),
        "Neg" => map(&|v| -v),
        "Sqrt" => map(&f64::sqrt),
        "Relu" | "Sigmoid" | "HardSigmoid" | "Clip" => {
            let f = activation(ctx, a.get(1).copied().flatten(), a.get(2).copied().flatten())?;
            map(&|v| f.eval(v))
        }
        "Cast" => {
            use proto::tensor_proto::DataType;
            let to = DataType::try_from(ctx.attr_i("to", 1) as i32).unwrap_or(DataType::Undefined);
            match to {
                DataType::Float => Tensor { data: x.data.iter().map(|&v| v as f32 as f64).collect(), int: false, ..x.clone() },
                DataType::Double => Tensor { int: false, ..x.clone() },
                DataType::Int64 | DataType::Int32 | DataType::Int16 | DataType::Int8 | DataType::Uint8 => {
                    Tensor { data: x.data.iter().map(|&v| v.trunc()).collect(), int: true, ..x.clone() }
                }
                DataType::Bool => Tensor { data: x.data.iter().map(|&v| (v != 0.0) as i64 as f64).collect(), int: true, ..x.clone() },
                other => return Err(ctx.unsupported(format!("Cast to {other:?}"))),
            }
        }
        "Add" => broadcast_binary(ctx, x, get(1)?, |p, q| p + q)?,
        "Sub" => broadcast_binary(ctx, x, get(1)?, |p, q| p - q)?,
        "Mul" => broadcast_binary(ctx, x, get(1)?, |p, q| p * q)?,
        "Max" => broadcast_binary(ctx, x, get(1)?, f64::max)?,
        "Min" => broadcast_binary(ctx, x, get(1)?, f64::min)?,
        "Div" => {
            let y = get(1)?;
            let int = x.int && y.int;
            if int && y.data.contains(&0.0) {
                return Err(ctx.unsupported("integer division by zero"));
            }
            broadcast_binary(ctx, x, y, move |p, q| if int { (p / q).trunc() } else { p / q })?
        }
        "Unsqueeze" => {
            let axes = match a.get(1).copied().flatten() {
                Some(t) => t.ints(),
                None => ctx.attr_ints("axes").unwrap_or_default(),
            };
            let r = x.dims.len() + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&ax| norm_axis(ctx, ax, r)).collect::<Result<_, _>>()?;
            axes.sort_unstable();
            let mut dims = x.dims.clone();
            for ax in axes {
                dims.insert(ax.min(dims.len()), 1);
            }
            Tensor { dims, ..x.clone() }
        }
        "Squeeze" => {
            let axes = match a.get(1).copied().flatten() {
                Some(t) => t.ints(),
                None => ctx.attr_ints("axes").unwrap_or_default(),
            };
            let r = x.dims.len();
            let axes: Vec<usize> = axes.iter().map(|&ax| norm_axis(ctx, ax, r)).collect::<Result<_, _>>()?;
            let dims =
                x.dims.iter().enumerate().filter(|(i, &d)| !(d == 1 && (axes.is_empty() || axes.contains(i)))).map(|(_, &d)| d).collect();
            Tensor { dims, ..x.clone() }
        }
        "Concat" => {
            let parts: Vec<&Tensor> = a.iter().flatten().copied().collect();
            let r = x.dims.len().max(1);
            let axis = norm_axis(ctx, ctx.attr_i("axis", 0), r)?;
            let norm = |t: &Tensor| if t.dims.is_empty() { vec![1] } else { t.dims.clone() };
            let mut dims = norm(x);
            dims[axis] = parts.iter().map(|t| norm(t)[axis]).sum();
            let outer: usize = dims[..axis].iter().product();
            let mut data = Vec::with_capacity(numel(&dims));
            for o in 0..outer {
                for t in &parts {
                    let td = norm(t);
                    if td.len() != dims.len() || td.iter().zip(&dims).enumerate().any(|(i, (p, q))| i != axis && p != q) {
                        return Err(ctx.shape_err(format!("Concat of {:?} with {:?} on axis {axis}", x.dims, t.dims)));
                    }
                    let inner: usize = td[axis..].iter().product();
                    data.extend_from_slice(&t.data[o * inner..(o + 1) * inner]);
                }
            }
            Tensor { dims, data, int: parts.iter().all(|t| t.int) }
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = x.ints().iter().map(|&d| d.max(0) as usize).collect();
            let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_FOLDED_ELEMENTS);
            if n.is_none() {
                return Err(ctx.shape_err(format!("ConstantOfShape {dims:?} is larger than {MAX_FOLDED_ELEMENTS} elements")));
            }
            let (v, int) = match ctx.attr("value").and_then(|a| a.t.as_ref()) {
                Some(t) => {
                    let t = tensor_from_proto(t)?;
                    (t.data.first().copied().unwrap_or(0.0), t.int)
                }
                None => (0.0, false),
            };
            Tensor { data: vec![v; numel(&dims)], dims, int }
        }
        "Reshape" => {
            let target = get(1)?.ints();
            let dims = resolve_reshape(ctx, &x.dims, &target)?;
            Tensor { dims, ..x.clone() }
        }
        "Flatten" => {
            let axis = norm_axis(ctx, ctx.attr_i("axis", 1), x.dims.len() + 1)?;
            let dims = vec![x.dims[..axis].iter().product(), x.dims[axis..].iter().product()];
            Tensor { dims, ..x.clone() }
        }
        "Gather" => {
            let idx = get(1)?;
            let axis = norm_axis(ctx, ctx.attr_i("axis", 0), x.dims.len())?;
            let outer: usize = x.dims[..axis].iter().product();
            let inner: usize = x.dims[axis + 1..].iter().product();
            let len = x.dims[axis] as i64;
            let mut data = Vec::new();
            for o in 0..outer {
                for &i in &idx.ints() {
                    let i = if i < 0 { i + len } else { i };
                    if i < 0 || i >= len {
                        return Err(ctx.shape_err(format!("Gather index {i} out of range for axis of size {len}")));
                    }
                    let base = (o * len as usize + i as usize) * inner;
                    data.extend_from_slice(&x.data[base..base + inner]);
                }
            }
            let mut dims = x.dims[..axis].to_vec();
            dims.extend_from_slice(&idx.dims);
            dims.extend_from_slice(&x.dims[axis + 1..]);
            Tensor { dims, data, int: x.int }
        }
        "Slice" => {
            let starts = get(1)?.ints();
            let ends = get(2)?.ints();
            let r = x.dims.len();
            let axes = match a.get(3).copied().flatten() {
                Some(t) => t.ints(),
                None => (0..starts.len() as i64).collect(),
            };
            let steps = match a.get(4).copied().flatten() {
                Some(t) => t.ints(),
                None => vec![1; starts.len()],
            };
            if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
                return Err(
                    ctx.shape_err(format!("Slice starts {starts:?}, ends {ends:?}, axes {axes:?} and steps {steps:?} differ in length"))
                );
            }
            let mut ranges: Vec<Vec<usize>> = x.dims.iter().map(|&d| (0..d).collect()).collect();
            for k in 0..starts.len() {
                let ax = norm_axis(ctx, axes[k], r)?;
                let d = x.dims[ax] as i64;
                let step = steps[k];
                if step == 0 {
                    return Err(ctx.shape_err("Slice step 0"));
                }
                let fix = |v: i64| if v < 0 { v + d } else { v };
                let idx: Vec<usize> = if step > 0 {
                    let (s, e) = (fix(starts[k]).clamp(0, d), fix(ends[k]).clamp(0, d));
                    (s..e).step_by(step as usize).map(|v| v as usize).collect()
                } else {
                    let (s, e) = (fix(starts[k]).clamp(-1, d - 1), fix(ends[k]).clamp(-1, d - 1));
                    let mut v = Vec::new();
                    let mut i = s;
                    while i > e {
                        v.push(i as usize);
                        i += step;
                    }
                    v
                };
                ranges[ax] = idx;
            }
            gather_ranges(x, &ranges)
        }
        "Transpose" => {
            let r = x.dims.len();
            let perm: Vec<usize> = match ctx.attr_ints("perm") {
                Some(p) => p.iter().map(|&v| norm_axis(ctx, v, r)).collect::<Result<_, _>>()?,
                None => (0..r).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..r).collect::<Vec<_>>() {
                return Err(ctx.shape_err(format!("Transpose perm {perm:?} is not a permutation of 0..{r}")));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let (si, so) = (strides(&x.dims), strides(&dims));
            let data = (0..numel(&dims))
                .map(|flat| {
                    let src: usize = (0..r).map(|k| ((flat / so[k]) % dims[k]) * si[perm[k]]).sum();
                    x.data[src]
                })
                .collect();
            Tensor { dims, data, int: x.int }
        }
        other => return Err(ctx.unsupported(format!("{other} on constant inputs cannot be folded"))),
    })
}

fn gather_ranges(x: &Tensor, ranges: &[Vec<usize>]) -> Tensor {
    let dims: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
    let (si, so) = (strides(&x.dims), strides(&dims));
    let data = (0..numel(&dims))
        .map(|flat| {
            let src: usize = (0..dims.len()).map(|k| ranges[k][(flat / so[k]) % dims[k]] * si[k]).sum();
            x.data[src]
        })
        .collect();
    Tensor { dims, data, int: x.int }
}

fn resolve_reshape(ctx: &Ctx, from: &[usize], target: &[i64]) -> Result<Vec<usize>, ImportError> {
    let total = numel(from);
    let mut dims = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                dims.push(1);
            }
            0 => dims.push(*from.get(i).ok_or_else(|| ctx.shape_err("Reshape 0 past the input rank"))?),
            t if t > 0 => dims.push(t as usize),
            _ => return Err(ctx.shape_err(format!("Reshape target {target:?} is invalid"))),
        }
    }
    let known = numel(&dims);
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(ctx.shape_err(format!("cannot reshape {from:?} to {target:?}")));
        }
        dims[i] = total / known;
    }
    if numel(&dims) != total {
        return Err(ctx.shape_err(format!("cannot reshape {from:?} ({total} elements) to {target:?}")));
    }
    Ok(dims)
}

/// Broadcast a constant against a per-sample shape `[C, …]`: one value, or one per channel.
fn per_channel(ctx: &Ctx, c: &Tensor, shape: &[usize]) -> Result<Vec<f64>, ImportError> {
    let n = numel(&c.dims);
    if n == 1 {
        return Ok(vec![c.data[0]]);
    }
    let channels = shape.first().copied().unwrap_or(1);
    // Accept [C], [C,1,1], [1,C,1,1] (numpy broadcasting against [N,C,H,W] or [N,C]).
    let full_rank = shape.len() + 1;
    let mut dims = c.dims.clone();
    while dims.len() < full_rank {
        dims.insert(0, 1);
    }
    let ok = dims.len() == full_rank && dims[0] == 1 && dims[1] == channels && dims[2..].iter().all(|&d| d == 1);
    if !ok || n != channels {
        return Err(ctx.unsupported(format!(
            "constant operand of shape {:?} is neither a scalar nor per-channel for a tensor of shape [N, {}]",
            c.dims,
            shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(c.data.clone())
}

fn dynamic(ctx: &Ctx, args: &[Option<Val>], layers: &mut Vec<Layer>) -> Result<Val, ImportError> {
    // The first dynamic operand; binary ops may have it on either side.
    let (x_id, x_shape) = match args.iter().flatten().find_map(|a| match a {
        Val::Dyn { id, shape } => Some((*id, shape.clone())),
        _ => None,
    }) {
        Some(v) => v,
        None => return Err(ctx.unsupported("no input")),
    };
    let first_is_dyn = matches!(args.first(), Some(Some(Val::Dyn { .. })));
    let rank4 = |what: &str| -> Result<(usize, usize, usize), ImportError> {
        if x_shape.len() != 3 {
            return Err(ctx.shape_err(format!("{what} expects an N×C×H×W input, got per-sample shape {x_shape:?}")));
        }
        Ok((x_shape[0], x_shape[1], x_shape[2]))
    };
    match ctx.op() {
        "Identity" | "Dropout" => Ok(Val::Dyn { id: x_id, shape: x_shape }),
        "Relu" | "Sigmoid" | "HardSigmoid" | "Clip" => {
            let f = activation(ctx, opt_const(ctx, args, 1, "the lower bound")?, opt_const(ctx, args, 2, "the upper bound")?)?;
            Ok(push(layers, ctx, Op::Act(f), vec![x_id], x_shape))
        }
        "Conv" => {
            let (c_in, h, w) = rank4("Conv")?;
            let wt = need_const(ctx, args, 1, "the weight")?;
            if wt.dims.len() != 4 {
                return Err(ctx.shape_err(format!("weight must be 4-D, got {:?}", wt.dims)));
            }
            let groups = ctx.attr_i("group", 1).max(1) as usize;
            let (c_out, cg, kh, kw) = (wt.dims[0], wt.dims[1], wt.dims[2], wt.dims[3]);
            if wt.dims.contains(&0) {
                return Err(ctx.shape_err(format!("weight {:?} has a zero dimension", wt.dims)));
            }
            if cg * groups != c_in || c_out % groups != 0 {
                return Err(ctx.shape_err(format!("weight {:?} with group={groups} does not fit {c_in} input channels", wt.dims)));
            }
            let bias = match opt_const(ctx, args, 2, "the bias")? {
                Some(b) if b.data.len() == c_out => b.data.clone(),
                Some(b) => return Err(ctx.shape_err(format!("bias has {} values for {c_out} output channels", b.data.len()))),
                None => vec![0.0; c_out],
            };
            let two = |name: &str| -> Result<[usize; 2], ImportError> {
                let v = ctx.attr_ints(name).unwrap_or_else(|| vec![1, 1]);
                if v.len() != 2 || v.iter().any(|&s| s < 1) {
                    return Err(ctx.unsupported(format!("{name} {v:?}: only 2-D positive values are supported")));
                }
                Ok([v[0] as usize, v[1] as usize])
            };
            let (stride, dilation) = (two("strides")?, two("dilations")?);
            let auto_pad = ctx.attr("auto_pad").map(|a| String::from_utf8_lossy(a.s()).to_string()).unwrap_or_default();
            let pads = match auto_pad.as_str() {
                "" | "NOTSET" => {
                    let p = ctx.attr_ints("pads").unwrap_or_else(|| vec![0; 4]);
                    if p.len() != 4 || p.iter().any(|&v| v < 0) {
                        return Err(ctx.unsupported(format!("pads {p:?}")));
                    }
                    [p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]
                }
                "VALID" => [0; 4],
                "SAME_UPPER" | "SAME_LOWER" => {
                    let same = |n: usize, k: usize, s: usize, d: usize| ((n.div_ceil(s) - 1) * s + (k - 1) * d + 1).saturating_sub(n);
                    let (ph, pw) = (same(h, kh, stride[0], dilation[0]), same(w, kw, stride[1], dilation[1]));
                    if auto_pad == "SAME_UPPER" {
                        [ph / 2, pw / 2, ph - ph / 2, pw - pw / 2]
                    } else {
                        [ph - ph / 2, pw - pw / 2, ph / 2, pw / 2]
                    }
                }
                other => return Err(ctx.unsupported(format!("auto_pad {other}"))),
            };
            let conv = Conv {
                weight: wt.data.clone(),
                bias,
                in_channels: c_in,
                out_channels: c_out,
                kernel: [kh, kw],
                stride,
                pads,
                dilation,
                groups,
            };
            let (oh, ow) =
                conv.output_hw(h, w).ok_or_else(|| ctx.shape_err(format!("kernel {kh}×{kw} does not fit the padded {h}×{w} input")))?;
            Ok(push(layers, ctx, Op::Conv(conv), vec![x_id], vec![c_out, oh, ow]))
        }
        "BatchNormalization" => {
            let c = x_shape[0];
            let get = |i, what| -> Result<Vec<f64>, ImportError> {
                let t = need_const(ctx, args, i, what)?;
                if t.data.len() != c {
                    return Err(ctx.shape_err(format!("{what} has {} values for {c} channels", t.data.len())));
                }
                Ok(t.data.clone())
            };
            let (gamma, beta, mean, var) = (get(1, "scale")?, get(2, "bias")?, get(3, "mean")?, get(4, "var")?);
            let eps = ctx.attr_f("epsilon", 1e-5) as f64;
            let scale: Vec<f64> = gamma.iter().zip(&var).map(|(g, v)| g / (v + eps).sqrt()).collect();
            let shift: Vec<f64> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
            Ok(push(layers, ctx, Op::ChannelAffine(ChannelAffine { scale, shift, divide: false }), vec![x_id], x_shape))
        }
        "Mul" | "Add" | "Sub" | "Div" => {
            let other = if first_is_dyn { need(ctx, args, 1)? } else { need(ctx, args, 0)? };
            match other {
                Val::Dyn { id: y_id, shape: y_shape } => {
                    let (a, b, sa, sb) = if numel(&x_shape) >= numel(y_shape) {
                        (x_id, *y_id, x_shape.clone(), y_shape.clone())
                    } else {
                        (*y_id, x_id, y_shape.clone(), x_shape.clone())
                    };
                    match ctx.op() {
                        "Add" if sa == sb => Ok(push(layers, ctx, Op::Add, vec![a, b], sa)),
                        "Mul" if sa == sb || (sa.len() == 3 && sb == vec![sa[0], 1, 1]) => Ok(push(layers, ctx, Op::Mul, vec![a, b], sa)),
                        op => Err(ctx.unsupported(format!("{op} of two computed tensors with shapes {sa:?} and {sb:?}"))),
                    }
                }
                Val::Const(c) => {
                    let v = per_channel(ctx, c, &x_shape)?;
                    let zeros = vec![0.0; v.len()];
                    let ones = vec![1.0; v.len()];
                    let aff = match (ctx.op(), first_is_dyn) {
                        ("Mul", _) => ChannelAffine { scale: v, shift: zeros, divide: false },
                        ("Add", _) => ChannelAffine { scale: ones, shift: v, divide: false },
                        ("Sub", true) => ChannelAffine { scale: ones, shift: v.iter().map(|x| -x).collect(), divide: false },
                        ("Sub", false) => ChannelAffine { scale: ones.iter().map(|x| -x).collect(), shift: v, divide: false },
                        ("Div", true) => {
                            if v.contains(&0.0) {
                                return Err(ctx.unsupported("division by a zero constant"));
                            }
                            ChannelAffine { scale: v, shift: zeros, divide: true }
                        }
                        _ => return Err(ctx.unsupported("a constant divided by a computed tensor is not affine")),
                    };
                    Ok(push(layers, ctx, Op::ChannelAffine(aff), vec![x_id], x_shape))
                }
            }
        }
        "GlobalAveragePool" => {
            let (c, _, _) = rank4("GlobalAveragePool")?;
            Ok(push(layers, ctx, Op::GlobalAvgPool, vec![x_id], vec![c, 1, 1]))
        }
        "ReduceMean" => {
            let (c, _, _) = rank4("ReduceMean")?;
            let axes = match opt_const(ctx, args, 1, "axes")? {
                Some(t) => t.ints(),
                None => ctx.attr_ints("axes").unwrap_or_default(),
            };
            let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(ctx, a, 4)).collect::<Result<_, _>>()?;
            axes.sort_unstable();
            if axes != vec![2, 3] {
                return Err(ctx.unsupported(format!("ReduceMean over axes {axes:?} (only the spatial axes [2, 3] are supported)")));
            }
            let pooled = push(layers, ctx, Op::GlobalAvgPool, vec![x_id], vec![c, 1, 1]);
            if ctx.attr_i("keepdims", 1) == 0 {
                let Val::Dyn { id, .. } = pooled else { unreachable!() };
                return Ok(push(layers, ctx, Op::Reshape, vec![id], vec![c]));
            }
            Ok(pooled)
        }
        "Flatten" => {
            if ctx.attr_i("axis", 1) != 1 {
                return Err(ctx.unsupported("Flatten with axis ≠ 1 would mix the batch dimension"));
            }
            Ok(push(layers, ctx, Op::Reshape, vec![x_id], vec![numel(&x_shape)]))
        }
        "Reshape" => {
            let target = need_const(ctx, args, 1, "the target shape")?.ints();
            if target.is_empty() {
                return Err(ctx.shape_err("Reshape to a scalar drops the batch dimension"));
            }
            // The first entry is the batch dimension, whatever the exporter wrote there.
            let dims = resolve_reshape(ctx, &x_shape, &target[1..])?;
            Ok(push(layers, ctx, Op::Reshape, vec![x_id], dims))
        }
        "Squeeze" | "Unsqueeze" => Err(ctx.unsupported(format!("{} of a computed tensor", ctx.op()))),
        "Gemm" | "MatMul" => {
            if x_shape.len() != 1 {
                return Err(ctx.shape_err(format!("{} expects an N×F input, got per-sample shape {x_shape:?}", ctx.op())));
            }
            if !first_is_dyn {
                return Err(ctx.unsupported("the computed tensor must be the first operand"));
            }
            let f_in = x_shape[0];
            let b = need_const(ctx, args, 1, "the weight")?;
            if b.dims.len() != 2 {
                return Err(ctx.shape_err(format!("weight must be 2-D, got {:?}", b.dims)));
            }
            let (trans_a, trans_b) = if ctx.op() == "Gemm" { (ctx.attr_i("transA", 0), ctx.attr_i("transB", 0)) } else { (0, 0) };
            if trans_a != 0 {
                return Err(ctx.unsupported("transA=1"));
            }
            let (k, n) = if trans_b != 0 { (b.dims[1], b.dims[0]) } else { (b.dims[0], b.dims[1]) };
            if k != f_in {
                return Err(ctx.shape_err(format!("weight {:?} (transB={trans_b}) does not take {f_in} features", b.dims)));
            }
            let alpha = ctx.attr_f("alpha", 1.0) as f64;
            let beta = ctx.attr_f("beta", 1.0) as f64;
            let mut weight = vec![0.0; n * k];
            for o in 0..n {
                for i in 0..k {
                    let v = if trans_b != 0 { b.data[o * k + i] } else { b.data[i * n + o] };
                    weight[o * k + i] = alpha * v;
                }
            }
            let bias = match if ctx.op() == "Gemm" { opt_const(ctx, args, 2, "the bias")? } else { None } {
                Some(c) if c.data.len() == n => c.data.iter().map(|v| beta * v).collect(),
                Some(c) if c.data.len() == 1 => vec![beta * c.data[0]; n],
                Some(c) => return Err(ctx.shape_err(format!("bias of shape {:?} for {n} outputs", c.dims))),
                None => vec![0.0; n],
            };
            Ok(push(layers, ctx, Op::Linear(Linear { weight, bias, in_features: k, out_features: n }), vec![x_id], vec![n]))
        }
        "Pad" => {
            let (c, h, w) = rank4("Pad")?;
            let mode = ctx.attr("mode").map(|a| String::from_utf8_lossy(a.s()).to_string()).unwrap_or_else(|| "constant".into());
            if mode != "constant" {
                return Err(ctx.unsupported(format!("mode '{mode}' (only constant zero padding is supported)")));
            }
            let pads = match opt_const(ctx, args, 1, "pads")? {
                Some(t) => t.ints(),
                None => ctx.attr_ints("pads").unwrap_or_default(),
            };
            if let Some(v) = opt_const(ctx, args, 2, "constant_value")? {
                if v.data.iter().any(|&x| x != 0.0) {
                    return Err(ctx.unsupported("non-zero constant_value"));
                }
            }
            if args.get(3).map(|a| a.is_some()).unwrap_or(false) {
                return Err(ctx.unsupported("the axes input"));
            }
            if pads.len() != 8 || pads[0] != 0 || pads[1] != 0 || pads[4] != 0 || pads[5] != 0 || pads.iter().any(|&p| p < 0) {
                return Err(ctx.unsupported(format!("pads {pads:?} (only non-negative spatial padding of N×C×H×W)")));
            }
            let p = [pads[2] as usize, pads[3] as usize, pads[6] as usize, pads[7] as usize];
            Ok(push(layers, ctx, Op::Pad(p), vec![x_id], vec![c, h + p[0] + p[2], w + p[1] + p[3]]))
        }
        "Softmax" => {
            let axis = ctx.attr_i("axis", -1);
            if x_shape.len() != 1 || !(axis == -1 || axis == 1) {
                return Err(ctx.unsupported(format!("Softmax over axis {axis} of per-sample shape {x_shape:?}")));
            }
            Ok(push(layers, ctx, Op::Softmax, vec![x_id], x_shape))
        }
        "Transpose" => {
            let perm = ctx.attr_ints("perm").unwrap_or_default();
            if perm.iter().enumerate().all(|(i, &p)| p == i as i64) {
                Ok(Val::Dyn { id: x_id, shape: x_shape })
            } else {
                Err(ctx.unsupported(format!("Transpose {perm:?} of a computed tensor")))
            }
        }
        other => Err(ctx.unsupported(format!("{other} on a tensor computed from the input"))),
    }
}
