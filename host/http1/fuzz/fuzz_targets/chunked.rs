//! A chunked body: the same bytes however split, and forwarded without ending early.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| rollout_http1::props::chunked_holds(input));
