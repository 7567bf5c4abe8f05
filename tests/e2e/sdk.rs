//! The SDK and the built-in policies' own tests, natively against the SDK's
//! test double (no Wasm), so `cargo test --workspace` covers them too.

use std::process::Command;

use crate::util::{assert_contains, repo};

#[test]
fn policies_pass_their_native_tests() {
    let out = Command::new(env!("CARGO"))
        .args(["test", "--manifest-path"])
        .arg(repo().join("policies/Cargo.toml"))
        .env("CARGO_TARGET_DIR", repo().join("policies/target"))
        .output()
        .expect("run cargo test in policies/");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The rolling policy's own tests ran (not zero tests).
    assert_contains(&text, "tests::one_at_a_time_keeps_capacity ... ok");
}
