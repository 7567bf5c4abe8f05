//! Pipelined requests: what reaches the instance reads as the same requests, to the codec, a lenient server and http_desync_guardian.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| rollout_http1::props::stream_holds(input));
