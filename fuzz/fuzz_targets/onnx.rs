//! ONNX import from arbitrary bytes: an error is fine, a panic or a hang is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = zonocert_network::onnx::load_bytes(data, Path::new("fuzz.onnx"));
});
