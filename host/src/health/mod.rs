//! Health probes of real instances: HTTP, TCP connect, log pattern and exec.
//!
//! A probe reports what it found; the policy decides what it means.

use serde::Deserialize;

/// The health checks of a service, as written under `[health]` in its spec.
/// Every configured check must pass for an instance to be healthy; with none
/// configured, a running instance is healthy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct HealthSpec {
    /// `GET path` must answer `status`.
    pub http: Option<HttpCheck>,
    /// A TCP connection to the instance's port must succeed.
    pub tcp: bool,
    /// A log line containing this text (since the instance started) fails it.
    pub log_pattern: Option<String>,
    /// This command (argv) must exit 0; it gets the instance's environment.
    pub exec: Option<Vec<String>>,
    /// Time between probes of an instance, in ms (a starting instance is
    /// probed sooner: after 10 ms, then twice as long each time up to 100 ms
    /// or this).
    #[serde(with = "crate::duration")]
    pub interval: u64,
    /// Time one probe may take, in ms.
    #[serde(with = "crate::duration")]
    pub timeout: u64,
    /// Time after start before the first probe, in ms.
    #[serde(with = "crate::duration")]
    pub readiness_delay: u64,
    /// How long a starting instance may fail its checks, in ms: one that
    /// was never ready and fails a check later than this after it started
    /// is unhealthy (Docker's `start-period` with one retry), so a release
    /// that never passes fails at once. `None`: it stays starting until the
    /// policy's ready timeout or the progress deadline (Kubernetes'
    /// readiness), which suits a service that warms up for long.
    #[serde(with = "crate::duration::option")]
    pub start_period: Option<u64>,
}

impl Default for HealthSpec {
    fn default() -> Self {
        HealthSpec {
            http: None,
            tcp: false,
            log_pattern: None,
            exec: None,
            interval: 1_000,
            timeout: 1_000,
            readiness_delay: 0,
            start_period: None,
        }
    }
}

/// `http = { path = "/healthz", status = 200 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    /// Path to GET.
    #[serde(default = "default_path")]
    pub path: String,
    /// Status code expected.
    #[serde(default = "default_status")]
    pub status: u16,
}

fn default_path() -> String {
    "/healthz".to_string()
}

fn default_status() -> u16 {
    200
}

mod exec;
mod http;
mod log;
mod tcp;

pub use self::exec::exec;
pub use self::http::http;
pub use self::log::LogScanner;
pub use self::tcp::tcp;

use std::net::SocketAddr;

/// Where and how to reach one instance.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The instance's listening address (loopback).
    pub addr: SocketAddr,
    /// Environment for exec checks (the instance's own env: `PORT`,
    /// `ROLLOUT_INSTANCE`, ...).
    pub env: &'a [(String, String)],
}

/// Run every check configured in `spec` except the log pattern (which the
/// caller tracks with a [`LogScanner`]).
///
/// The checks run concurrently, each bounded by `spec.timeout`, so one probe
/// takes at most about `spec.timeout`. `Ok(())` when all pass (or none is
/// configured); otherwise `Err(reason)` naming the first failing check in the
/// order tcp, http, exec, e.g. `http GET /healthz: status 503, expected 200`.
pub async fn check(spec: &HealthSpec, target: &Target<'_>) -> Result<(), String> {
    let timeout = spec.timeout;
    let tcp_check = async {
        match spec.tcp {
            true => tcp(target.addr, timeout).await,
            false => Ok(()),
        }
    };
    let http_check = async {
        match &spec.http {
            Some(check) => http(target.addr, check, timeout).await,
            None => Ok(()),
        }
    };
    let exec_check = async {
        match &spec.exec {
            Some(argv) => exec(argv, target.env, timeout).await,
            None => Ok(()),
        }
    };
    let (tcp_result, http_result, exec_result) = tokio::join!(tcp_check, http_check, exec_check);
    tcp_result.and(http_result).and(exec_result)
}

/// A short, lower-case reason for an I/O error: `connection refused` rather
/// than `Connection refused (os error 111)`.
fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        kind @ (ConnectionRefused | ConnectionReset | ConnectionAborted | NotConnected
        | AddrNotAvailable | BrokenPipe | TimedOut | UnexpectedEof | HostUnreachable
        | NetworkUnreachable) => kind.to_string(),
        _ => e.to_string(),
    }
}

/// `timed out after N ms`.
fn timed_out(timeout_ms: u64) -> String {
    format!("timed out after {timeout_ms} ms")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers every connection with `status`.
    async fn server(status: u16) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        addr
    }

    fn spec(http: Option<u16>, tcp: bool, exec: Option<&str>) -> HealthSpec {
        HealthSpec {
            http: http.map(|status| HttpCheck {
                path: "/healthz".into(),
                status,
            }),
            tcp,
            exec: exec.map(|script| vec!["sh".into(), "-c".into(), script.into()]),
            log_pattern: Some("ignored here".into()),
            timeout: 5_000,
            ..HealthSpec::default()
        }
    }

    #[tokio::test]
    async fn nothing_configured_passes() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let target = Target { addr, env: &[] };
        assert_eq!(check(&spec(None, false, None), &target).await, Ok(()));
    }

    #[tokio::test]
    async fn all_checks_pass() {
        let env = [("PORT".to_string(), "1234".to_string())];
        let target = Target {
            addr: server(200).await,
            env: &env,
        };
        let spec = spec(Some(200), true, Some(r#"test "$PORT" = 1234"#));
        assert_eq!(check(&spec, &target).await, Ok(()));
    }

    #[tokio::test]
    async fn first_failing_check_is_named() {
        let target = Target {
            addr: server(503).await,
            env: &[],
        };
        assert_eq!(
            check(&spec(Some(200), true, Some("exit 3")), &target).await,
            Err("http GET /healthz: status 503, expected 200".into())
        );
        assert_eq!(
            check(&spec(Some(503), true, Some("exit 3")), &target).await,
            Err(r#"exec ["sh","-c","exit 3"]: exit status 3"#.into())
        );
    }

    #[tokio::test]
    async fn closed_port_fails_tcp_first() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let target = Target { addr, env: &[] };
        assert_eq!(
            check(&spec(Some(200), true, None), &target).await,
            Err(format!("tcp {addr}: connection refused"))
        );
    }
}
