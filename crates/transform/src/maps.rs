//! The affine layers of the IR as [`LinearMap`]s over `f64`, applied batched to generators.

use crate::float32::Semantics;
use zonocert_domain::LinearMap;
use zonocert_network::ir::{numel, ChannelAffine, Op, Shape};
use zonocert_network::kernels::{self, ConvKernel, LinearKernel};

/// An affine layer ready to act on zonotopes (weights converted once, reused for every
/// analysis of the same network).
pub struct AffineMap {
    kind: Kind,
    in_shape: Shape,
    out_dim: usize,
}

/// An [`AffineMap`] with or without its offset: the differential analysis maps differences,
/// on which biases cancel.
pub struct Affine<'a> {
    /// The layer.
    pub map: &'a AffineMap,
    /// Whether the bias is added to the centre.
    pub with_offset: bool,
}

/// The affine maps of every layer of a network, index = layer (`None` for non-affine ops),
/// and the semantics the analyses that use them certify (with `float32`, they add each layer's
/// rounding).
pub struct PreparedMaps {
    /// One entry per layer.
    pub maps: Vec<Option<AffineMap>>,
    /// Real-valued or `float32` execution.
    pub semantics: Semantics,
}

impl PreparedMaps {
    /// Converts the weights of every affine layer of `net`.
    pub fn new(net: &zonocert_network::Network) -> Self {
        let maps = net.layers.iter().map(|l| AffineMap::new(&l.op, net.shape_of(l.inputs[0]), &l.shape)).collect();
        PreparedMaps { maps, semantics: Semantics::Real }
    }

    /// The same maps for analyses of `semantics`.
    pub fn with_semantics(self, semantics: Semantics) -> Self {
        PreparedMaps { semantics, ..self }
    }

    /// The map of layer `k` (with or without offset), which must be affine.
    pub fn get(&self, k: usize, with_offset: bool) -> Affine<'_> {
        Affine { map: self.maps[k].as_ref().expect("layer is affine"), with_offset }
    }
}

enum Kind {
    Conv { k: ConvKernel<f64>, abs: ConvKernel<f64> },
    Linear { k: LinearKernel<f64>, abs: LinearKernel<f64> },
    Channel(ChannelAffine),
    AvgPool,
    Pad([usize; 4]),
    Reshape,
}

impl AffineMap {
    /// The map of an affine op on inputs of `in_shape`; `None` for ops that are not affine.
    pub fn new(op: &Op, in_shape: &Shape, out_shape: &Shape) -> Option<Self> {
        let kind = match op {
            Op::Conv(c) => {
                let mut a = c.clone();
                a.weight.iter_mut().for_each(|w| *w = w.abs());
                a.bias.iter_mut().for_each(|b| *b = 0.0);
                Kind::Conv { k: ConvKernel::new(c), abs: ConvKernel::new(&a) }
            }
            Op::Linear(l) => {
                let mut a = l.clone();
                a.weight.iter_mut().for_each(|w| *w = w.abs());
                a.bias.iter_mut().for_each(|b| *b = 0.0);
                Kind::Linear { k: LinearKernel::new(l), abs: LinearKernel::new(&a) }
            }
            Op::ChannelAffine(a) => Kind::Channel(a.clone()),
            Op::GlobalAvgPool => Kind::AvgPool,
            Op::Pad(p) => Kind::Pad(*p),
            Op::Reshape => Kind::Reshape,
            Op::Act(_) | Op::Mul | Op::Add | Op::Softmax => return None,
        };
        Some(AffineMap { kind, in_shape: in_shape.clone(), out_dim: numel(out_shape) })
    }

    fn hw(&self) -> (usize, usize) {
        (self.in_shape.get(1).copied().unwrap_or(1), self.in_shape.get(2).copied().unwrap_or(1))
    }

    fn channels_plane(&self) -> (usize, usize) {
        let c = self.in_shape[0];
        (c, numel(&self.in_shape) / c)
    }
}

impl AffineMap {
    /// The layer's coefficients as sparse columns (column `j` lists `(output, coefficient)`
    /// for input `j`) and its offset. With `e = relative_error()`, every listed coefficient
    /// and offset is within `e·|value|` of the exact real one, and unlisted ones are exactly 0.
    pub fn sparse_columns(&self) -> (Vec<Vec<(usize, f64)>>, Vec<f64>) {
        const CHUNK: usize = 64;
        let (n_in, n_out) = (self.in_dim(), self.out_dim());
        let mut cols = Vec::with_capacity(n_in);
        for start in (0..n_in).step_by(CHUNK) {
            let n = CHUNK.min(n_in - start);
            let mut eye = vec![0.0; n * n_in];
            for k in 0..n {
                eye[k * n_in + start + k] = 1.0;
            }
            let y = self.apply(&eye, n);
            for k in 0..n {
                cols.push(y[k * n_out..(k + 1) * n_out].iter().enumerate().filter(|(_, v)| **v != 0.0).map(|(i, v)| (i, *v)).collect());
            }
        }
        (cols, self.offset().unwrap_or_else(|| vec![0.0; n_out]))
    }

    /// Relative error of [`AffineMap::sparse_columns`]: 0 where coefficients are stored
    /// weights (conv, dense, padding, reshape), one rounding where they are quotients
    /// (per-channel division, average pooling).
    pub fn relative_error(&self) -> f64 {
        match &self.kind {
            Kind::Conv { .. } | Kind::Linear { .. } | Kind::Pad(_) | Kind::Reshape => 0.0,
            Kind::Channel(a) if !a.divide => 0.0,
            Kind::Channel(_) | Kind::AvgPool => 2.0 * f64::EPSILON,
        }
    }

    /// The transpose of the linear part applied to `n` vectors `a` of length `out_dim` each
    /// (reverse mode, computed in `f64`; see [`AffineMap::transpose_abs`] for its rounding).
    pub fn transpose(&self, a: &[f64], n: usize) -> Vec<f64> {
        self.transpose_with(a, n, false)
    }

    /// `|Wᵀ|·v` for `n` vectors `v ≥ 0`: with [`AffineMap::transpose_terms`] `t`, the computed
    /// [`AffineMap::transpose`] of `a` is within `(γₜ + relative_error)·|Wᵀ|·|a|` of the exact one.
    pub fn transpose_abs(&self, v: &[f64], n: usize) -> Vec<f64> {
        self.transpose_with(v, n, true)
    }

    /// The most terms one entry of [`AffineMap::transpose`] sums.
    pub fn transpose_terms(&self) -> usize {
        match &self.kind {
            Kind::Conv { k, .. } => (k.conv.out_channels / k.conv.groups) * k.conv.kernel[0] * k.conv.kernel[1],
            Kind::Linear { k, .. } => k.linear.out_features,
            Kind::Channel(_) | Kind::AvgPool | Kind::Pad(_) | Kind::Reshape => 1,
        }
    }

    fn transpose_with(&self, a: &[f64], n: usize, abs: bool) -> Vec<f64> {
        let (h, w) = self.hw();
        match &self.kind {
            Kind::Conv { k, abs: ka } => kernels::conv_transpose(if abs { ka } else { k }, a, n, h, w),
            Kind::Linear { k, abs: ka } => kernels::linear_transpose(if abs { ka } else { k }, a, n),
            Kind::Channel(c) => {
                let (ch, p) = self.channels_plane();
                let scale = if abs { c.scale.iter().map(|s| s.abs()).collect() } else { c.scale.clone() };
                kernels::channel_affine(&ChannelAffine { scale, shift: vec![0.0], divide: c.divide }, a, ch, p, false)
            }
            Kind::AvgPool => kernels::global_avg_pool_transpose(a, h * w),
            Kind::Pad(p) => kernels::pad_transpose(a, self.in_shape[0], h, w, *p),
            Kind::Reshape => a.to_vec(),
        }
    }

    fn in_dim(&self) -> usize {
        numel(&self.in_shape)
    }

    fn out_dim(&self) -> usize {
        self.out_dim
    }

    fn apply(&self, x: &[f64], n: usize) -> Vec<f64> {
        let (h, w) = self.hw();
        match &self.kind {
            Kind::Conv { k, .. } => k.forward(x, n, h, w, false),
            Kind::Linear { k, .. } => k.forward(x, n, false),
            Kind::Channel(a) => {
                let (c, p) = self.channels_plane();
                kernels::channel_affine(a, x, c, p, false)
            }
            Kind::AvgPool => kernels::global_avg_pool(x, h * w),
            Kind::Pad(p) => kernels::pad(x, self.in_shape[0], h, w, *p),
            Kind::Reshape => x.to_vec(),
        }
    }

    fn apply_abs(&self, v: &[f64]) -> Vec<f64> {
        let (h, w) = self.hw();
        match &self.kind {
            Kind::Conv { abs, .. } => abs.forward(v, 1, h, w, false),
            Kind::Linear { abs, .. } => abs.forward(v, 1, false),
            Kind::Channel(a) => {
                let (c, p) = self.channels_plane();
                let abs = ChannelAffine { scale: a.scale.iter().map(|s| s.abs()).collect(), shift: vec![0.0], divide: a.divide };
                kernels::channel_affine(&abs, v, c, p, false)
            }
            Kind::AvgPool => kernels::global_avg_pool(v, h * w),
            Kind::Pad(p) => kernels::pad(v, self.in_shape[0], h, w, *p),
            Kind::Reshape => v.to_vec(),
        }
    }

    fn offset(&self) -> Option<Vec<f64>> {
        match &self.kind {
            Kind::Conv { k, .. } => {
                let (oh, ow) = k.conv.output_hw(self.hw().0, self.hw().1).unwrap_or((1, 1));
                Some(k.conv.bias.iter().flat_map(|&b| std::iter::repeat(b).take(oh * ow)).collect())
            }
            Kind::Linear { k, .. } => Some(k.linear.bias.clone()),
            Kind::Channel(a) => {
                let (c, p) = self.channels_plane();
                Some((0..c).flat_map(|ch| std::iter::repeat(a.at(ch).1).take(p)).collect())
            }
            Kind::AvgPool | Kind::Pad(_) | Kind::Reshape => None,
        }
    }

    fn fan_in(&self) -> usize {
        match &self.kind {
            Kind::Conv { k, .. } => (k.conv.in_channels / k.conv.groups) * k.conv.kernel[0] * k.conv.kernel[1],
            Kind::Linear { k, .. } => k.linear.in_features,
            Kind::Channel(_) => 1,
            Kind::AvgPool => self.hw().0 * self.hw().1,
            Kind::Pad(_) | Kind::Reshape => 1,
        }
    }

    fn exact(&self) -> bool {
        matches!(self.kind, Kind::Pad(_) | Kind::Reshape)
    }
}

impl LinearMap for Affine<'_> {
    fn in_dim(&self) -> usize {
        self.map.in_dim()
    }
    fn out_dim(&self) -> usize {
        self.map.out_dim()
    }
    fn apply(&self, x: &[f64], n: usize) -> Vec<f64> {
        self.map.apply(x, n)
    }
    fn apply_abs(&self, v: &[f64]) -> Vec<f64> {
        self.map.apply_abs(v)
    }
    fn offset(&self) -> Option<Vec<f64>> {
        if self.with_offset {
            self.map.offset()
        } else {
            None
        }
    }
    fn fan_in(&self) -> usize {
        self.map.fan_in()
    }
    fn exact(&self) -> bool {
        self.map.exact()
    }
}
