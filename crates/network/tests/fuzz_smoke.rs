//! A stable-Rust smoke run of the fuzz targets in `fuzz/`: the committed seed corpus and
//! thousands of deterministic mutations of it (bit flips, truncations, splices, length-field
//! changes) through the ONNX, IDX and PNG readers. Any outcome but a panic is acceptable.
//! The coverage-guided runs themselves need nightly and libFuzzer (`cargo +nightly fuzz run`).

use std::path::{Path, PathBuf};
use zonocert_network::{data, onnx};

fn seeds(kind: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(kind);
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files.iter().map(|f| std::fs::read(f).expect("seed readable")).collect()
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 17
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(5) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 => v.truncate(rng.below(v.len() + 1)),
            2 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
            }
            3 => {
                let i = rng.below(v.len() + 1);
                let chunk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next() as u8).collect();
                v.splice(i..i, chunk);
            }
            _ if v.len() >= 8 => {
                // Length-like fields: overwrite four bytes with a large or zero count.
                let i = rng.below(v.len() - 4);
                v[i..i + 4].copy_from_slice(&[0x7f, 0xff, 0xff, 0xff][..]);
            }
            _ => {}
        }
    }
    v
}

fn run(kind: &str, cases: usize, parse: impl Fn(&[u8])) {
    let mut rng = Rng(kind.len() as u64 * 7919);
    for seed in seeds(kind) {
        parse(&seed);
        for _ in 0..cases {
            parse(&mutate(&seed, &mut rng));
        }
    }
}

#[test]
fn onnx_loader_never_panics() {
    run("onnx", 4000, |b| {
        let _ = onnx::load_bytes(b, Path::new("smoke.onnx"));
    });
}

#[test]
fn idx_reader_never_panics() {
    run("idx", 20000, |b| {
        let _ = data::parse_idx(b, 3);
        let _ = data::parse_idx(b, 1);
    });
}

#[test]
fn png_reader_never_panics() {
    run("png", 4000, |b| {
        let _ = data::parse_png(b, Path::new("smoke.png"));
    });
}
