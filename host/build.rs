//! Compile the built-in policies (`policies/`, a separate workspace) for
//! `wasm32-wasip2` and place the components in `OUT_DIR/policies/`, where
//! `runtime::source` embeds them. Nothing built is committed.
//!
//! A toolchain without the `wasm32-wasip2` target gets it from rustup
//! (`rustup target add`, for the toolchain of this build), so a fresh
//! clone builds with `cargo build` alone; without rustup the build stops
//! and says what to install.

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
        // The SDK's path dependencies.
        "host/duration",
        "host/fleet-sim",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    for policy in POLICIES {
        println!("cargo:rerun-if-changed={}", policies.join(policy).display());
    }

    ensure_target();

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
        panic!("building the built-in policies for {TARGET} failed (see above)");
    }

    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("policies");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/policies");
    for policy in POLICIES {
        let file = format!("{}.wasm", policy.replace('-', "_"));
        let built = target_dir.join(TARGET).join("release").join(&file);
        copy(&built, &out.join(&file));
    }
}

/// Make sure the toolchain of this build has the standard library for
/// [`TARGET`]: add it with rustup when it is missing, or stop with what to
/// run.
fn ensure_target() {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let Some(sysroot) = sysroot else {
        // Whatever is wrong with rustc, the build below says it.
        return;
    };
    let installed = |root: &Path| root.join("lib/rustlib").join(TARGET).join("lib").is_dir();
    if installed(&sysroot) {
        return;
    }
    // rustup sets RUSTUP_TOOLCHAIN for everything it runs: the target goes
    // to the toolchain building this, not rustup's default.
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut add = vec!["target".to_string(), "add".to_string(), TARGET.to_string()];
    if let Some(t) = &toolchain {
        add.extend(["--toolchain".to_string(), t.clone()]);
    }
    let run = format!("rustup {}", add.join(" "));
    println!("cargo:warning={TARGET} is not installed for this toolchain: running `{run}`");
    match Command::new("rustup").args(&add).status() {
        Ok(status) if status.success() => {}
        Ok(status) => panic!(
            "`{run}` failed ({status}, see above): the built-in policies need the {TARGET} \
             target; run it yourself and build again"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the built-in policies are compiled for {TARGET}, which this toolchain ({}) lacks, \
             and rustup is not on PATH to add it: install rustup (https://rustup.rs), run \
             `rustup target add {TARGET}` and build again, or install {TARGET}'s standard \
             library into {} by the means this toolchain came with",
            rustc.to_string_lossy(),
            sysroot.display()
        ),
        Err(e) => panic!("cannot run `{run}`: {e}; run it yourself and build again"),
    }
}

fn copy(from: &Path, to: &Path) {
    if let Err(e) = std::fs::copy(from, to) {
        panic!("copy {} to {}: {e}", from.display(), to.display());
    }
}
