//! Serving the control API: HTTP/1.1 on the Unix socket (mode 0600, so
//! only the agent's user can drive it), and optionally on TCP where every
//! request must carry the bearer token. Each connection is served by hyper
//! with the [`super::routes`] router.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{auth, routes, socket_path};
use crate::agent::Agent;

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
        let local = routes::router(agent);
        let remote = self.tcp.as_ref().map(|(listener, token)| {
            let guarded = local.clone().layer(axum::middleware::from_fn_with_state(
                token.clone(),
                auth::require_token,
            ));
            (listener, guarded)
        });
        tokio::pin!(shutdown);
        loop {
            let tcp = async {
                match &remote {
                    Some((listener, router)) => Some((listener.accept().await, router.clone())),
                    None => std::future::pending().await,
                }
            };
            let failed = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.unix.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(local.clone(), stream));
                        false
                    }
                    Err(_) => true,
                },
                Some((accepted, router)) = tcp => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(router, stream));
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

/// Serve one connection with `router` until the client closes it.
async fn connection<S>(router: Router, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(super::CLIENT_IDLE)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
        .await;
}
