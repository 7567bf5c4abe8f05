//! The harness: run the `rollout` binary, build guest fixtures once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// A scenario file under `tests/scenarios/`.
pub fn scenario(name: &str) -> PathBuf {
    repo().join("tests/scenarios").join(format!("{name}.toml"))
}

/// What a run of `rollout` printed and returned.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (for `--output json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// Run `rollout` with `args`; its home (policy cache) is shared by the tests.
pub fn rollout(args: &[&str]) -> Run {
    let home = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rollout-home");
    let out = Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args(args)
        .env("ROLLOUT_HOME", home)
        .current_dir(repo())
        .output()
        .expect("run the rollout binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `rollout test --policy P --scenario S --output json` plus `extra`.
pub fn rollout_test(policy: &str, scenario_name: &str, extra: &[&str]) -> Run {
    let file = scenario(scenario_name);
    let mut args = vec!["test", "--policy", policy, "--scenario"];
    args.push(file.to_str().expect("utf-8 path"));
    args.extend(["--output", "json"]);
    args.extend(extra);
    rollout(args.as_slice())
}

/// Build the hostile guest policies in `tests/policies/` once; the path of
/// the component for package `name`.
pub fn hostile(name: &str) -> String {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let target = BUILT.get_or_init(|| {
        let target = repo().join("policies/target");
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(repo().join("tests/policies/Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("run cargo");
        assert!(status.success(), "building tests/policies failed");
        target.join("wasm32-wasip2/release")
    });
    let file = target.join(format!("{}.wasm", name.replace('-', "_")));
    file.to_str().expect("utf-8 path").to_string()
}

/// Assert `haystack` contains `needle`, showing the haystack when not.
pub fn assert_contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected to find {needle:?} in:\n{haystack}"
    );
}
