//! Sandbox probe: tries what the WASI sandbox must deny or virtualise (files,
//! environment, network, wall clock, randomness) and logs what it saw, one
//! `name: observation` line each, then fails without touching the fleet.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use rollout::policy::types::Level;
use rollout::policy::{clock, control};

struct Probe;

/// `ok` or `error: why`.
fn seen<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    }
}

impl Guest for Probe {
    fn run(info: RolloutInfo) -> Outcome {
        let log = |name: &str, what: String| control::log(Level::Info, &format!("{name}: {what}"));
        log("read-file", seen(std::fs::read("/etc/hostname")));
        log("list-root", seen(std::fs::read_dir("/")));
        log("env-vars", std::env::vars_os().count().to_string());
        let port = info
            .params
            .iter()
            .find(|(k, _)| k == "port")
            .map_or("1", |(_, v)| v.as_str());
        log(
            "tcp-connect",
            seen(std::net::TcpStream::connect(format!("127.0.0.1:{port}"))),
        );
        // After some virtual time, both clocks must agree.
        clock::sleep(90_000);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        log("wall-clock-ms", wall.to_string());
        log("clock-now-ms", clock::now_ms().to_string());
        // The keys of std's hash maps come from WASI randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(42);
        log("random", format!("{:016x}", hasher.finish()));
        Outcome::Failed("sandbox probe done".into())
    }
}

export!(Probe);
