//! An instance's answer head: judged, and what the client is told reads back the same.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| rollout_http1::props::response_head_holds(input));
