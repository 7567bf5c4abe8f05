//! HTTP probe: one `GET` over a fresh HTTP/1.1 connection.

use std::error::Error as _;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http1;
use hyper::header::{CONNECTION, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{HttpCheck, io_reason, timed_out};

/// `GET check.path` from `addr` over a fresh HTTP/1.1 connection (Host header
/// set, `Connection: close`); passes when the answer's status is
/// `check.status`. The whole exchange (connect, request, response head) is
/// bounded by `timeout_ms`; the body is not read.
///
/// Errors read like `http GET /healthz: status 503, expected 200`,
/// `http GET /healthz: connection refused` or
/// `http GET /healthz: timed out after 1000 ms`.
pub async fn http(addr: SocketAddr, check: &HttpCheck, timeout_ms: u64) -> Result<(), String> {
    let path = match check.path.starts_with('/') {
        true => check.path.clone(),
        false => format!("/{}", check.path),
    };
    let exchange = get(addr, &path);
    let status = match tokio::time::timeout(Duration::from_millis(timeout_ms), exchange).await {
        Ok(Ok(status)) => status,
        Ok(Err(why)) => return Err(format!("http GET {path}: {why}")),
        Err(_) => return Err(format!("http GET {path}: {}", timed_out(timeout_ms))),
    };
    match status == check.status {
        true => Ok(()),
        false => Err(format!(
            "http GET {path}: status {status}, expected {}",
            check.status
        )),
    }
}

/// Connect, send the request, return the status of the answer.
async fn get(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| io_reason(&e))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| chain(&e))?;
    let request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, addr.to_string())
        .header(CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))?;

    // Drive the connection here rather than in a spawned task, so that a
    // timeout (dropping this future) closes everything at once.
    let mut conn = pin!(conn);
    let mut response = pin!(sender.send_request(request));
    let mut conn_error = None;
    let mut conn_done = false;
    let response = loop {
        tokio::select! {
            biased;
            response = &mut response => break response,
            done = &mut conn, if !conn_done => {
                conn_done = true;
                conn_error = done.err();
            }
        }
    };
    match response {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => Err(chain(conn_error.as_ref().unwrap_or(&e))),
    }
}

/// An error and its causes, `: `-separated, I/O errors shortened.
fn chain(e: &hyper::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => io_reason(io),
            None => cause.to_string(),
        };
        out.push_str(": ");
        out.push_str(&text);
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    fn check(path: &str, status: u16) -> HttpCheck {
        HttpCheck {
            path: path.into(),
            status,
        }
    }

    /// Answer one connection with `response` (None: close without
    /// answering); yields the request head received.
    async fn serve_once(response: Option<&'static str>) -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed before sending its request");
                head.extend_from_slice(&buf[..n]);
            }
            if let Some(response) = response {
                socket.write_all(response.as_bytes()).await.unwrap();
            }
            String::from_utf8(head).unwrap()
        });
        (addr, task)
    }

    fn closed_port() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    const UNAVAILABLE: &str =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

    #[tokio::test]
    async fn expected_status_passes_and_request_is_well_formed() {
        let (addr, server) = serve_once(Some(OK)).await;
        assert_eq!(http(addr, &check("/healthz", 200), 5_000).await, Ok(()));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("\r\nhost: {addr}\r\n")), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    }

    #[tokio::test]
    async fn other_status_fails() {
        let (addr, _server) = serve_once(Some(UNAVAILABLE)).await;
        assert_eq!(
            http(addr, &check("/healthz", 200), 5_000).await,
            Err("http GET /healthz: status 503, expected 200".into())
        );
    }

    #[tokio::test]
    async fn expected_status_need_not_be_200() {
        let (addr, _server) = serve_once(Some(UNAVAILABLE)).await;
        assert_eq!(http(addr, &check("/down", 503), 5_000).await, Ok(()));
    }

    #[tokio::test]
    async fn path_without_slash_gets_one() {
        let (addr, server) = serve_once(Some(OK)).await;
        assert_eq!(http(addr, &check("ready?full=1", 200), 5_000).await, Ok(()));
        let head = server.await.unwrap();
        assert!(head.starts_with("GET /ready?full=1 HTTP/1.1\r\n"), "{head}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        // Bound but never accepting: the kernel completes the connection,
        // nobody answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            http(addr, &check("/healthz", 200), 100).await,
            Err("http GET /healthz: timed out after 100 ms".into())
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        assert_eq!(
            http(closed_port(), &check("/healthz", 200), 5_000).await,
            Err("http GET /healthz: connection refused".into())
        );
    }

    #[tokio::test]
    async fn hang_up_without_answer_fails() {
        let (addr, _server) = serve_once(None).await;
        let err = http(addr, &check("/healthz", 200), 5_000)
            .await
            .unwrap_err();
        assert!(err.starts_with("http GET /healthz: "), "{err}");
        assert!(!err.contains("timed out"), "{err}");
    }

    #[tokio::test]
    async fn garbage_answer_fails() {
        let (addr, _server) = serve_once(Some("SSH-2.0-OpenSSH\r\n\r\n")).await;
        let err = http(addr, &check("/healthz", 200), 5_000)
            .await
            .unwrap_err();
        assert!(err.starts_with("http GET /healthz: "), "{err}");
        assert!(!err.contains("timed out"), "{err}");
    }
}
