//! PNG decoding (28×28 greyscale expected) from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = zonocert_network::data::parse_png(data, Path::new("fuzz.png"));
});
