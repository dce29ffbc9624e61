//! Test support shared by the transformer property tests: a double-double reference
//! arithmetic, a seedable generator, the proptest runner and zonotope point sampling.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::HashMap;
use zonocert_domain::Zonotope;

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
