//! A client's connection to the front door: its HTTP/1.1 requests read,
//! forwarded to instances and answered, one at a time (requests a client
//! pipelines wait in the read buffer).
//!
//! The connection's task does all of it: it parses each head in place
//! ([`http1::request_head`]), streams the body to the instance, and writes
//! the answer's head and body back, gathered into as few writes as the
//! answer allows (one for an answer read whole). No header map, no
//! service future and no body channel stand between the two sockets.

use std::io;
use std::sync::Weak;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hyper::{Method, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http1::{self, Framing, Malformed, Relay, RequestHead, Step};
use super::upstream::{self, Conn, Pending};
use super::{InFlight, Proxy, READ_SIZE, Sticky, read_more};

/// Body bytes gathered before they are written to the client.
const WRITE_SIZE: usize = 64 * 1024;

/// Serve the requests of one client connection until it closes, sends
/// something that is not HTTP/1.1, or asks to close.
pub(super) async fn serve(proxy: Weak<Proxy>, sticky: Option<Sticky>, stream: TcpStream) {
    let mut client = Client {
        stream,
        buf: BytesMut::with_capacity(READ_SIZE),
        out: Vec::with_capacity(4096),
    };
    while let Ok(true) = client.serve_one(&proxy, sticky.as_ref()).await {}
}

/// A client connection.
struct Client {
    stream: TcpStream,
    /// Read from the client, not consumed yet.
    buf: BytesMut,
    /// Bytes on their way to the client.
    out: Vec<u8>,
}

impl Client {
    /// Read, forward and answer the next request; `Ok(false)`: the
    /// connection ends.
    async fn serve_one(
        &mut self,
        proxy: &Weak<Proxy>,
        sticky: Option<&Sticky>,
    ) -> io::Result<bool> {
        let request = loop {
            match http1::request_head(&mut self.buf, sticky) {
                Ok(Some(request)) => break request,
                Ok(None) if read_more(&mut self.stream, &mut self.buf).await? => {}
                Ok(None) => return Ok(false),
                Err(bad) => {
                    let why = format!("{}\n", bad.why);
                    self.own(bad.status, &why, false).await?;
                    return Ok(false);
                }
            }
        };
        // The proxy is held only while a request is in hand: an idle
        // connection does not keep a closed service's proxy alive.
        match proxy.upgrade() {
            Some(proxy) => self.forward(&proxy, request).await,
            None => {
                let keep = false;
                self.own(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n", keep)
                    .await?;
                Ok(keep)
            }
        }
    }

    /// Send the front door's own answer.
    async fn own(&mut self, status: StatusCode, text: &str, keep_alive: bool) -> io::Result<()> {
        self.out.clear();
        http1::own_answer(status, text, keep_alive, &mut self.out);
        self.flush().await
    }

    /// Write what is gathered in `out`.
    async fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Forward `request` to an instance and relay its answer; whether the
    /// connection carries another request.
    ///
    /// A failed exchange is tried again on another instance only when the
    /// request is idempotent, has no body and the instance did not answer;
    /// otherwise the client gets a 502, never a silent second attempt.
    async fn forward(&mut self, proxy: &Proxy, request: RequestHead) -> io::Result<bool> {
        let mut body = BodyLeft::of(&request);
        let resend = body.done
            && matches!(
                request.method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
        let mut tried = Vec::new();
        loop {
            // A fresh snapshot for each attempt: a retry sees the latest fleet.
            let table = proxy
                .table
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let Some(group) = table.pick_group(request.sticky.as_deref()) else {
                let keep = carries_on(&request, &body);
                self.own(StatusCode::SERVICE_UNAVAILABLE, "no ready instance\n", keep)
                    .await?;
                return Ok(keep);
            };
            let upstream = table.pick_upstream(group, &tried).or_else(|| {
                table
                    .groups
                    .iter()
                    .find_map(|g| table.pick_upstream(g, &tried))
            });
            let Some(upstream) = upstream else {
                let keep = carries_on(&request, &body);
                let text = "no instance could be reached\n";
                self.own(StatusCode::BAD_GATEWAY, text, keep).await?;
                return Ok(keep);
            };
            let metrics = table.metrics(&upstream.revision);
            let guard = InFlight::enter(upstream.clone());
            if upstream.draining.load(Ordering::SeqCst) {
                // Lost a race with a drain: it may already have stopped.
                tried.push(upstream.id.clone());
                continue;
            }
            let started = Instant::now();
            let sending = (!body.done).then_some(ClientBody {
                stream: &mut self.stream,
                buf: &mut self.buf,
                left: &mut body,
            });
            match upstream::send(&upstream, &table, &request, sending, resend).await {
                Ok(answer) => {
                    metrics.record(answer.head.status.as_u16(), started.elapsed());
                    self.out.clear();
                    let (relay, keep) = http1::answer_head(
                        &answer.head,
                        upstream.revision_header.as_bytes(),
                        request.http10,
                        carries_on(&request, &body),
                        &mut self.out,
                    );
                    // The request leaves the instance once its answer is
                    // read (`guard` dropped): a drain need not wait for the
                    // client to take it.
                    match answer.body {
                        Pending::Whole(bytes) => {
                            drop(guard);
                            self.out.extend_from_slice(&bytes);
                            self.flush().await?;
                        }
                        Pending::Streaming(conn) => {
                            let framing = answer.head.framing;
                            if let Some(conn) = self.relay(conn, framing, relay, guard).await?
                                && answer.head.reusable
                            {
                                upstream::keep(&upstream, conn, &table);
                            }
                        }
                    }
                    return Ok(keep);
                }
                // Idempotent and unanswered: safe to try elsewhere.
                Err(failed) if resend && failed.unanswered && tried.len() < 2 => {
                    metrics.connect_error(false);
                    tried.push(upstream.id.clone());
                }
                Err(failed) => {
                    metrics.connect_error(true);
                    let why = format!("instance {} failed: {}\n", upstream.id, failed.why);
                    let keep = carries_on(&request, &body);
                    self.own(StatusCode::BAD_GATEWAY, &why, keep).await?;
                    return Ok(keep);
                }
            }
        }
    }

    /// Relay an answer's body from `conn` as `relay` says, after the head
    /// gathered in `out`, releasing `guard` once it is read; the connection
    /// back when the body was read to its end with nothing after it.
    async fn relay(
        &mut self,
        mut conn: Conn,
        mut framing: Framing,
        relay: Relay,
        guard: InFlight,
    ) -> io::Result<Option<Conn>> {
        let mut eof = false;
        loop {
            let step = framing
                .step(&mut conn.buf, eof)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match step {
                Step::Data(data) => {
                    match relay {
                        Relay::Chunked => http1::chunk(&data, &mut self.out),
                        Relay::AsIs | Relay::UntilClose => self.out.extend_from_slice(&data),
                    }
                    if self.out.len() >= WRITE_SIZE {
                        self.flush().await?;
                    }
                }
                Step::More => {
                    // Nothing more to hand over until the instance sends it.
                    if !self.out.is_empty() {
                        self.flush().await?;
                    }
                    eof = !conn.fill().await?;
                }
                Step::End => {
                    drop(guard);
                    if relay == Relay::Chunked {
                        self.out.extend_from_slice(http1::LAST_CHUNK);
                    }
                    self.flush().await?;
                    return Ok((!eof && conn.buf.is_empty()).then_some(conn));
                }
            }
        }
    }
}

/// Whether the client connection may carry another request after the
/// answer to `request`: the client wants it to, and the request's body was
/// read to its end (else the rest of it would be taken for a request).
fn carries_on(request: &RequestHead, body: &BodyLeft) -> bool {
    request.keep_alive && body.done
}

/// What is left of a request's body to read from its client.
pub struct BodyLeft {
    framing: Framing,
    /// Read to its end (or it had none).
    done: bool,
    /// The client waits for `100 Continue`, not sent yet.
    expect_continue: bool,
}

impl BodyLeft {
    fn of(request: &RequestHead) -> Self {
        BodyLeft {
            framing: request.body,
            done: request.body.is_done(),
            expect_continue: request.expect_continue,
        }
    }
}

/// A request's body on its way from the client, read as it is sent on.
pub struct ClientBody<'a> {
    stream: &'a mut TcpStream,
    buf: &'a mut BytesMut,
    left: &'a mut BodyLeft,
}

impl ClientBody<'_> {
    /// The next piece of body the client has already sent, if any.
    pub fn buffered(&mut self) -> Result<Option<Bytes>, Malformed> {
        if self.left.done {
            return Ok(None);
        }
        match self.left.framing.step(self.buf, false)? {
            Step::Data(data) => Ok(Some(data)),
            Step::More => Ok(None),
            Step::End => {
                self.left.done = true;
                Ok(None)
            }
        }
    }

    /// Whether the body has been read to its end.
    pub fn done(&self) -> bool {
        self.left.done
    }

    /// Whether it goes on in chunks (its length is not known ahead).
    pub fn chunked(&self) -> bool {
        matches!(self.left.framing, Framing::Chunked(_))
    }

    /// Read more of it from the client, first telling a client that waits
    /// for it to go on (`100 Continue`).
    pub async fn fill(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.left.expect_continue) {
            self.stream.write_all(http1::CONTINUE).await?;
        }
        match read_more(self.stream, self.buf).await? {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed its connection before the end of its body",
            )),
        }
    }
}
