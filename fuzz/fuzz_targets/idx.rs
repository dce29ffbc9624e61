//! IDX parsing (images rank 3, labels rank 1) from arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = zonocert_network::data::parse_idx(data, 3);
    let _ = zonocert_network::data::parse_idx(data, 1);
});
