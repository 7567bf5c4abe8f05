//! Keep-alive HTTP/1.1 connections to instances, driven by the task of the
//! client connection whose request they carry.
//!
//! A request writes its head (and body, [`super::body`]) on a connection
//! and reads the answer's head in its client connection's task; that task
//! also relays the answer's body. There is no connection task and no
//! channel between tasks (as a hyper client connection has), so a request
//! costs no cross-task wake-up. A connection goes back to its worker
//! thread's idle pool when its body has been read to the end; an answer
//! that fits the buffer already read is handed over whole, and its
//! connection returned at once.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::task::Context;

use bytes::{Bytes, BytesMut};
use hyper::StatusCode;
use rollout_http1::{self as http1, Framing, RequestHead, ResponseHead};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::body::ClientBody;
use super::io::{READ_SIZE, read_more};
use super::table::{Table, Upstream};

/// An open connection to one instance.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Read from the instance, not consumed yet.
    pub buf: BytesMut,
}

/// Why an exchange with an instance failed.
#[derive(Debug)]
pub struct Failed {
    /// What went wrong, for the 502 and the log.
    pub why: String,
    /// Whether the instance may have seen the request: connecting failed, or
    /// nothing came back. Safe to resend when the request is idempotent.
    pub unanswered: bool,
    /// The client's side failed, not the instance's: its body was malformed
    /// or cut short, or it stalled. The answer it gets, if it still listens.
    pub client: Option<StatusCode>,
}

impl Failed {
    fn unanswered(why: String) -> Self {
        Failed {
            why,
            unanswered: true,
            client: None,
        }
    }

    /// Part of the request may have gone: never resent.
    fn sent(why: String) -> Self {
        Failed {
            why,
            unanswered: false,
            client: None,
        }
    }

    /// The client's body could not be read: `408` when it stalled, else
    /// `400`.
    fn client(e: &io::Error) -> Self {
        let status = match e.kind() {
            io::ErrorKind::TimedOut => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        };
        Failed {
            why: format!("reading the client's body: {e}"),
            unanswered: false,
            client: Some(status),
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
    pub async fn fill(&mut self) -> io::Result<bool> {
        read_more(&mut self.stream, &mut self.buf).await
    }

    /// Send a request (and its body) and read the answer's head.
    async fn exchange(
        &mut self,
        request: &RequestHead,
        body: Option<ClientBody<'_>>,
    ) -> Result<ResponseHead, Failed> {
        match body {
            None => {
                let lost = |e: io::Error| Failed::unanswered(format!("lost the connection: {e}"));
                self.stream
                    .write_all(&request.outgoing)
                    .await
                    .map_err(lost)?;
            }
            Some(body) => self.send_with_body(request, body).await?,
        }
        loop {
            match http1::response_head(&mut self.buf, &request.method, request.upgrade) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(Failed::sent(e.to_string())),
            }
            let answered = !self.buf.is_empty();
            let closed = |why: String| match answered {
                true => Failed::sent(why),
                false => Failed::unanswered(why),
            };
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Err(closed("closed the connection without answering".into())),
                Err(e) => return Err(closed(format!("lost the connection: {e}"))),
            }
        }
    }

    /// Send the head and stream the client's body after it, framed anew
    /// ([`ClientBody::forward`]); what the client has already sent goes in
    /// the same write as the head.
    async fn send_with_body(
        &mut self,
        request: &RequestHead,
        mut body: ClientBody<'_>,
    ) -> Result<(), Failed> {
        let mut out = request.outgoing.to_vec();
        loop {
            let malformed = |e| Failed::client(&io::Error::new(io::ErrorKind::InvalidData, e));
            let done = body.forward(&mut out).map_err(malformed)?;
            if !out.is_empty() {
                let sending = |e| Failed::sent(format!("sending the request: {e}"));
                self.stream.write_all(&out).await.map_err(sending)?;
                out.clear();
            }
            if done {
                return Ok(());
            }
            body.fill().await.map_err(|e| Failed::client(&e))?;
        }
    }
}

/// Idle connections kept per instance by one worker thread; more are closed.
const MAX_IDLE: usize = 128;

thread_local! {
    /// This worker thread's idle keep-alive connections to instances, which
    /// every client connection the thread serves draws from (as an nginx
    /// worker's keepalive cache). A worker is single-threaded, so the pool
    /// takes no lock; a connection is out of it while a request uses it.
    static IDLE: RefCell<Idle> = RefCell::new(Idle::default());
}

/// Idle connections by instance, most recently used last.
#[derive(Default)]
struct Idle {
    by_upstream: Vec<(Arc<Upstream>, Vec<Conn>)>,
    /// The table (by address) they were last checked against.
    checked: usize,
}

/// The most recently used idle connection to `upstream` still open, if
/// there is one. Taking the newest (last in, first out) keeps the set of
/// connections in use as small as the requests in flight, as nginx does:
/// an instance serving a thread per connection keeps as few threads busy.
fn take(upstream: &Arc<Upstream>) -> Option<Conn> {
    IDLE.with_borrow_mut(|idle| {
        // A handful of instances per service: a scan beats a hash.
        let (_, conns) = idle
            .by_upstream
            .iter_mut()
            .find(|(u, _)| Arc::ptr_eq(u, upstream))?;
        // Closed while idle (the instance stopped or timed it out): dropped.
        std::iter::from_fn(|| conns.pop()).find(Conn::idle_and_open)
    })
}

/// Keep `conn` idle for the next request to `upstream` on this thread, and
/// close idle connections to instances no longer routed to in `table` (so
/// an instance being stopped is not held by idle ones).
pub fn keep(upstream: &Arc<Upstream>, conn: Conn, table: &Arc<Table>) {
    IDLE.with_borrow_mut(|idle| {
        let current = Arc::as_ptr(table) as usize;
        if idle.checked != current {
            idle.by_upstream.retain(|(u, _)| table.routes_to(&u.id));
            idle.checked = current;
        }
        let at = match idle
            .by_upstream
            .iter()
            .position(|(u, _)| Arc::ptr_eq(u, upstream))
        {
            Some(at) => at,
            None => {
                idle.by_upstream.push((upstream.clone(), Vec::new()));
                idle.by_upstream.len() - 1
            }
        };
        let conns = &mut idle.by_upstream[at].1;
        if conns.len() >= MAX_IDLE {
            conns.remove(0);
        }
        conns.push(conn);
    });
}

/// Send `request` (with `body`) to `upstream` and read its answer's head:
/// on an idle kept connection if one is open, else a new one. A kept
/// connection the instance closed just as the request went out is retried
/// once on a new connection when the request may be sent again
/// (`resend`). An answer read whole returns its connection to the pool,
/// checked against `table`.
pub async fn send(
    upstream: &Arc<Upstream>,
    table: &Arc<Table>,
    request: &RequestHead,
    mut body: Option<ClientBody<'_>>,
    resend: bool,
) -> Result<Answer, Failed> {
    let mut kept = take(upstream);
    loop {
        let reused = kept.is_some();
        let mut conn = match kept.take() {
            Some(conn) => conn,
            None => Conn::connect(upstream).await?,
        };
        let head = match conn.exchange(request, body.take()).await {
            Ok(head) => head,
            Err(e) if reused && e.unanswered && resend => continue,
            Err(e) => return Err(e),
        };
        let switched = head.status == StatusCode::SWITCHING_PROTOCOLS;
        let body = match head.framing {
            Framing::Length(n)
                if usize::try_from(n).is_ok_and(|n| n <= conn.buf.len()) && !switched =>
            {
                let whole = conn.buf.split_to(n as usize).freeze();
                if head.reusable && request.reusable && conn.buf.is_empty() {
                    keep(upstream, conn, table);
                }
                Pending::Whole(whole)
            }
            _ => Pending::Streaming(conn),
        };
        return Ok(Answer { head, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use tokio::io::AsyncReadExt;
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

    /// Idle connections to `up` in this thread's pool.
    fn idle(up: &Arc<Upstream>) -> usize {
        IDLE.with_borrow(|idle| {
            idle.by_upstream
                .iter()
                .filter(|(u, _)| Arc::ptr_eq(u, up))
                .map(|(_, conns)| conns.len())
                .sum()
        })
    }

    fn text(answer: Answer) -> String {
        match answer.body {
            Pending::Whole(b) => String::from_utf8(b.to_vec()).unwrap(),
            Pending::Streaming(_) => panic!("expected a whole body"),
        }
    }

    const GET: &str = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    const ONE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none";
    const TWO: &str = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo";

    /// An instance, and a table.
    struct Client {
        up: Arc<Upstream>,
        table: Arc<Table>,
    }

    impl Client {
        fn of(addr: SocketAddr) -> Client {
            Client {
                up: upstream(addr),
                table: Arc::new(Table::default()),
            }
        }

        /// A GET, resent once on a new connection if `resend`.
        async fn get(&mut self, resend: bool) -> Result<Answer, Failed> {
            let mut buf = BytesMut::from(GET);
            let request = http1::request_head(&mut buf, b"door").unwrap().unwrap();
            let (up, table) = (&self.up, &self.table);
            send(up, table, &request, None, resend).await
        }
    }

    #[tokio::test]
    async fn a_kept_connection_carries_the_next_request() {
        let mut client = Client::of(instance(vec![ONE, TWO], 2).await);
        assert_eq!(text(client.get(true).await.unwrap()), "one");
        assert_eq!(idle(&client.up), 1, "kept");
        assert_eq!(text(client.get(true).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn a_kept_connection_the_instance_closed_is_replaced() {
        // One answer per connection, then the instance closes it.
        let mut client = Client::of(instance(vec![ONE, TWO], 1).await);
        assert_eq!(text(client.get(true).await.unwrap()), "one");
        assert_eq!(text(client.get(true).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn a_streamed_body_returns_its_connection_at_the_end() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n0\r\n\r\n";
        let mut client = Client::of(instance(vec![chunked, TWO], 2).await);
        let first = client.get(true).await.unwrap();
        let Pending::Streaming(mut conn) = first.body else {
            panic!("a chunked body streams");
        };
        let mut framing = first.head.framing;
        let mut bytes = Vec::new();
        loop {
            match framing.step(&mut conn.buf, false).unwrap() {
                http1::Step::Data(data) => bytes.extend_from_slice(&data),
                http1::Step::More => assert!(conn.fill().await.unwrap()),
                http1::Step::End => break,
            }
        }
        assert_eq!(&bytes[..], b"one");
        keep(&client.up, conn, &client.table);
        // Not resent: the kept connection carries it.
        assert_eq!(text(client.get(false).await.unwrap()), "two");
    }

    #[tokio::test]
    async fn idle_connections_are_reused_newest_first_and_capped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = Client::of(listener.local_addr().unwrap());
        let mut accepted = Vec::new();
        for _ in 0..=MAX_IDLE {
            let conn = Conn::connect(&client.up).await.unwrap();
            accepted.push(listener.accept().await.unwrap().0);
            keep(&client.up, conn, &client.table);
        }
        assert_eq!(idle(&client.up), MAX_IDLE, "the oldest was closed");
        let newest = accepted.last().unwrap().peer_addr().unwrap();
        let taken = take(&client.up).unwrap();
        assert_eq!(taken.stream.local_addr().unwrap(), newest);
        assert_eq!(idle(&client.up), MAX_IDLE - 1);
    }

    #[tokio::test]
    async fn an_idle_connection_the_instance_closed_is_passed_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = Client::of(listener.local_addr().unwrap());
        let open = Conn::connect(&client.up).await.unwrap();
        let _open_end = listener.accept().await.unwrap();
        let closed = Conn::connect(&client.up).await.unwrap();
        drop(listener.accept().await.unwrap());
        // The reactor has seen the close.
        closed.stream.readable().await.unwrap();
        let open_addr = open.stream.local_addr().unwrap();
        keep(&client.up, open, &client.table);
        keep(&client.up, closed, &client.table);
        let taken = take(&client.up).unwrap();
        assert_eq!(taken.stream.local_addr().unwrap(), open_addr);
        assert_eq!(idle(&client.up), 0, "the closed one is gone");
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
        let mut client = Client::of(instance(vec!["SSH-2.0-OpenSSH_9\r\n\r\n"], 1).await);
        let failed = client.get(true).await.err().unwrap();
        assert!(!failed.unanswered);
        assert!(failed.why.contains("malformed"), "{}", failed.why);
    }
}
