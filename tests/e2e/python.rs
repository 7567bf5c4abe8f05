//! A policy written in Python (examples/python-policy, componentize-py),
//! run by the same host against the same scenarios as the Rust one.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::util::{repo, rollout_test};

/// Build the Python policy once; fails with what to install when
/// componentize-py is missing (CI installs it).
fn python_policy() -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let out = BUILT.get_or_init(|| {
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-policy.wasm");
        let run = Command::new(repo().join("examples/python-policy/build.sh"))
            .env("OUT", &out)
            .output()
            .expect("run examples/python-policy/build.sh");
        assert!(
            run.status.success(),
            "building the Python policy failed (needs `pip install componentize-py==0.25.0`): {}",
            String::from_utf8_lossy(&run.stderr)
        );
        out
    });
    out.to_str().expect("utf-8 path").to_string()
}

#[test]
fn python_policy_rolls_out_and_rolls_back() {
    let policy = python_policy();
    for scenario in [
        "surge-one-unavailable-zero",
        "error-in-logs",
        "never-ready",
        "abort",
    ] {
        let run = rollout_test(&policy, scenario, &[]);
        let json = run.json();
        assert_eq!(
            run.code, 0,
            "{scenario}: {:#} {}",
            json["assertions"], run.stderr
        );
    }
}
