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
//!
//! Errors are `{error, unchanged}` with 400 (bad request, nothing changed),
//! 404, 409 (another rollout runs) or 500.

pub mod client;
pub mod server;
pub mod types;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::agent::Agent;

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

/// Listeners of a running agent.
pub struct Listeners {
    unix: tokio::net::UnixListener,
    tcp: Option<(tokio::net::TcpListener, Arc<str>)>,
}

impl Listeners {
    /// Bind the Unix socket under `home` (refusing if another agent answers
    /// there) and, with `tcp`, a TCP address requiring `token`.
    pub async fn bind(
        home: &Path,
        tcp: Option<(&str, String)>,
    ) -> anyhow::Result<(Listeners, Option<std::net::SocketAddr>)> {
        let path = socket_path(home);
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            anyhow::bail!(
                "an agent is already running with home {} (socket {})",
                home.display(),
                path.display()
            );
        }
        // A socket file left by an agent that died.
        let _ = std::fs::remove_file(&path);
        let unix = tokio::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict {}", path.display()))?;
        let (tcp, addr) = match tcp {
            Some((addr, token)) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                (Some((listener, Arc::from(token))), Some(local))
            }
            None => (None, None),
        };
        Ok((Listeners { unix, tcp }, addr))
    }

    /// Serve requests until `shutdown` completes.
    pub async fn serve(self, agent: Arc<Agent>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            let tcp = async {
                match &self.tcp {
                    Some((l, token)) => Some((l.accept().await, token.clone())),
                    None => std::future::pending().await,
                }
            };
            let failed = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.unix.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(server::connection(agent.clone(), stream, None));
                        false
                    }
                    Err(_) => true,
                },
                Some((accepted, token)) = tcp => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(server::connection(agent.clone(), stream, Some(token)));
                        false
                    }
                    Err(_) => true,
                },
            };
            if failed {
                // Out of file descriptors, say: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
