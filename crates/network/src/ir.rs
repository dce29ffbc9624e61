//! The network IR: a list of layers in topological order over per-sample tensors.
//!
//! Shapes exclude the batch dimension. Value 0 is the network input; value `k + 1` is the
//! output of layer `k`. Weights are stored in `f64`; values imported from `f32` initializers
//! are converted exactly, so the IR denotes the same real-valued function as the ONNX file
//! (except where a pass documents otherwise, see [`crate::passes::fold_batchnorm`]).

use crate::act::Act;
use std::fmt;

/// A per-sample tensor shape (the batch dimension is not part of it).
pub type Shape = Vec<usize>;

/// An SSA value: 0 is the network input, `k + 1` the output of layer `k`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// A 2-D convolution, NCHW, weight `[out, in / groups, kh, kw]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Row-major weights `[out_channels, in_channels / groups, kernel_h, kernel_w]`.
    pub weight: Vec<f64>,
    /// One bias per output channel (zeros when the ONNX node has none).
    pub bias: Vec<f64>,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Strides (h, w).
    pub stride: [usize; 2],
    /// Zero padding (top, left, bottom, right).
    pub pads: [usize; 4],
    /// Dilations (h, w).
    pub dilation: [usize; 2],
    /// Channel groups (`in_channels` for a depthwise conv).
    pub groups: usize,
}

impl Conv {
    /// Output spatial size for an input of `h × w`.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let eff_h = self.dilation[0] * (self.kernel[0] - 1) + 1;
        let eff_w = self.dilation[1] * (self.kernel[1] - 1) + 1;
        let ph = h + self.pads[0] + self.pads[2];
        let pw = w + self.pads[1] + self.pads[3];
        if ph < eff_h || pw < eff_w {
            return None;
        }
        Some(((ph - eff_h) / self.stride[0] + 1, (pw - eff_w) / self.stride[1] + 1))
    }

    /// True when each output channel reads exactly one input channel.
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.in_channels && self.groups == self.out_channels && self.groups > 1
    }
}

/// A fully connected layer `y = W x + b`, weight `[out, in]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Row-major `[out_features, in_features]`.
    pub weight: Vec<f64>,
    /// One bias per output.
    pub bias: Vec<f64>,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

/// A per-channel affine map `y = x · scale + shift` (or `x / scale + shift` when `divide`).
///
/// `scale` and `shift` hold either one value (broadcast over everything) or one per channel
/// (dimension 0 of the per-sample shape). Division is kept as division so that `x / 0.3081` is
/// not replaced by a rounded reciprocal.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAffine {
    /// Multiplier (or divisor), length 1 or channels.
    pub scale: Vec<f64>,
    /// Offset, length 1 or channels.
    pub shift: Vec<f64>,
    /// Divide by `scale` instead of multiplying.
    pub divide: bool,
}

impl ChannelAffine {
    /// The (scale, shift) pair that applies to `channel`.
    pub fn at(&self, channel: usize) -> (f64, f64) {
        let pick = |v: &Vec<f64>| if v.len() == 1 { v[0] } else { v[channel] };
        (pick(&self.scale), pick(&self.shift))
    }
}

/// An operation of the IR. Every analysis handles every variant (exhaustive matches).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// 2-D convolution.
    Conv(Conv),
    /// Fully connected layer.
    Linear(Linear),
    /// Per-channel affine map (BatchNorm not folded, Sub/Div/Mul/Add by constants).
    ChannelAffine(ChannelAffine),
    /// An elementwise activation ([`Act`]: its definition and the facts the engines read).
    Act(Act),
    /// Product of two computed tensors; the second may be `[C, 1, 1]` broadcast over `[C, H, W]`.
    Mul,
    /// Sum of two computed tensors of the same shape (residual connections).
    Add,
    /// Mean over the spatial dimensions: `[C, H, W] → [C, 1, 1]`.
    GlobalAvgPool,
    /// Reinterpret the per-sample tensor with a new shape (same element order).
    Reshape,
    /// Zero padding of the spatial dimensions (top, left, bottom, right).
    Pad([usize; 4]),
    /// Softmax over the last dimension.
    Softmax,
}

impl Op {
    /// A short name for listings.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(c) if c.is_depthwise() => "DepthwiseConv",
            Op::Conv(_) => "Conv",
            Op::Linear(_) => "Linear",
            Op::ChannelAffine(_) => "ChannelAffine",
            Op::Act(a) => a.name(),
            Op::Mul => "Mul",
            Op::Add => "Add",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::Reshape => "Reshape",
            Op::Pad(_) => "Pad",
            Op::Softmax => "Softmax",
        }
    }

    /// Number of trainable parameters stored in the op.
    pub fn parameters(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.len() + c.bias.len(),
            Op::Linear(l) => l.weight.len() + l.bias.len(),
            Op::ChannelAffine(a) => a.scale.len() + a.shift.len(),
            _ => 0,
        }
    }

    /// True for ops whose abstract transformer is exact (affine in their single input).
    pub fn is_affine(&self) -> bool {
        matches!(self, Op::Conv(_) | Op::Linear(_) | Op::ChannelAffine(_) | Op::GlobalAvgPool | Op::Reshape | Op::Pad(_))
    }
}

/// One layer: an op, the values it reads, and the shape it produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// The ONNX node name (or a synthesised one) for error messages and listings.
    pub name: String,
    /// What the layer computes.
    pub op: Op,
    /// Values read, in order (one for unary ops, two for `Mul` and `Add`).
    pub inputs: Vec<ValueId>,
    /// Per-sample output shape.
    pub shape: Shape,
}

/// A squeeze-excite block recognised by [`crate::passes::find_squeeze_excite`]:
/// `x ⊙ sigmoid(conv(swish(conv(avgpool(x)))))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqueezeExcite {
    /// Index of the `GlobalAvgPool` layer that starts the block.
    pub pool: usize,
    /// Index of the `Mul` layer that applies the gate.
    pub mul: usize,
}

/// A feed-forward network over per-sample tensors, layers in topological order.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Name of the graph input (as in the ONNX file).
    pub input_name: String,
    /// Per-sample input shape, e.g. `[1, 28, 28]`.
    pub input_shape: Shape,
    /// Layers in topological order.
    pub layers: Vec<Layer>,
    /// The value the network returns.
    pub output: ValueId,
    /// Squeeze-excite blocks found by the fusion pass (informational).
    pub squeeze_excite: Vec<SqueezeExcite>,
    /// What the import computed in `f64` that a `float32` execution of the original graph
    /// computes in `float32`, described with the node's name (a per-channel multiply-add folded
    /// into the convolution before it; a constant computed from initializers whose value is
    /// not a float32): the real-valued function is unchanged, the float32 one is not.
    pub float64_folds: Vec<String>,
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Network {
    /// Shape of a value.
    pub fn shape_of(&self, v: ValueId) -> &Shape {
        if v.0 == 0 {
            &self.input_shape
        } else {
            &self.layers[v.0 - 1].shape
        }
    }

    /// Per-sample output shape.
    pub fn output_shape(&self) -> &Shape {
        self.shape_of(self.output)
    }

    /// True when the output is a final Softmax layer: the network already outputs
    /// probabilities rather than logits.
    pub fn ends_with_softmax(&self) -> bool {
        self.layers.last().is_some_and(|l| l.op == Op::Softmax) && self.output.0 == self.layers.len()
    }

    /// Total trainable parameters.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.op.parameters()).sum()
    }

    /// For each value, the index of the last layer that reads it (`None` if never read).
    /// Executors use it to free intermediate tensors early.
    pub fn last_uses(&self) -> Vec<Option<usize>> {
        let mut last = vec![None; self.layers.len() + 1];
        for (k, layer) in self.layers.iter().enumerate() {
            for v in &layer.inputs {
                last[v.0] = Some(k);
            }
        }
        last
    }

    /// How many layers read each value.
    pub fn use_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.layers.len() + 1];
        for layer in &self.layers {
            for v in &layer.inputs {
                counts[v.0] += 1;
            }
        }
        counts[self.output.0] += 1;
        counts
    }

    /// Checks the structural invariants every analysis relies on: inputs precede their readers,
    /// arities and shapes agree. The importer always produces valid networks; passes call this.
    pub fn validate(&self) -> Result<(), String> {
        for (k, layer) in self.layers.iter().enumerate() {
            for v in &layer.inputs {
                if v.0 > k {
                    return Err(format!("layer {k} '{}' reads value {} defined later", layer.name, v.0));
                }
            }
            let arity = match layer.op {
                Op::Mul | Op::Add => 2,
                _ => 1,
            };
            if layer.inputs.len() != arity {
                return Err(format!("layer {k} '{}' has {} inputs, {} expected", layer.name, layer.inputs.len(), arity));
            }
        }
        if self.output.0 > self.layers.len() {
            return Err("output value out of range".into());
        }
        Ok(())
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "input '{}' {:?}", self.input_name, self.input_shape)?;
        for (k, l) in self.layers.iter().enumerate() {
            let ins: Vec<String> = l.inputs.iter().map(|v| format!("%{}", v.0)).collect();
            writeln!(f, "%{} = {}({}) {:?}  [{}]", k + 1, l.op.kind(), ins.join(", "), l.shape, l.name)?;
        }
        write!(f, "output %{}", self.output.0)
    }
}

/// The `(weight index, input index)` pairs feeding output `(oc, oy, ox)` of a convolution over
/// an `h × w` input: taps outside the input (zero padding) are skipped.
pub fn conv_taps(conv: &Conv, h: usize, w: usize, oc: usize, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let in_per_group = conv.in_channels / conv.groups;
    let g = oc / (conv.out_channels / conv.groups);
    let [kh, kw] = conv.kernel;
    (0..in_per_group).flat_map(move |icg| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (icg, ky, kx)))).filter_map(
        move |(icg, ky, kx)| {
            let iy = (oy * conv.stride[0] + ky * conv.dilation[0]).checked_sub(conv.pads[0])?;
            let ix = (ox * conv.stride[1] + kx * conv.dilation[1]).checked_sub(conv.pads[1])?;
            if iy >= h || ix >= w {
                return None;
            }
            let ic = g * in_per_group + icg;
            Some((((oc * in_per_group + icg) * kh + ky) * kw + kx, (ic * h + iy) * w + ix))
        },
    )
}

/// For each output of a spatial zero padding of `in_shape`, the input index it copies (`None`
/// for a padded zero).
pub fn pad_sources(in_shape: &[usize], pads: [usize; 4]) -> impl Iterator<Item = Option<usize>> {
    let (c, h, w) = (in_shape[0], in_shape[1], in_shape[2]);
    let (oh, ow) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
    (0..c).flat_map(move |ch| {
        (0..oh).flat_map(move |y| {
            (0..ow).map(move |x| {
                let inside = y >= pads[0] && y < pads[0] + h && x >= pads[1] && x < pads[1] + w;
                inside.then(|| (ch * h + y - pads[0]) * w + x - pads[1])
            })
        })
    })
}
