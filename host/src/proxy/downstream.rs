//! A client's connection to the front door: its HTTP/1.1 requests read,
//! forwarded to instances and answered, one at a time (requests a client
//! pipelines wait in the read buffer).
//!
//! The connection's task does all of it: it parses each head in place
//! ([`http1::request_head`]), streams the body to the instance, and writes
//! the answer's head and body back, gathered into as few writes as the
//! answer allows (one for an answer read whole). No header map, no
//! service future and no body channel stand between the two sockets.
//!
//! The client is given the door's timeouts: its idle timeout between
//! requests and while it sends a body or takes an answer, its head timeout
//! for a whole request head. An instance is given the upstream timeout for
//! its answer's head, and between reads of its body. Each side has one
//! timer per connection, re-armed only when it fires early ([`Timer`]): a
//! request moves the deadlines later without touching the runtime's timer
//! wheel.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use hyper::{Method, StatusCode};
use rollout_http1::{self as http1, Framing, Malformed, Relay, RequestHead, Step};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::admission::Ticket;
use super::body::{BodyLeft, ClientBody};
use super::config::Door;
use super::drain::InFlight;
use super::io::{READ_SIZE, read_by};
use super::routes::Routes;
use super::table::Table;
use super::timer::Timer;
use super::upstream::{self, Conn, Pending};
use crate::model::InstanceId;

/// Body bytes gathered before they are written to the client.
const WRITE_SIZE: usize = 64 * 1024;

/// Serve the requests of one client connection until it closes, sends
/// something that is not HTTP/1.1, asks to close or runs out of time.
pub(super) async fn serve(routes: Arc<Routes>, door: Door, stream: TcpStream, ticket: Ticket) {
    // The `host` of an HTTP/1.0 request that names none.
    let host = match stream.local_addr() {
        Ok(addr) => addr.to_string().into_bytes(),
        Err(_) => b"localhost".to_vec(),
    };
    let mut client = Client {
        routes,
        host,
        table: None,
        stream,
        buf: BytesMut::with_capacity(READ_SIZE),
        out: Vec::with_capacity(4096),
        timer: Timer::new(Instant::now() + door.idle_timeout),
        answer_timer: Timer::new(Instant::now() + door.upstream_timeout),
        door,
        ticket,
    };
    while let Ok(true) = client.serve_one().await {}
}

/// A client connection.
struct Client {
    routes: Arc<Routes>,
    /// The front door's address, as a `host` field value.
    host: Vec<u8>,
    /// The table the last request used, and its version.
    table: Option<(u64, Arc<Table>)>,
    stream: TcpStream,
    /// Read from the client, not consumed yet.
    buf: BytesMut,
    /// Bytes on their way to the client.
    out: Vec<u8>,
    /// When the client must have sent or taken more.
    timer: Timer,
    /// When the instance must have answered (or sent more of its answer).
    answer_timer: Timer,
    door: Door,
    /// Its place at the door: evictable while it waits for a request.
    ticket: Ticket,
}

impl Client {
    /// Read, forward and answer the next request; `Ok(false)`: the
    /// connection ends.
    async fn serve_one(&mut self) -> io::Result<bool> {
        let idle = Instant::now() + self.door.idle_timeout;
        self.ticket.waiting();
        let mut head_by = None;
        let request = loop {
            match http1::request_head(&mut self.buf, &self.host) {
                Ok(Some(request)) => {
                    self.ticket.busy();
                    break request;
                }
                Ok(None) => {
                    // Idle until a request begins; then its head has a
                    // deadline of its own.
                    let at = match self.buf.is_empty() {
                        true => idle,
                        false => {
                            *head_by.get_or_insert_with(|| Instant::now() + self.door.head_timeout)
                        }
                    };
                    let read = tokio::select! {
                        biased;
                        // Room for another connection: this one goes,
                        // even if a request is arriving (as when a client
                        // reuses a keep-alive connection the server just
                        // closed, the client retries).
                        () = self.ticket.evicted() => return Ok(false),
                        read = read_by(&mut self.stream, &mut self.buf, &mut self.timer, at) => read,
                    };
                    match read {
                        Ok(true) => {}
                        Ok(false) => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::TimedOut && head_by.is_some() => {
                            let why = format!(
                                "the request head did not arrive whole within {}\n",
                                seconds(self.door.head_timeout)
                            );
                            self.own(StatusCode::REQUEST_TIMEOUT, &why, false).await?;
                            return Ok(false);
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(bad) => {
                    let why = format!("{}\n", bad.why);
                    self.own(bad.status, &why, false).await?;
                    return Ok(false);
                }
            }
        };
        if self.routes.gone() {
            self.own(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n", false)
                .await?;
            return Ok(false);
        }
        self.forward(request).await
    }

    /// Send the front door's own answer.
    async fn own(&mut self, status: StatusCode, text: &str, keep_alive: bool) -> io::Result<()> {
        self.out.clear();
        http1::own_answer(status, text, keep_alive, &mut self.out);
        self.flush().await
    }

    /// Write what is gathered in `out`, unless the client takes none of it
    /// for the idle timeout.
    async fn flush(&mut self) -> io::Result<()> {
        self.timer.set(Instant::now() + self.door.idle_timeout);
        tokio::select! {
            biased;
            written = self.stream.write_all(&self.out) => written?,
            () = self.timer.expired() => return Err(io::ErrorKind::TimedOut.into()),
        }
        self.out.clear();
        Ok(())
    }

    /// Forward `request` to an instance and relay its answer; whether the
    /// connection carries another request.
    ///
    /// A failed exchange is tried again on another instance only when the
    /// request is idempotent, has no body and the instance did not answer;
    /// otherwise the client gets a 502, never a silent second attempt. An
    /// instance that does not answer within the upstream timeout gets its
    /// client a 504, counted as an error of its revision.
    async fn forward(&mut self, request: RequestHead) -> io::Result<bool> {
        let mut body = BodyLeft::of(&request);
        let resend = body.done
            && matches!(
                request.method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
        let mut tried = Vec::new();
        loop {
            // The current table for each attempt: a retry sees the latest
            // fleet. It is the connection's own while in use (no reference
            // counting per request), and kept for the next request.
            let (version, table) = self.routes.current(self.table.take());
            let attempt = self
                .attempt(&table, &request, &mut body, &mut tried, resend)
                .await;
            self.table = Some((version, table));
            if let Some(keep) = attempt? {
                return Ok(keep);
            }
        }
    }

    /// One attempt at forwarding `request` with `table`: whether the
    /// connection carries another request, or `None` to try again (on
    /// another instance than those `tried`).
    async fn attempt(
        &mut self,
        table: &Arc<Table>,
        request: &RequestHead,
        body: &mut BodyLeft,
        tried: &mut Vec<InstanceId>,
        resend: bool,
    ) -> io::Result<Option<bool>> {
        let sticky = self.door.sticky.as_ref().and_then(|s| s.key(request));
        let Some(group) = table.pick_group(sticky) else {
            let keep = carries_on(request, body);
            self.own(StatusCode::SERVICE_UNAVAILABLE, "no ready instance\n", keep)
                .await?;
            return Ok(Some(keep));
        };
        let picked = table
            .pick_upstream(group, tried)
            .map(|u| (group, u))
            .or_else(|| {
                table
                    .groups
                    .iter()
                    .find_map(|g| table.pick_upstream(g, tried).map(|u| (g, u)))
            });
        let Some((group, upstream)) = picked else {
            let keep = carries_on(request, body);
            let text = "no instance could be reached\n";
            self.own(StatusCode::BAD_GATEWAY, text, keep).await?;
            return Ok(Some(keep));
        };
        let metrics = &group.metrics;
        let guard = InFlight::enter(upstream);
        if upstream.draining.load(Ordering::SeqCst) {
            // Lost a race with a drain: it may already have stopped.
            tried.push(upstream.id.clone());
            return Ok(None);
        }
        let started = Instant::now();
        let wait = self.door.upstream_timeout;
        self.answer_timer.set(started + wait);
        let sending = (!body.done).then_some(ClientBody {
            stream: &mut self.stream,
            buf: &mut self.buf,
            timer: &mut self.timer,
            idle: self.door.idle_timeout,
            left: body,
        });
        let sent = tokio::select! {
            biased;
            sent = upstream::send(upstream, table, request, sending, resend) => Some(sent),
            () = self.answer_timer.expired() => None,
        };
        match sent {
            None => {
                metrics.record(StatusCode::GATEWAY_TIMEOUT.as_u16(), started.elapsed());
                drop(guard);
                let keep = carries_on(request, body);
                let why = format!(
                    "instance {} did not answer within {}\n",
                    upstream.id,
                    seconds(wait)
                );
                self.own(StatusCode::GATEWAY_TIMEOUT, &why, keep).await?;
                Ok(Some(keep))
            }
            Some(Ok(answer)) if answer.head.status == StatusCode::SWITCHING_PROTOCOLS => {
                metrics.record(answer.head.status.as_u16(), started.elapsed());
                self.out.clear();
                let revision = upstream.revision_header.as_bytes();
                http1::switch_head(&answer.head, revision, &mut self.out);
                self.flush().await?;
                if let Pending::Streaming(conn) = answer.body {
                    self.tunnel(conn, guard).await?;
                }
                Ok(Some(false))
            }
            Some(Ok(answer)) => {
                let answered = started.elapsed();
                self.out.clear();
                let (relay, keep) = http1::answer_head(
                    &answer.head,
                    upstream.revision_header.as_bytes(),
                    request.http10,
                    carries_on(request, body),
                    &mut self.out,
                );
                // The request leaves the instance once its answer is
                // read (`guard` dropped): a drain need not wait for the
                // client to take it.
                match answer.body {
                    Pending::Whole(bytes) => {
                        metrics.record(answer.head.status.as_u16(), answered);
                        drop(guard);
                        self.out.extend_from_slice(&bytes);
                        self.flush().await?;
                    }
                    Pending::Streaming(conn) => {
                        let framing = answer.head.framing;
                        let relayed = self.relay(conn, framing, relay, guard).await;
                        // What the client got: a 502 for a body that broke
                        // before any of the answer went out; an answer cut
                        // short by the instance counts as its error.
                        let status = match relayed {
                            Ok(Relayed::Unsent(_)) => StatusCode::BAD_GATEWAY,
                            Ok(Relayed::Cut(status)) => status,
                            _ => answer.head.status,
                        };
                        metrics.record(status.as_u16(), answered);
                        match relayed? {
                            Relayed::Whole(Some(conn))
                                if answer.head.reusable && request.reusable =>
                            {
                                upstream::keep(upstream, conn, table);
                            }
                            Relayed::Whole(_) => {}
                            // Nothing of the answer went out: the client
                            // gets a 502 instead, as for a malformed head.
                            Relayed::Unsent(malformed) => {
                                let why = format!("instance {} failed: {malformed}\n", upstream.id);
                                self.own(StatusCode::BAD_GATEWAY, &why, keep).await?;
                            }
                            Relayed::Cut(_) => return Ok(Some(false)),
                        }
                    }
                }
                Ok(Some(keep))
            }
            // The client's side failed: the instance is not to blame,
            // and what is left of the body cannot be told from a request.
            Some(Err(upstream::Failed {
                client: Some(status),
                why,
                ..
            })) => {
                // It may have left already: then this write fails too.
                let _ = self.own(status, &format!("{why}\n"), false).await;
                Ok(Some(false))
            }
            // Idempotent and unanswered: safe to try elsewhere.
            Some(Err(failed)) if resend && failed.unanswered && tried.len() < 2 => {
                metrics.connect_error(false);
                tried.push(upstream.id.clone());
                Ok(None)
            }
            Some(Err(failed)) => {
                metrics.connect_error(true);
                let why = format!("instance {} failed: {}\n", upstream.id, failed.why);
                let keep = carries_on(request, body);
                self.own(StatusCode::BAD_GATEWAY, &why, keep).await?;
                Ok(Some(keep))
            }
        }
    }

    /// Carry bytes both ways between the client and `conn`, switched to
    /// another protocol (WebSocket, say), until both sides have closed.
    /// The request stays in flight until then: a drain waits for it, up to
    /// its grace period, after which the instance stops and the tunnel
    /// breaks. Neither side has a timeout here: a tunnel may be quiet.
    async fn tunnel(&mut self, mut conn: Conn, guard: InFlight<'_>) -> io::Result<()> {
        if !conn.buf.is_empty() {
            self.stream.write_all(&conn.buf).await?;
        }
        if !self.buf.is_empty() {
            conn.stream.write_all(&self.buf).await?;
            self.buf.clear();
        }
        tokio::io::copy_bidirectional(&mut self.stream, &mut conn.stream).await?;
        drop(guard);
        Ok(())
    }

    /// Relay an answer's body from `conn` as `relay` says, after the head
    /// gathered in `out`, releasing `guard` once it is read; the connection
    /// back when the body was read to its end with nothing after it.
    ///
    /// A body that breaks its framing before anything of the answer was
    /// written to the client is [`Relayed::Unsent`] (what was gathered is
    /// dropped); once the head went out, an instance that breaks its
    /// framing, fails or stalls is [`Relayed::Cut`]. An error is the
    /// client's side failing.
    async fn relay(
        &mut self,
        mut conn: Conn,
        mut framing: Framing,
        relay: Relay,
        guard: InFlight<'_>,
    ) -> io::Result<Relayed> {
        let mut eof = false;
        let mut sent = false;
        loop {
            let step = match framing.step(&mut conn.buf, eof) {
                Ok(step) => step,
                Err(malformed) if !sent => {
                    self.out.clear();
                    return Ok(Relayed::Unsent(malformed));
                }
                Err(_) => return Ok(Relayed::Cut(StatusCode::BAD_GATEWAY)),
            };
            match step {
                Step::Data(data) => {
                    match relay {
                        Relay::Chunked => http1::chunk(&data, &mut self.out),
                        Relay::AsIs | Relay::UntilClose => self.out.extend_from_slice(&data),
                    }
                    if self.out.len() >= WRITE_SIZE {
                        sent = true;
                        self.flush().await?;
                    }
                }
                Step::More => {
                    // Nothing more to hand over until the instance sends it.
                    if !self.out.is_empty() {
                        sent = true;
                        self.flush().await?;
                    }
                    self.answer_timer
                        .set(Instant::now() + self.door.upstream_timeout);
                    eof = tokio::select! {
                        biased;
                        more = conn.fill() => match more {
                            Ok(more) => !more,
                            Err(_) => return Ok(Relayed::Cut(StatusCode::BAD_GATEWAY)),
                        },
                        () = self.answer_timer.expired() => {
                            return Ok(Relayed::Cut(StatusCode::GATEWAY_TIMEOUT));
                        }
                    };
                }
                Step::End => {
                    drop(guard);
                    if relay == Relay::Chunked {
                        self.out.extend_from_slice(http1::LAST_CHUNK);
                    }
                    self.flush().await?;
                    return Ok(Relayed::Whole(
                        (!eof && conn.buf.is_empty()).then_some(conn),
                    ));
                }
            }
        }
    }
}

/// How relaying an answer's body ended.
enum Relayed {
    /// Read to its end and written to the client; the connection to the
    /// instance, when it can carry another request.
    Whole(Option<Conn>),
    /// It broke its framing before any of the answer was written to the
    /// client.
    Unsent(Malformed),
    /// The instance broke its framing, failed or stalled after the
    /// answer's head went out: the client is cut off, and the answer
    /// counts as this status.
    Cut(StatusCode),
}

/// Whether the client connection may carry another request after the
/// answer to `request`: the client wants it to, and the request's body was
/// read to its end (else the rest of it would be taken for a request).
fn carries_on(request: &RequestHead, body: &BodyLeft) -> bool {
    request.keep_alive && body.done
}

/// `12s`, `1.5s`: a timeout for a message.
fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
