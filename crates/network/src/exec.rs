//! The concrete executor: runs a [`Network`] on a batch of inputs in `f32` or `f64`.

use crate::ir::{numel, Network, Op};
use crate::kernels::{self, ConvKernel, LinearKernel, Real};
use rayon::prelude::*;

enum Prepared<T> {
    Conv(ConvKernel<T>),
    Linear(LinearKernel<T>),
    Other,
}

/// A network with its weights converted to `T`, ready to run.
pub struct Executor<T: Real> {
    net: Network,
    prepared: Vec<Prepared<T>>,
    last_use: Vec<Option<usize>>,
}

impl<T: Real> Executor<T> {
    /// Converts the weights of `net` to `T`.
    pub fn new(net: &Network) -> Self {
        let prepared = net
            .layers
            .iter()
            .map(|l| match &l.op {
                Op::Conv(c) => Prepared::Conv(ConvKernel::new(c)),
                Op::Linear(lin) => Prepared::Linear(LinearKernel::new(lin)),
                _ => Prepared::Other,
            })
            .collect();
        Executor { net: net.clone(), prepared, last_use: net.last_uses() }
    }

    /// The network this executor runs.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Runs `n` samples (`input.len() == n · numel(input_shape)`) and returns the `n` outputs.
    /// Large batches are split into chunks processed in parallel.
    pub fn forward(&self, input: &[T], n: usize) -> Vec<T> {
        let in_len = numel(&self.net.input_shape);
        assert_eq!(input.len(), n * in_len, "input length does not match batch × input shape");
        let chunk = 16;
        if n <= chunk {
            return self.forward_all_values(input, n, false).pop().flatten().unwrap_or_default();
        }
        let parts: Vec<Vec<T>> = input
            .par_chunks(chunk * in_len)
            .map(|c| self.forward_all_values(c, c.len() / in_len, false).pop().flatten().unwrap_or_default())
            .collect();
        parts.concat()
    }

    /// Runs `n` samples and returns every value of the network (index = [`crate::ValueId`]),
    /// with the output last. When `keep_all` is false, intermediates are freed after their last
    /// use and only the output is kept.
    pub fn forward_all_values(&self, input: &[T], n: usize, keep_all: bool) -> Vec<Option<Vec<T>>> {
        let net = &self.net;
        let mut vals: Vec<Option<Vec<T>>> = vec![None; net.layers.len() + 1];
        vals[0] = Some(input.to_vec());
        for (k, layer) in net.layers.iter().enumerate() {
            let x = vals[layer.inputs[0].0].as_ref().expect("inputs computed before use");
            let in_shape = net.shape_of(layer.inputs[0]);
            let out = match (&layer.op, &self.prepared[k]) {
                (Op::Conv(_), Prepared::Conv(kern)) => kern.forward(x, n, in_shape[1], in_shape[2], true),
                (Op::Linear(_), Prepared::Linear(kern)) => kern.forward(x, n, true),
                (Op::Conv(_), _) | (Op::Linear(_), _) => unreachable!("weights prepared in new()"),
                (Op::ChannelAffine(a), _) => {
                    let channels = in_shape[0];
                    kernels::channel_affine(a, x, channels, numel(in_shape) / channels, true)
                }
                (Op::Relu, _) => x.iter().map(|&v| if v > T::zero() { v } else { T::zero() }).collect(),
                (Op::Sigmoid, _) => x.iter().map(|&v| kernels::sigmoid(v)).collect(),
                (Op::Swish, _) => x.iter().map(|&v| kernels::swish(v)).collect(),
                (Op::Mul, _) => {
                    let s = vals[layer.inputs[1].0].as_ref().expect("computed");
                    kernels::mul_broadcast(x, s, numel(in_shape), numel(net.shape_of(layer.inputs[1])))
                }
                (Op::Add, _) => {
                    let y = vals[layer.inputs[1].0].as_ref().expect("computed");
                    x.iter().zip(y).map(|(&a, &b)| a + b).collect()
                }
                (Op::GlobalAvgPool, _) => kernels::global_avg_pool(x, in_shape[1] * in_shape[2]),
                (Op::Reshape, _) => x.clone(),
                (Op::Pad(p), _) => kernels::pad(x, in_shape[0], in_shape[1], in_shape[2], *p),
                (Op::Softmax, _) => kernels::softmax(x, in_shape[0]),
            };
            vals[k + 1] = Some(out);
            if !keep_all {
                for v in &layer.inputs {
                    if self.last_use[v.0] == Some(k) && v.0 != net.output.0 {
                        vals[v.0] = None;
                    }
                }
            }
        }
        let out = vals[net.output.0].take();
        if keep_all {
            vals[net.output.0] = out.clone();
        }
        vals.push(out);
        vals
    }
}

/// Index of the largest value (first on ties).
pub fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
