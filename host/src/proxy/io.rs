//! Socket reads shared by both sides of the front door: clients
//! ([`super::downstream`]) and instances ([`super::upstream`]).

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::timer::Timer;

/// Bytes read from a socket at a time, from clients and instances alike.
pub(super) const READ_SIZE: usize = 16 * 1024;

/// Read more from `stream` into `buf`; `Ok(false)` at its end.
pub(super) async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    buf.reserve(READ_SIZE);
    Ok(stream.read_buf(buf).await? > 0)
}

/// Read more from `stream` into `buf`; `TimedOut` if nothing came by `at`.
pub(super) async fn read_by(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timer: &mut Timer,
    at: Instant,
) -> std::io::Result<bool> {
    timer.set(at);
    tokio::select! {
        biased;
        more = read_more(stream, buf) => more,
        () = timer.expired() => Err(std::io::ErrorKind::TimedOut.into()),
    }
}
