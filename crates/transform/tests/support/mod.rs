//! Test support shared by the transformer property tests: a double-double reference
//! arithmetic, a seedable generator, the proptest runner, zonotope point sampling, and small
//! random EfficientNet-like networks with random images.
#![allow(dead_code)]

pub mod exec32;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use zonocert_domain::Zonotope;
use zonocert_network::ir::{ChannelAffine, Conv, Layer, Linear, Network, Op, Shape, ValueId};
use zonocert_network::Act;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

pub fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

pub const LN2: Dd = Dd { hi: std::f64::consts::LN_2, lo: 2.319_046_813_846_299_6e-17 };

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    pub fn f(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }
    pub fn prod(a: f64, b: f64) -> Dd {
        let p = a * b;
        Dd { hi: p, lo: a.mul_add(b, -p) }
    }
    pub fn add(self, o: Dd) -> Dd {
        let (s1, s2) = two_sum(self.hi, o.hi);
        let (t1, t2) = two_sum(self.lo, o.lo);
        let (s1, s2) = quick_two_sum(s1, s2 + t1);
        let (hi, lo) = quick_two_sum(s1, s2 + t2);
        Dd { hi, lo }
    }
    pub fn neg(self) -> Dd {
        Dd { hi: -self.hi, lo: -self.lo }
    }
    pub fn sub(self, o: Dd) -> Dd {
        self.add(o.neg())
    }
    pub fn mul(self, o: Dd) -> Dd {
        let p = Dd::prod(self.hi, o.hi);
        let (hi, lo) = quick_two_sum(p.hi, p.lo + (self.hi * o.lo + self.lo * o.hi));
        Dd { hi, lo }
    }
    pub fn mulf(self, x: f64) -> Dd {
        self.mul(Dd::f(x))
    }
    pub fn div(self, o: Dd) -> Dd {
        let q1 = self.hi / o.hi;
        let r = self.sub(o.mulf(q1));
        let q2 = r.hi / o.hi;
        let r = r.sub(o.mulf(q2));
        let q3 = r.hi / o.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 }.add(Dd::f(q3))
    }
    pub fn scale2(self, k: i32) -> Dd {
        let p = |e: i32| f64::from_bits(((e + 1023) as u64) << 52);
        if k >= -1022 {
            Dd { hi: self.hi * p(k), lo: self.lo * p(k) }
        } else {
            Dd { hi: self.hi * p(-1022) * p(k + 1022), lo: self.lo * p(-1022) * p(k + 1022) }
        }
    }
    pub fn sign(self) -> i32 {
        let s = if self.hi != 0.0 { self.hi } else { self.lo };
        (s > 0.0) as i32 - (s < 0.0) as i32
    }
    pub fn abs(self) -> Dd {
        if self.sign() < 0 {
            self.neg()
        } else {
            self
        }
    }
    pub fn le(self, o: Dd) -> bool {
        self.sub(o).sign() <= 0
    }
    pub fn max0(self) -> Dd {
        if self.sign() > 0 {
            self
        } else {
            Dd::ZERO
        }
    }
    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }
}

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn sym(&mut self) -> f64 {
        2.0 * self.unit() - 1.0
    }
    pub fn sign(&mut self) -> f64 {
        if self.next() & 1 == 0 {
            1.0
        } else {
            -1.0
        }
    }
    pub fn corner_biased(&mut self) -> f64 {
        match self.next() % 8 {
            0 => self.sym(),
            1 => 0.0,
            _ => self.sign(),
        }
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub fn cases() -> u32 {
    std::env::var("ZONOCERT_PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(1000)
}

pub fn run<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
}

pub type Eps = HashMap<usize, f64>;

pub fn eps_samples(syms: &[usize], rng: &mut Rng) -> Vec<Eps> {
    let m = syms.len();
    let mut out = Vec::new();
    if m <= 5 {
        for mask in 0..(1u32 << m) {
            out.push(syms.iter().enumerate().map(|(k, &s)| (s, if mask >> k & 1 == 1 { 1.0 } else { -1.0 })).collect());
        }
    } else {
        for _ in 0..32 {
            out.push(syms.iter().map(|&s| (s, rng.sign())).collect());
        }
    }
    for _ in 0..4 {
        out.push(syms.iter().map(|&s| (s, rng.sym())).collect());
    }
    out
}

pub fn point(z: &Zonotope, eps: &Eps, eta: &[f64]) -> Vec<Dd> {
    let n = z.dim();
    (0..n)
        .map(|j| {
            let mut v = Dd::f(z.centre[j]);
            for (k, s) in z.syms.iter().enumerate() {
                v = v.add(Dd::prod(eps[s], z.gens[k * n + j]));
            }
            v.add(Dd::prod(z.err[j], eta[j]))
        })
        .collect()
}

pub fn conv(rng: &mut Rng, ci: usize, co: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Conv {
    let fan_in = (ci / groups) * k * k;
    let s = (2.0 / fan_in as f64).sqrt();
    Conv {
        weight: (0..co * fan_in).map(|_| rng.sym() * s * 1.7).collect(),
        bias: (0..co).map(|_| rng.sym() * 0.2).collect(),
        in_channels: ci,
        out_channels: co,
        kernel: [k, k],
        stride: [stride, stride],
        pads: [pad; 4],
        dilation: [1, 1],
        groups,
    }
}

/// A tiny EfficientNet-like network [1, 28, 28] → 10 with random weights (swish or ReLU stem,
/// sigmoid gate).
pub fn tiny_net(seed: u64, channels: usize, se: usize, relu_stem: bool) -> Network {
    tiny_net_with(seed, channels, se, if relu_stem { Act::Relu } else { Act::Swish }, Act::Sigmoid)
}

/// The (stem activation, squeeze-excite gate) pairs the end-to-end checks cycle through: the
/// EfficientNet pair, a ReLU stem, and the clamped affine maps of MobileNet-style nets (ReLU6,
/// Hardtanh, HardSigmoid gates with PyTorch's and ONNX's default slopes).
pub fn act_variant(k: u64) -> (Act, Act) {
    let hard = |alpha: f64| Act::HardSigmoid { alpha, beta: 0.5 };
    match k % 6 {
        0 => (Act::Swish, Act::Sigmoid),
        1 => (Act::Relu, Act::Sigmoid),
        2 => (Act::Clip { lo: 0.0, hi: 6.0 }, Act::Sigmoid),
        3 => (Act::Swish, hard(1.0 / 6.0)),
        4 => (Act::Clip { lo: -1.0, hi: 1.0 }, hard(0.2)),
        _ => (Act::Relu, hard(1.0 / 6.0)),
    }
}

/// [`tiny_net`] with a chosen stem activation and squeeze-excite gate.
pub fn tiny_net_with(seed: u64, channels: usize, se: usize, stem_act: Act, gate_act: Act) -> Network {
    let mut rng = Rng(seed);
    let c = channels;
    let mut layers: Vec<Layer> = Vec::new();
    let mut push = |name: &str, op: Op, inputs: &[usize], shape: Shape| -> usize {
        layers.push(Layer { name: name.into(), op, inputs: inputs.iter().map(|&v| ValueId(v)).collect(), shape });
        layers.len()
    };
    let norm = push(
        "normalise",
        Op::ChannelAffine(ChannelAffine { scale: vec![0.3081], shift: vec![-0.1307 / 0.3081], divide: true }),
        &[0],
        vec![1, 28, 28],
    );
    let pad = push("pad", Op::Pad([1, 1, 1, 1]), &[norm], vec![1, 30, 30]);
    let stem = push("stem", Op::Conv(conv(&mut rng, 1, c, 3, 2, 0, 1)), &[pad], vec![c, 14, 14]);
    let act = push("stem_act", Op::Act(stem_act), &[stem], vec![c, 14, 14]);
    let dw = push("dw", Op::Conv(conv(&mut rng, c, c, 3, 2, 1, c)), &[act], vec![c, 7, 7]);
    let dw_act = push("dw_act", Op::Act(Act::Swish), &[dw], vec![c, 7, 7]);
    let sq = push("se_pool", Op::GlobalAvgPool, &[dw_act], vec![c, 1, 1]);
    let r = push("se_reduce", Op::Conv(conv(&mut rng, c, se, 1, 1, 0, 1)), &[sq], vec![se, 1, 1]);
    let r_act = push("se_act", Op::Act(Act::Swish), &[r], vec![se, 1, 1]);
    let e = push("se_expand", Op::Conv(conv(&mut rng, se, c, 1, 1, 0, 1)), &[r_act], vec![c, 1, 1]);
    let gate = push("se_gate", Op::Act(gate_act), &[e], vec![c, 1, 1]);
    let scaled = push("se_mul", Op::Mul, &[dw_act, gate], vec![c, 7, 7]);
    let proj = push("project", Op::Conv(conv(&mut rng, c, c, 1, 1, 0, 1)), &[scaled], vec![c, 7, 7]);
    let res = push("residual", Op::Add, &[proj, dw], vec![c, 7, 7]);
    let pool = push("pool", Op::GlobalAvgPool, &[res], vec![c, 1, 1]);
    let flat = push("flatten", Op::Reshape, &[pool], vec![c]);
    let lin = Linear {
        weight: (0..10 * c).map(|_| rng.sym() * 1.5).collect(),
        bias: (0..10).map(|_| rng.sym() * 0.3).collect(),
        in_features: c,
        out_features: 10,
    };
    let logits = push("fc", Op::Linear(lin), &[flat], vec![10]);
    let net = Network {
        input_name: "input".into(),
        input_shape: vec![1, 28, 28],
        layers,
        output: ValueId(logits),
        squeeze_excite: vec![],
        float64_folds: vec![],
    };
    net.validate().expect("valid network");
    net
}

/// A random image: blank, noise, or an MNIST-like blob of ink.
pub fn image(rng: &mut Rng) -> Vec<u8> {
    match rng.below(3) {
        0 => (0..784).map(|_| rng.below(256) as u8).collect(),
        1 => {
            let (cy, cx, r) = (8.0 + 12.0 * rng.unit(), 8.0 + 12.0 * rng.unit(), 3.0 + 6.0 * rng.unit());
            (0..784)
                .map(|p| {
                    let (y, x) = ((p / 28) as f64, (p % 28) as f64);
                    let d = ((y - cy).powi(2) + (x - cx).powi(2)).sqrt();
                    if d < r {
                        (255.0 * (1.0 - d / r * 0.5)) as u8
                    } else if d < r + 1.5 {
                        rng.below(128) as u8
                    } else {
                        0
                    }
                })
                .collect()
        }
        _ => {
            let mut v = vec![0u8; 784];
            v.iter_mut().for_each(|b| {
                if rng.below(10) == 0 {
                    *b = 255;
                }
            });
            v
        }
    }
}
