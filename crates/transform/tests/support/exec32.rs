//! A reference float32 evaluator of the IR, independent of the analyses, for the `--semantics
//! f32` soundness tests: sums accumulated in a chosen order, sigmoid and exp pushed within the
//! model's `K`, optional flush-to-zero.

use super::{act_variant, tiny_net_with};
use zonocert_network::ir::{conv_taps, numel, pad_sources, ChannelAffine, Network, Op};
use zonocert_network::Act;
use zonocert_transform::activation::Form;
use zonocert_transform::float32::{F32Model, ULP_OF_ONE};

/// The f32 model the tests certify with (K = 4, any order, gradual underflow).
pub const MODEL: F32Model = F32Model { ulp: 4.0, same_order: false, flush_subnormals: false };

/// How a reference execution accumulates sums and perturbs sigmoid and exp.
#[derive(Debug, Clone, Copy)]
pub enum Order {
    /// Left to right.
    Forward,
    /// Right to left.
    Reverse,
    /// Halves summed recursively.
    Pairwise,
}

#[derive(Debug, Clone, Copy)]
pub struct Exec32 {
    pub order: Order,
    /// Added to every sigmoid (in units of 2⁻²³) and, relatively, to every exp, before
    /// rounding to float32: within the model's `K` when `|push| ≤ K − ½`.
    pub push: f64,
    /// The softmax's exp of every odd class is pushed the other way.
    pub alternate: bool,
    /// Flush-to-zero / denormals-are-zero: subnormal weights read as zero and every value
    /// below 2⁻¹²⁶ flushed (emulated after each layer's operations).
    pub flush: bool,
}

/// `v`, or 0 when `flush` and `v` is subnormal.
fn ftz(v: f32, flush: bool) -> f32 {
    if flush && v != 0.0 && v.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        v
    }
}

fn sum32(terms: &[f32], order: Order) -> f32 {
    match order {
        Order::Forward => terms.iter().fold(0.0f32, |a, &t| a + t),
        Order::Reverse => terms.iter().rev().fold(0.0f32, |a, &t| a + t),
        Order::Pairwise => {
            if terms.len() <= 2 {
                return terms.iter().fold(0.0f32, |a, &t| a + t);
            }
            let (a, b) = terms.split_at(terms.len() / 2);
            sum32(a, order) + sum32(b, order)
        }
    }
}

impl Exec32 {
    fn sigmoid(&self, x: f32) -> f32 {
        let s = 1.0 / (1.0 + (-(x as f64)).exp());
        (s + self.push * ULP_OF_ONE) as f32
    }

    fn exp(&self, x: f32, class: usize) -> f32 {
        let push = if self.alternate && class % 2 == 1 { -self.push } else { self.push };
        ((x as f64).exp() * (1.0 + push * ULP_OF_ONE)) as f32
    }

    fn act(&self, f: Act, x: f32) -> f32 {
        match (f, f.form()) {
            (_, Form::Logistic { times_x: false }) => self.sigmoid(x),
            (_, Form::Logistic { times_x: true }) => x * self.sigmoid(x),
            (_, Form::ClampedAffine { alpha, beta, lo, hi }) => {
                let y = if alpha == 1.0 && beta == 0.0 { x } else { alpha as f32 * x + beta as f32 };
                y.max(lo as f32).min(hi as f32)
            }
        }
    }

    /// Every value of `net` on one input (index = value id).
    pub fn run(&self, net: &Network, input: &[f32]) -> Vec<Vec<f32>> {
        let mut vals: Vec<Vec<f32>> = vec![input.to_vec()];
        for layer in &net.layers {
            let x = &vals[layer.inputs[0].0];
            let in_shape = net.shape_of(layer.inputs[0]);
            let out: Vec<f32> = match &layer.op {
                Op::Conv(c) => {
                    let (h, w) = (in_shape[1], in_shape[2]);
                    let (oh, ow) = c.output_hw(h, w).expect("valid conv");
                    let mut out = Vec::with_capacity(c.out_channels * oh * ow);
                    for oc in 0..c.out_channels {
                        for oy in 0..oh {
                            for ox in 0..ow {
                                let mut t: Vec<f32> = vec![c.bias[oc] as f32];
                                t.extend(
                                    conv_taps(c, h, w, oc, oy, ox)
                                        .map(|(wi, xi)| ftz(ftz(c.weight[wi] as f32, self.flush) * x[xi], self.flush)),
                                );
                                out.push(sum32(&t, self.order));
                            }
                        }
                    }
                    out
                }
                Op::Linear(l) => (0..l.out_features)
                    .map(|o| {
                        let mut t: Vec<f32> = vec![l.bias[o] as f32];
                        t.extend(
                            (0..l.in_features).map(|i| ftz(ftz(l.weight[o * l.in_features + i] as f32, self.flush) * x[i], self.flush)),
                        );
                        sum32(&t, self.order)
                    })
                    .collect(),
                Op::ChannelAffine(a) => {
                    let plane = numel(in_shape) / in_shape[0];
                    x.iter()
                        .enumerate()
                        .map(|(j, &v)| {
                            let (s, t) = a.at(j / plane);
                            if a.divide {
                                v / s as f32 + t as f32
                            } else {
                                v * s as f32 + t as f32
                            }
                        })
                        .collect()
                }
                Op::Act(f) => x.iter().map(|&v| self.act(*f, v)).collect(),
                Op::Mul => {
                    let s = &vals[layer.inputs[1].0];
                    let repeat = x.len() / s.len();
                    x.iter().enumerate().map(|(j, &v)| v * s[j / repeat]).collect()
                }
                Op::Add => x.iter().zip(&vals[layer.inputs[1].0]).map(|(a, b)| a + b).collect(),
                Op::GlobalAvgPool => {
                    let plane = numel(in_shape) / in_shape[0];
                    x.chunks(plane).map(|c| sum32(c, self.order) / plane as f32).collect()
                }
                Op::Reshape => x.clone(),
                Op::Pad(p) => pad_sources(in_shape, *p).map(|s| s.map_or(0.0, |i| x[i])).collect(),
                Op::Softmax => unreachable!("no Softmax inside the test networks"),
            };
            vals.push(out.into_iter().map(|v| ftz(v, self.flush)).collect());
        }
        vals
    }

    /// The overflow-safe float32 softmax.
    pub fn softmax(&self, z: &[f32]) -> Vec<f32> {
        let m = z.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let e: Vec<f32> = z.iter().enumerate().map(|(c, &v)| self.exp(v - m, c)).collect();
        let s = sum32(&e, self.order);
        e.iter().map(|&v| v / s).collect()
    }
}

/// The reference executions of every test: three orders, each sigmoid/exp pushed to either
/// edge (and not at all).
pub fn executions() -> Vec<Exec32> {
    let k = MODEL.ulp - 0.5;
    [Order::Forward, Order::Reverse, Order::Pairwise]
        .into_iter()
        .flat_map(|order| [-k, 0.0, k].map(|push| Exec32 { order, push, alternate: false, flush: false }))
        .collect()
}

/// Bytes as float32 pixels `b/255`.
pub fn f32_image(px: &[u8]) -> Vec<f32> {
    px.iter().map(|&b| b as f32 / 255.0).collect()
}

/// `max_c |p̂_c(x′) − p̂_c(x)|` for `x` run by one execution and `x′` by another.
pub fn pair_change(net: &Network, (a, x): (Exec32, &[u8]), (b, xp): (Exec32, &[u8])) -> f64 {
    let pa = a.softmax(&a.run(net, &f32_image(x)).pop().expect("output"));
    let pb = b.softmax(&b.run(net, &f32_image(xp)).pop().expect("output"));
    pa.iter().zip(&pb).map(|(p, q)| (*p as f64 - *q as f64).abs()).fold(0.0, f64::max)
}

/// A support net as an ONNX file would hold it: float32 weights, and the normalisation a single
/// division (the f32 model refuses a per-channel map with both a scale and an offset).
pub fn f32_net(k: u64) -> Network {
    let (stem, gate) = act_variant(k);
    let mut net = tiny_net_with(0xF32_0000 + k * 131, 2 + (k % 3) as usize, 1 + (k % 2) as usize, stem, gate);
    let r = |v: &mut Vec<f64>| v.iter_mut().for_each(|w| *w = *w as f32 as f64);
    for l in &mut net.layers {
        match &mut l.op {
            Op::Conv(c) => {
                r(&mut c.weight);
                r(&mut c.bias);
            }
            Op::Linear(c) => {
                r(&mut c.weight);
                r(&mut c.bias);
            }
            Op::ChannelAffine(a) => *a = ChannelAffine { scale: vec![0.3081f32 as f64], shift: vec![0.0], divide: true },
            Op::Act(Act::HardSigmoid { alpha, beta }) => {
                *alpha = *alpha as f32 as f64;
                *beta = *beta as f32 as f64;
            }
            _ => {}
        }
    }
    MODEL.check(&net).expect("the test nets are inside the f32 model");
    net
}

/// A network on 784 inputs whose layers each read the one before: `(name, op, output shape)`.
pub fn chain(layers: Vec<(&str, Op, Vec<usize>)>) -> Network {
    use zonocert_network::ir::{Layer, ValueId};
    let n = layers.len();
    let layers = layers
        .into_iter()
        .enumerate()
        .map(|(k, (name, op, shape))| Layer { name: name.into(), op, inputs: vec![ValueId(k)], shape })
        .collect();
    Network { input_name: "x".into(), input_shape: vec![784], layers, output: ValueId(n), squeeze_excite: vec![], float64_folds: vec![] }
}

/// A two-class network: a dense layer reading pixels 300 and 301, an activation, per-class
/// gains (a per-channel map: one rounding).
pub fn two_class_net(bias: f64, act: Act, gains: [f64; 2]) -> Network {
    let dense = zonocert_network::ir::Linear {
        weight: (0..2 * 784).map(|i| if i % 784 == 300 + i / 784 { 0.5 } else { 0.0 }).collect(),
        bias: vec![bias; 2],
        in_features: 784,
        out_features: 2,
    };
    let gain = ChannelAffine { scale: gains.to_vec(), shift: vec![0.0], divide: false };
    let net =
        chain(vec![("dense", Op::Linear(dense), vec![2]), ("act", Op::Act(act), vec![2]), ("gain", Op::ChannelAffine(gain), vec![2])]);
    MODEL.check(&net).expect("inside the model");
    net
}
