//! The concrete executor: runs a [`Network`] on a batch of inputs in `f32` or `f64`.

use crate::ir::{numel, ChannelAffine, Network, Op};
use crate::kernels::{self, ConvKernel, LinearKernel, Real};
use crate::values::ValueStore;
use rayon::prelude::*;

enum Prepared<T> {
    Conv(ConvKernel<T>),
    Linear(LinearKernel<T>),
    Other,
}

/// What [`Executor::forward_all_values_with`] calls after each layer: the layer's index, the
/// values held so far, and the layer's output (which it may change).
pub type LayerHook<'a, T> = dyn FnMut(usize, &[Option<Vec<T>>], &mut Vec<T>) + 'a;

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
        self.forward_all_values_with(input, n, keep_all, &mut |_, _, _| {})
    }

    /// [`Executor::forward_all_values`] that lets `after(k, values, out)` change layer `k`'s
    /// output `out` before later layers read it (`values`: every value computed so far that is
    /// still held, index = [`crate::ValueId`]). Tests use it to run the network with chosen
    /// errors at each layer.
    pub fn forward_all_values_with(&self, input: &[T], n: usize, keep_all: bool, after: &mut LayerHook<'_, T>) -> Vec<Option<Vec<T>>> {
        let net = &self.net;
        let mut vals = ValueStore::with_last_uses(net, &self.last_use, input.to_vec(), keep_all);
        for (k, layer) in net.layers.iter().enumerate() {
            let x = vals.get(layer.inputs[0]).expect("inputs computed before use");
            let in_shape = net.shape_of(layer.inputs[0]);
            let out = match (&layer.op, &self.prepared[k]) {
                (Op::Conv(_), Prepared::Conv(kern)) => kern.forward(x, n, in_shape[1], in_shape[2], true),
                (Op::Linear(_), Prepared::Linear(kern)) => kern.forward(x, n, true),
                (Op::Conv(_), _) | (Op::Linear(_), _) => unreachable!("weights prepared in new()"),
                (Op::ChannelAffine(a), _) => {
                    let channels = in_shape[0];
                    kernels::channel_affine(a, x, channels, numel(in_shape) / channels, true)
                }
                (Op::Act(f), _) => x.iter().map(|&v| f.eval(v)).collect(),
                (Op::Mul, _) => {
                    let s = vals.get(layer.inputs[1]).expect("computed");
                    kernels::mul_broadcast(x, s, numel(in_shape), numel(net.shape_of(layer.inputs[1])))
                }
                (Op::Add, _) => {
                    let y = vals.get(layer.inputs[1]).expect("computed");
                    x.iter().zip(y).map(|(&a, &b)| a + b).collect()
                }
                (Op::GlobalAvgPool, _) => kernels::global_avg_pool(x, in_shape[1] * in_shape[2]),
                (Op::Reshape, _) => x.clone(),
                (Op::Pad(p), _) => kernels::pad(x, in_shape[0], in_shape[1], in_shape[2], *p),
                (Op::Softmax, _) => kernels::softmax(x, in_shape[0]),
            };
            let mut out = out;
            after(k, vals.slots(), &mut out);
            vals.finish_layer(k, out);
        }
        let out = vals.take_output();
        let mut vals = vals.into_values();
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

impl<T: Real> Executor<T> {
    /// Reverse mode: given the `values` of a forward pass over `n` samples (from
    /// [`Executor::forward_all_values`] with `keep_all`) and the gradient `out_grad` of some
    /// scalar per sample with respect to the network output, returns its gradient with respect
    /// to the input (`n · numel(input_shape)` values). Used by the lower-bound search to climb
    /// towards large bit-flip effects; nothing certified depends on it.
    pub fn input_gradient(&self, values: &[Option<Vec<T>>], n: usize, out_grad: Vec<T>) -> Vec<T> {
        let mut grads = self.reverse(values, n, out_grad, false);
        grads[0].take().unwrap_or_else(|| vec![T::zero(); n * numel(&self.net.input_shape)])
    }

    /// Reverse mode as [`Executor::input_gradient`], returning the gradient with respect to
    /// every value of the network (index = [`crate::ValueId`]; `None` where the output does not
    /// depend on it).
    pub fn value_gradients(&self, values: &[Option<Vec<T>>], n: usize, out_grad: Vec<T>) -> Vec<Option<Vec<T>>> {
        self.reverse(values, n, out_grad, true)
    }

    fn reverse(&self, values: &[Option<Vec<T>>], n: usize, out_grad: Vec<T>, keep_all: bool) -> Vec<Option<Vec<T>>> {
        let net = &self.net;
        let mut grads: Vec<Option<Vec<T>>> = vec![None; net.layers.len() + 1];
        grads[net.output.0] = Some(out_grad);
        let value = |v: crate::ValueId| values[v.0].as_ref().expect("forward_all_values(keep_all = true)");
        for (k, layer) in net.layers.iter().enumerate().rev() {
            let g = if keep_all { grads[k + 1].clone() } else { grads[k + 1].take() };
            let Some(g) = g else { continue };
            let x_id = layer.inputs[0];
            let in_shape = net.shape_of(x_id);
            let x = value(x_id);
            let mut accumulate = |id: crate::ValueId, d: Vec<T>| match &mut grads[id.0] {
                Some(acc) => acc.iter_mut().zip(d).for_each(|(a, b)| *a += b),
                slot => *slot = Some(d),
            };
            match (&layer.op, &self.prepared[k]) {
                (Op::Conv(_), Prepared::Conv(kern)) => accumulate(x_id, kernels::conv_transpose(kern, &g, n, in_shape[1], in_shape[2])),
                (Op::Linear(_), Prepared::Linear(kern)) => accumulate(x_id, kernels::linear_transpose(kern, &g, n)),
                (Op::Conv(_), _) | (Op::Linear(_), _) => unreachable!("weights prepared in new()"),
                (Op::ChannelAffine(a), _) => {
                    let channels = in_shape[0];
                    let plane = numel(in_shape) / channels;
                    let scaled = ChannelAffine { scale: a.scale.clone(), shift: vec![0.0], divide: a.divide };
                    accumulate(x_id, kernels::channel_affine(&scaled, &g, channels, plane, false));
                }
                (Op::Act(f), _) => accumulate(x_id, g.iter().zip(x).map(|(&d, &v)| d * f.deriv(v)).collect()),
                (Op::Mul, _) => {
                    let s_id = layer.inputs[1];
                    let s = value(s_id);
                    let (x_len, s_len) = (numel(in_shape), numel(net.shape_of(s_id)));
                    let plane = x_len / s_len.max(1);
                    accumulate(x_id, kernels::mul_broadcast(&g, s, x_len, s_len));
                    let mut gs = vec![T::zero(); s.len()];
                    for (j, (&d, &v)) in g.iter().zip(x).enumerate() {
                        let (sample, within) = (j / x_len, j % x_len);
                        gs[sample * s_len + within / plane] += d * v;
                    }
                    accumulate(s_id, gs);
                }
                (Op::Add, _) => {
                    accumulate(layer.inputs[1], g.clone());
                    accumulate(x_id, g);
                }
                (Op::GlobalAvgPool, _) => accumulate(x_id, kernels::global_avg_pool_transpose(&g, in_shape[1] * in_shape[2])),
                (Op::Reshape, _) => accumulate(x_id, g),
                (Op::Pad(p), _) => accumulate(x_id, kernels::pad_transpose(&g, in_shape[0], in_shape[1], in_shape[2], *p)),
                (Op::Softmax, _) => {
                    let classes = in_shape[0];
                    let p = value(crate::ValueId(k + 1));
                    let mut d = Vec::with_capacity(g.len());
                    for (gr, pr) in g.chunks(classes).zip(p.chunks(classes)) {
                        let dot = gr.iter().zip(pr).fold(T::zero(), |a, (&u, &v)| a + u * v);
                        d.extend(gr.iter().zip(pr).map(|(&u, &v)| v * (u - dot)));
                    }
                    accumulate(x_id, d);
                }
            }
        }
        grads
    }
}
