//! The agent's control API and its client.
//!
//! HTTP/1.1 + JSON. The agent always listens on `HOME/agent.sock` (mode
//! 0600); `rollout serve --listen ADDR` adds a TCP listener that requires
//! `Authorization: Bearer TOKEN` (the token is in `HOME/agent.token`, mode
//! 0600, or taken from `$ROLLOUT_TOKEN`).
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/health` | `{ok, version}` |
//! | `GET /v1/services` | every [`types::ServiceStatus`] |
//! | `GET /v1/services/NAME` | one [`types::ServiceStatus`] |
//! | `GET /v1/services/NAME/history[?revision=N]` | [`types::HistoryEntry`] list |
//! | `POST /v1/services/NAME/undo` | [`types::Started`] |
//! | `POST /v1/services/NAME/{pause,resume,abort,promote}` | [`types::ControlAnswer`] |
//! | `POST /v1/rollouts` ([`types::RunRequest`]) | [`types::Started`] |
//! | `GET /v1/rollouts/ID/events?after=SEQ&wait_ms=MS` | [`types::Events`] (long poll) |
//! | `GET /v1/instances/ID/logs?lines=N` | lines |
//! | `GET /metrics` | Prometheus text |
//!
//! Errors are `{error, unchanged}` ([`types::ErrorBody`]) with 400 (bad
//! request, nothing changed), 401 (TCP without the token), 404, 409
//! (another rollout runs) or 500: [`ApiError`] maps each cause to its
//! status. Routing is axum's ([`routes`]), served by hyper on the agent's
//! own listeners ([`server`]).

mod auth;
pub mod client;
mod error;
mod extract;
mod routes;
mod server;
pub mod types;

use std::path::{Path, PathBuf};

use anyhow::Context;

pub use server::Listeners;

/// Longest a client may keep the agent waiting for the next bytes of a
/// request (its headers, or the next piece of its body) before the agent
/// gives up on it.
const CLIENT_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The socket of the agent whose home is `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("agent.sock")
}

/// The TCP token file of the agent whose home is `home`.
pub fn token_path(home: &Path) -> PathBuf {
    home.join("agent.token")
}

/// Hold `HOME/agent.lock` for as long as the returned file is open: one
/// agent per home, or two would manage (and duplicate) the same instances.
pub fn lock_home(home: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let path = home.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock(2) on a descriptor we own; it touches no memory.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!(
            "an agent is already running with home {} (it holds {}); stop it first, or use another --home",
            home.display(),
            path.display()
        );
    }
    Ok(file)
}
