#![no_main]
//! `Accept` and `Prefer` parsing on arbitrary header values.

use libfuzzer_sys::fuzz_target;
use publish_cancel::api::negotiate;

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let _ = negotiate::choose(values.iter().copied());
    let _ = negotiate::wants_minimal(values.iter().copied());
});
