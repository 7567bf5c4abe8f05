//! A client's request head: judged, written canonically, read back to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| rollout_http1::props::request_head_holds(input));
