//! A request's body on its way from the client to an instance: what is
//! left of it ([`BodyLeft`]) and the client side it is read from while it
//! is sent on ([`ClientBody`]), framed anew by the codec.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use rollout_http1::{CONTINUE, Framing, Malformed, RequestHead};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::io::read_by;
use super::timer::Timer;

/// What is left of a request's body to read from its client.
pub(super) struct BodyLeft {
    framing: Framing,
    /// Read to its end (or it had none).
    pub(super) done: bool,
    /// The client waits for `100 Continue`, not sent yet.
    expect_continue: bool,
}

impl BodyLeft {
    /// All of `request`'s body, none read yet.
    pub(super) fn of(request: &RequestHead) -> Self {
        BodyLeft {
            framing: request.body,
            done: request.body.is_done(),
            expect_continue: request.expect_continue,
        }
    }
}

/// A request's body on its way from the client, read as it is sent on.
pub(super) struct ClientBody<'a> {
    /// The client's connection.
    pub(super) stream: &'a mut TcpStream,
    /// Read from the client, not consumed yet.
    pub(super) buf: &'a mut BytesMut,
    /// The client's deadline.
    pub(super) timer: &'a mut Timer,
    /// The most the client may pause within it.
    pub(super) idle: Duration,
    /// What is left of it.
    pub(super) left: &'a mut BodyLeft,
}

impl ClientBody<'_> {
    /// Move the body the client has already sent into `out`, framed as it
    /// goes to the instance ([`Framing::forward`]); whether it is whole.
    pub(super) fn forward(&mut self, out: &mut Vec<u8>) -> Result<bool, Malformed> {
        if !self.left.done {
            self.left.done = self.left.framing.forward(self.buf, out)?;
        }
        Ok(self.left.done)
    }

    /// Read more of it from the client, first telling a client that waits
    /// for it to go on (`100 Continue`); `TimedOut` when the client sends
    /// nothing for the idle timeout.
    pub(super) async fn fill(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.left.expect_continue) {
            self.stream.write_all(CONTINUE).await?;
        }
        let at = Instant::now() + self.idle;
        match read_by(self.stream, self.buf, self.timer, at).await? {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed its connection before the end of its body",
            )),
        }
    }
}
