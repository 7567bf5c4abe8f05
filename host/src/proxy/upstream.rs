//! Keep-alive HTTP/1.1 connections to instances, driven by the task of the
//! request they carry.
//!
//! A request writes its head on a connection and reads the answer's head
//! in its own task; the body is read by the task that writes it to the
//! client. There is no connection task and no channel between tasks (as a
//! hyper client connection has), so a request costs no cross-task wake-up.
//! A connection goes back to its client connection's [`Upstreams`] when its
//! body has been read to the end; an answer that fits the buffer already
//! read is handed over whole, and its connection returned at once.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::Method;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::http1::{self, Framing, ResponseHead, Step};
use super::table::{Table, Upstream};

/// Bytes read from an instance at a time.
const READ_SIZE: usize = 16 * 1024;

/// An open connection to one instance.
pub struct Conn {
    stream: TcpStream,
    /// Read from the instance, not consumed yet.
    buf: BytesMut,
}

/// Why an exchange with an instance failed.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong, for the 502 and the log.
    pub why: String,
    /// Whether the instance may have seen the request: connecting failed, or
    /// nothing came back. Safe to resend when the request is idempotent.
    pub unanswered: bool,
}

impl Failed {
    fn unanswered(why: String) -> Self {
        Failed {
            why,
            unanswered: true,
        }
    }
}

/// A request as it goes to instances, prepared once for every attempt.
pub struct Outgoing {
    /// Its head on the wire (see [`http1::request_head`]).
    pub head: Bytes,
    /// Its method (whether the answer has a body depends on it).
    pub method: Method,
    /// Its body goes chunked (the client's has no known length).
    pub chunked: bool,
    /// Idempotent and without body: safe to send again when the instance
    /// did not answer.
    pub resend: bool,
}

impl Outgoing {
    /// The request of `parts` with `body` (none: it has no body).
    pub fn new(parts: &hyper::http::request::Parts, body: Option<&Incoming>) -> Outgoing {
        let chunked = body.is_some_and(|b| b.size_hint().exact().is_none());
        Outgoing {
            head: http1::request_head(parts, chunked),
            method: parts.method.clone(),
            chunked,
            resend: body.is_none()
                && matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
                ),
        }
    }
}

/// An instance's answer: its head, and its body still to read (or read).
pub struct Answer {
    /// The head.
    pub head: ResponseHead,
    /// The body.
    pub body: Pending,
}

/// An answer's body as the exchange leaves it.
pub enum Pending {
    /// Read whole already (the connection went back to its pool).
    Whole(Bytes),
    /// Still on the connection.
    Streaming(Conn),
}

impl Conn {
    async fn connect(upstream: &Upstream) -> Result<Conn, Failed> {
        let stream = TcpStream::connect(upstream.addr)
            .await
            .map_err(|e| Failed::unanswered(format!("connect {}: {e}", upstream.addr)))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: BytesMut::with_capacity(READ_SIZE),
        })
    }

    /// Whether an idle kept connection is still usable: an idle connection
    /// has nothing to read, so readiness means the instance closed it (or
    /// sent garbage). Reads the readiness the reactor already has, no
    /// system call.
    fn idle_and_open(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.buf.is_empty() && self.stream.poll_read_ready(&mut cx).is_pending()
    }

    /// Read more from the instance into the buffer; `Ok(false)` at its end.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(READ_SIZE);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    /// Send a request and read the answer's head.
    async fn exchange(
        &mut self,
        request: &Outgoing,
        body: Option<Incoming>,
    ) -> Result<ResponseHead, Failed> {
        let lost = |e: io::Error| Failed::unanswered(format!("lost the connection: {e}"));
        self.stream.write_all(&request.head).await.map_err(lost)?;
        if let Some(body) = body {
            self.send_body(body, request.chunked).await?;
        }
        loop {
            match http1::response_head(&mut self.buf, &request.method) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => {
                    return Err(Failed {
                        why: e.to_string(),
                        unanswered: false,
                    });
                }
            }
            let answered = !self.buf.is_empty();
            let closed = |why: String| Failed {
                why,
                unanswered: !answered,
            };
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Err(closed("closed the connection without answering".into())),
                Err(e) => return Err(closed(format!("lost the connection: {e}"))),
            }
        }
    }

    /// Stream the client's body to the instance (chunked when its length
    /// is unknown).
    async fn send_body(&mut self, mut body: Incoming, chunked: bool) -> Result<(), Failed> {
        // Part of the body may have been sent: never resent.
        let failed = |why: String| Failed {
            why,
            unanswered: false,
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed(format!("reading the client's body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue; // Trailers are not forwarded.
            };
            let written = match chunked {
                true if data.is_empty() => Ok(()),
                true => self.stream.write_all(&http1::chunk(&data)).await,
                false => self.stream.write_all(&data).await,
            };
            written.map_err(|e| failed(format!("sending the body: {e}")))?;
        }
        if chunked {
            self.stream
                .write_all(http1::LAST_CHUNK)
                .await
                .map_err(|e| failed(format!("sending the body: {e}")))?;
        }
        Ok(())
    }
}

/// The kept connections of one client connection, by instance, and the
/// routing table they were last checked against. HTTP/1.1 carries one
/// request at a time, so a client connection needs at most one connection
/// per instance at a time, and forwarding takes no shared pool.
#[derive(Default)]
pub struct Upstreams(Mutex<Kept>);

#[derive(Default)]
struct Kept {
    conns: Vec<(Arc<Upstream>, Conn)>,
    /// The table (by address) `conns` were last checked against.
    checked: usize,
}

impl Upstreams {
    /// A kept connection to `upstream` still open, if there is one.
    fn take(&self, upstream: &Arc<Upstream>) -> Option<Conn> {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A handful of instances per client connection: a scan beats a hash.
        let at = kept
            .conns
            .iter()
            .position(|(u, _)| Arc::ptr_eq(u, upstream))?;
        let (_, conn) = kept.conns.swap_remove(at);
        conn.idle_and_open().then_some(conn)
    }

    /// Keep `conn` for the next request of this client connection, and
    /// close kept connections to instances no longer routed to (so an
    /// instance being stopped is not held by idle ones).
    fn keep(&self, upstream: &Arc<Upstream>, conn: Conn, table: &Arc<Table>) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let current = Arc::as_ptr(table) as usize;
        if kept.checked != current {
            kept.conns.retain(|(u, _)| table.routes_to(&u.id));
            kept.checked = current;
        }
        kept.conns.push((upstream.clone(), conn));
    }

    /// Send `request` (with `body`) to `upstream` and read its answer's
    /// head: on a kept connection if one is open, else a new one. A kept
    /// connection the instance closed just as the request went out is
    /// retried once on a new connection when the request may be resent.
    pub async fn send(
        self: &Arc<Self>,
        upstream: &Arc<Upstream>,
        table: &Arc<Table>,
        request: &Outgoing,
        mut body: Option<Incoming>,
    ) -> Result<Answer, Failed> {
        let mut kept = self.take(upstream);
        loop {
            let reused = kept.is_some();
            let mut conn = match kept.take() {
                Some(conn) => conn,
                None => Conn::connect(upstream).await?,
            };
            let head = match conn.exchange(request, body.take()).await {
                Ok(head) => head,
                Err(e) if reused && e.unanswered && request.resend => continue,
                Err(e) => return Err(e),
            };
            let body = match head.framing {
                Framing::Length(n) if n as usize <= conn.buf.len() => {
                    let whole = conn.buf.split_to(n as usize).freeze();
                    if head.reusable && conn.buf.is_empty() {
                        self.keep(upstream, conn, table);
                    }
                    Pending::Whole(whole)
                }
                _ => Pending::Streaming(conn),
            };
            return Ok(Answer { head, body });
        }
    }
}

/// An answer's body read from its connection as the client takes it; the
/// connection goes back to its pool at the end, and `Guard` (the request
/// in flight on the instance) is released then.
pub struct Streamed<Guard> {
    conn: Option<Conn>,
    framing: Framing,
    eof: bool,
    reusable: bool,
    home: Arc<Upstreams>,
    upstream: Arc<Upstream>,
    table: Arc<Table>,
    guard: Option<Guard>,
}

impl<Guard> Streamed<Guard> {
    /// The body of `head` on `conn`, going back to `home` when read.
    pub fn new(
        conn: Conn,
        head: &ResponseHead,
        home: Arc<Upstreams>,
        upstream: Arc<Upstream>,
        table: Arc<Table>,
        guard: Guard,
    ) -> Self {
        Streamed {
            conn: Some(conn),
            framing: head.framing,
            eof: false,
            reusable: head.reusable,
            home,
            upstream,
            table,
            guard: Some(guard),
        }
    }

    /// The body is read: the connection goes home if it can carry another
    /// request, and the request leaves the instance.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && !self.eof
            && conn.buf.is_empty()
        {
            self.home.keep(&self.upstream, conn, &self.table);
        }
        self.guard = None;
    }
}

impl<Guard: Unpin> Body for Streamed<Guard> {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.step(&mut conn.buf, this.eof) {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(Step::End) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))));
                }
            }
            ready!(conn.stream.poll_read_ready(cx))?;
            conn.buf.reserve(READ_SIZE);
            match conn.stream.try_read_buf(&mut conn.buf) {
                Ok(0) => this.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    this.reusable = false;
                    this.finish();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || self.framing.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use tokio::net::TcpListener;

    fn upstream(addr: SocketAddr) -> Arc<Upstream> {
        Arc::new(Upstream {
            id: "i1".into(),
            revision: "r1".into(),
            revision_header: hyper::header::HeaderValue::from_static("r1"),
            addr,
            inflight: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        })
    }

    /// An instance that answers each request read on a connection with the
    /// next of `answers`, then closes when told to by `close_after`.
    async fn instance(answers: Vec<&'static str>, close_after: usize) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut served = 0;
                let mut buf = vec![0; 4096];
                while served < close_after {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let Some(answer) = answers.next() else { return };
                    stream.write_all(answer.as_bytes()).await.unwrap();
                    served += 1;
                }
            }
        });
        addr
    }

    fn text(answer: Answer) -> String {
        match answer.body {
            Pending::Whole(b) => String::from_utf8(b.to_vec()).unwrap(),
            Pending::Streaming(_) => panic!("expected a whole body"),
        }
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    const ONE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none";
    const TWO: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo";

    /// One client connection's pool, an instance, and a table.
    struct Client {
        pool: Arc<Upstreams>,
        up: Arc<Upstream>,
        table: Arc<Table>,
    }

    impl Client {
        fn of(addr: SocketAddr) -> Client {
            Client {
                pool: Arc::new(Upstreams::default()),
                up: upstream(addr),
                table: Arc::new(Table::default()),
            }
        }

        /// A GET, resent once on a new connection if `resend`.
        async fn get(&self, resend: bool) -> Result<Answer, Failed> {
            let request = Outgoing {
                head: Bytes::from_static(GET),
                method: Method::GET,
                chunked: false,
                resend,
            };
            let (pool, up, table) = (&self.pool, &self.up, &self.table);
            pool.send(up, table, &request, None).await
        }
    }

    #[tokio::test]
    async fn a_kept_connection_carries_the_next_request() {
        let client = Client::of(instance(vec![ONE, TWO], 2).await);
        assert_eq!(text(client.get(true).await.unwrap()), "one");
        assert_eq!(client.pool.0.lock().unwrap().conns.len(), 1, "kept");
        assert_eq!(text(client.get(true).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn a_kept_connection_the_instance_closed_is_replaced() {
        // One answer per connection, then the instance closes it.
        let client = Client::of(instance(vec![ONE, TWO], 1).await);
        assert_eq!(text(client.get(true).await.unwrap()), "one");
        assert_eq!(text(client.get(true).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn a_streamed_body_returns_its_connection_at_the_end() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n";
        let client = Client::of(instance(vec![chunked, TWO], 2).await);
        let first = client.get(true).await.unwrap();
        let Pending::Streaming(conn) = first.body else {
            panic!("a chunked body streams");
        };
        let (pool, up, table) = (&client.pool, &client.up, &client.table);
        let body = Streamed::new(
            conn,
            &first.head,
            pool.clone(),
            up.clone(),
            table.clone(),
            (),
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"one");
        // Not resent: the kept connection carries it.
        assert_eq!(text(client.get(false).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn an_instance_that_closes_without_answering_is_unanswered() {
        let failed = Client::of(instance(vec![], 1).await).get(true).await;
        let failed = failed.err().unwrap();
        assert!(failed.unanswered, "{}", failed.why);
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let refused = Client::of(addr).get(true).await.err().unwrap();
        assert!(
            refused.unanswered && refused.why.starts_with("connect"),
            "{}",
            refused.why
        );
    }

    #[tokio::test]
    async fn garbage_from_an_instance_is_answered_not_resent() {
        let client = Client::of(instance(vec!["SSH-2.0-OpenSSH_9\r\n\r\n"], 1).await);
        let failed = client.get(true).await.err().unwrap();
        assert!(!failed.unanswered);
        assert!(failed.why.contains("malformed"), "{}", failed.why);
    }
}
