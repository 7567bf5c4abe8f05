//! Every input the fuzz targets kept (`fuzz/corpus/<target>/`, seeds and
//! what `cargo fuzz` found and minimised) still holds the codec's
//! invariants: the fuzzers' findings stay fixed in the ordinary suite.

use std::path::Path;

use rollout_http1::props;

/// Run `holds` on every file of the corpus of `target`; how many.
fn replay(target: &str, holds: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    inputs.sort();
    for path in &inputs {
        let input = std::fs::read(path).expect("a corpus file");
        let outcome = std::panic::catch_unwind(|| holds(&input));
        assert!(outcome.is_ok(), "{} breaks an invariant", path.display());
    }
    inputs.len()
}

#[test]
fn request_heads() {
    assert!(replay("request_head", props::request_head_holds) > 0);
}

#[test]
fn response_heads() {
    assert!(replay("response_head", props::response_head_holds) > 0);
}

#[test]
fn chunked_bodies() {
    assert!(replay("chunked", props::chunked_holds) > 0);
}

#[test]
fn pipelined_streams() {
    assert!(replay("stream", props::stream_holds) > 0);
}
