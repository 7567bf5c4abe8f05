//! Compile the built-in policies (`policies/`, a separate workspace) for
//! `wasm32-wasip2` and place the components in `OUT_DIR/policies/`, where
//! `runtime::source` embeds them. Nothing built is committed.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Policies embedded in the binary (package names).
const POLICIES: &[&str] = &["rolling", "canary", "blue-green", "bench-calls"];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.parent().expect("host/ has a parent").to_path_buf();
    let policies = root.join("policies");
    for watched in [
        "wit",
        "policies/Cargo.toml",
        "policies/Cargo.lock",
        "policies/sdk",
        // The SDK's path dependency.
        "host/duration",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for policy in POLICIES {
        println!("cargo:rerun-if-changed={}", policies.join(policy).display());
    }

    let target_dir = policies.join("target");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // The outer build's settings (target, flags, wrappers such as clippy)
    // must not leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_MAKEFLAGS"
            || key.starts_with("RUSTC_")
            || key == "RUSTFLAGS"
        {
            cargo.env_remove(key.as_ref());
        }
    }
    cargo
        .arg("build")
        .arg("--release")
        .args(["--target", TARGET])
        .arg("--manifest-path")
        .arg(policies.join("Cargo.toml"))
        .args(POLICIES.iter().flat_map(|p| ["-p", p]))
        .env("CARGO_TARGET_DIR", &target_dir);
    let status = cargo
        .status()
        .expect("run cargo to build the built-in policies");
    if !status.success() {
        panic!(
            "building the built-in policies for {TARGET} failed (see above). \
             If the target is missing, run `rustup target add {TARGET}`."
        );
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("policies");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/policies");
    for policy in POLICIES {
        let file = format!("{}.wasm", policy.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&file);
        copy(&built, &out.join(&file));
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!("copy {} to {}: {e}", from.display(), to.display());
    }
}
