//! TCP probe: a connection must be accepted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use super::{io_reason, timed_out};

/// Connect to `addr` within `timeout_ms`, then close the connection.
///
/// Errors read like `tcp 127.0.0.1:4000: connection refused` or
/// `tcp 127.0.0.1:4000: timed out after 1000 ms`.
pub async fn tcp(addr: SocketAddr, timeout_ms: u64) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_millis(timeout_ms), TcpStream::connect(addr)).await {
        Ok(Ok(_stream)) => Ok(()),
        Ok(Err(e)) => Err(format!("tcp {addr}: {}", io_reason(&e))),
        Err(_) => Err(format!("tcp {addr}: {}", timed_out(timeout_ms))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listening_port_passes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert_eq!(tcp(listener.local_addr().unwrap(), 5_000).await, Ok(()));
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(
            tcp(addr, 5_000).await,
            Err(format!("tcp {addr}: connection refused"))
        );
    }
}
