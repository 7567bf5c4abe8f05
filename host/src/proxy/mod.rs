//! The front door: one HTTP/1.1 listener per service, forwarding to ready
//! instances by revision weight, draining instances before they stop, and
//! counting requests, errors and latency per revision.
//!
//! - Routing reads an immutable [`table::Table`] snapshot; the fleet
//!   publishes its ready instances and policies set weights, each swapping
//!   in a new table and bumping a version. A client connection keeps the
//!   table it last used and takes the new one only when the version moved:
//!   a request reads one shared word, no lock, no reference count.
//! - Draining: an instance about to stop is marked, leaves the table, and
//!   the stop waits until its in-flight requests (bodies included) finish,
//!   up to the grace period.
//! - A failed connection to an instance is retried on another instance for
//!   idempotent requests without a body; other requests get a 502, never a
//!   silent second attempt.
//! - Each client connection is served by one task that parses its requests
//!   in place and talks to the instances itself ([`downstream`]), over
//!   keep-alive connections drawn from its worker thread's idle pool
//!   ([`upstream`]): a worker is single-threaded, so forwarding takes no
//!   lock.

pub mod admission;
pub mod downstream;
pub mod metrics;
pub mod table;
pub mod upstream;

pub use rollout_http1 as http1;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hyper::header::{HeaderName, HeaderValue};
use tokio::io::AsyncReadExt;

use crate::model::{InstanceId, RevisionId, RevisionStats};
use metrics::RevisionMetrics;
use table::{Table, Upstream};

/// How a client is pinned to a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// By the value of this request header.
    Header(HeaderName),
    /// By the value of this cookie.
    Cookie(String),
}

impl Sticky {
    /// The client's key among the fields of `request`, if it has one.
    fn key<'a>(&self, request: &'a http1::RequestHead) -> Option<&'a [u8]> {
        match self {
            Sticky::Header(name) => request.field(name.as_str()),
            Sticky::Cookie(name) => request
                .fields()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"cookie"))
                .flat_map(|(_, v)| v.split(|&b| b == b';'))
                .filter_map(|kv| {
                    let at = kv.iter().position(|&b| b == b'=')?;
                    Some((kv[..at].trim_ascii(), kv[at + 1..].trim_ascii()))
                })
                .find(|(k, _)| *k == name.as_bytes())
                .map(|(_, v)| v),
        }
    }
}

/// How a front door treats its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Door {
    /// How it pins clients to a revision, if it does.
    pub sticky: Option<Sticky>,
    /// A connection with no request under way closes after this long
    /// without one; a client that stops sending a body or reading an
    /// answer for this long is cut off.
    pub idle_timeout: Duration,
    /// A request's head must arrive whole within this long of its first
    /// byte, else `408 Request Timeout` and the connection closes.
    pub head_timeout: Duration,
    /// An instance must answer within this long (the head of its answer),
    /// else its client gets `504 Gateway Timeout`, an error of its
    /// revision; and it must not pause this long within its answer's body.
    pub upstream_timeout: Duration,
    /// The most client connections it holds (see [`admission`]).
    pub max_connections: usize,
}

impl Default for Door {
    /// Not sticky, the spec's default timeouts.
    fn default() -> Self {
        Door {
            sticky: None,
            idle_timeout: Duration::from_millis(crate::spec::DEFAULT_IDLE_TIMEOUT_MS),
            head_timeout: Duration::from_millis(crate::spec::DEFAULT_HEAD_TIMEOUT_MS),
            upstream_timeout: Duration::from_millis(crate::spec::DEFAULT_UPSTREAM_TIMEOUT_MS),
            max_connections: crate::spec::DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// A ready instance, as the fleet publishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Instance id.
    pub id: InstanceId,
    /// Its revision.
    pub revision: RevisionId,
    /// Where it listens.
    pub addr: SocketAddr,
}

#[derive(Default)]
struct State {
    upstreams: HashMap<InstanceId, Arc<Upstream>>,
    /// Out of the table (not ready, or draining) with requests possibly
    /// still in flight: a drain must wait for them too.
    leaving: HashMap<InstanceId, Arc<Upstream>>,
    weights: Option<Vec<(RevisionId, u32)>>,
    metrics: HashMap<RevisionId, Arc<RevisionMetrics>>,
}

/// The routing a client connection follows, shared by the proxy and its
/// connections. A connection holds it, not the proxy: an idle connection
/// does not keep a closed service's proxy alive, it sees it gone.
struct Routes {
    table: RwLock<Arc<Table>>,
    /// Bumped after each new table.
    version: AtomicU64,
    /// The proxy was dropped.
    gone: AtomicBool,
}

impl Routes {
    /// The current table: `cached` (as of its version) if it still is,
    /// else the new one. Costs one load of a word written only when the
    /// table changes.
    fn current(&self, cached: Option<(u64, Arc<Table>)>) -> (u64, Arc<Table>) {
        let version = self.version.load(Ordering::Acquire);
        match cached {
            Some((seen, table)) if seen == version => (seen, table),
            _ => {
                let table = self.table.read().unwrap_or_else(|p| p.into_inner());
                (version, table.clone())
            }
        }
    }

    /// Whether the proxy is gone.
    fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }
}

/// The front door of one service.
pub struct Proxy {
    service: String,
    addr: SocketAddr,
    door: Door,
    state: Mutex<State>,
    routes: Arc<Routes>,
    admission: Arc<admission::Admission>,
    open: AtomicBool,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.routes.gone.store(true, Ordering::Relaxed);
        self.closed.send_replace(true);
    }
}

impl Proxy {
    /// Listen on `addr` for `service`; the proxy serves until closed or
    /// dropped.
    ///
    /// Like nginx's workers, one thread per core runs its own
    /// single-threaded runtime: a connection, its requests and their
    /// upstream connections stay on one thread, with no work stealing or
    /// cross-core wake-ups on the request path. The first worker also
    /// accepts, and hands connections to the workers in turn: an even
    /// split, where `SO_REUSEPORT` listeners (the kernel hashing each
    /// connection to one) can leave most of a few long-lived connections
    /// on one core.
    pub fn bind(service: &str, addr: SocketAddr, door: Door) -> std::io::Result<Arc<Proxy>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let proxy = Arc::new(Proxy {
            service: service.to_string(),
            addr: listener.local_addr()?,
            state: Mutex::new(State::default()),
            routes: Arc::new(Routes {
                table: RwLock::new(Arc::new(Table::default())),
                version: AtomicU64::new(0),
                gone: AtomicBool::new(false),
            }),
            admission: admission::Admission::new(
                door.max_connections,
                admission::Budget::process(),
            ),
            door,
            open: AtomicBool::new(true),
            closed: tokio::sync::watch::Sender::new(false),
        });
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (handoffs, inboxes): (Vec<_>, Vec<_>) = (0..workers)
            .map(|_| tokio::sync::mpsc::unbounded_channel::<Handoff>())
            .unzip();
        let mut acceptor = Some((listener, handoffs));
        for (i, inbox) in inboxes.into_iter().enumerate() {
            let (weak, closed) = (Arc::downgrade(&proxy), proxy.closed.subscribe());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let accepts = acceptor.take();
            std::thread::Builder::new()
                .name(format!("proxy-{service}-{i}"))
                .spawn(move || {
                    metrics::record_into(i);
                    runtime.block_on(async move {
                        if let Some((listener, handoffs)) = accepts {
                            match tokio::net::TcpListener::from_std(listener) {
                                Ok(l) => {
                                    tokio::spawn(accept(weak.clone(), l, closed.clone(), handoffs));
                                }
                                Err(e) => eprintln!("proxy: cannot use its listener: {e}"),
                            }
                        }
                        serve(weak, inbox, closed).await
                    })
                })?;
        }
        Ok(proxy)
    }

    /// How it treats its clients.
    pub fn door(&self) -> &Door {
        &self.door
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections (the service is gone).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.closed.send_replace(true);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuild the table from `state`.
    fn publish(&self, state: &mut State) {
        let upstreams: Vec<_> = state.upstreams.values().cloned().collect();
        let live: std::collections::HashSet<RevisionId> = upstreams
            .iter()
            .chain(state.leaving.values())
            .map(|u| u.revision.clone())
            .chain(state.weights.iter().flatten().map(|(r, _)| r.clone()))
            .collect();
        // Revisions long gone take no memory.
        state.metrics.retain(|r, _| live.contains(r));
        for r in live {
            state.metrics.entry(r).or_default();
        }
        let table = Table::new(&upstreams, state.weights.as_deref(), &state.metrics);
        let routes = &self.routes;
        *routes.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        routes.version.fetch_add(1, Ordering::Release);
    }

    /// The instances that take traffic now (ready ones). An instance being
    /// drained is never taken back; one that left keeps its in-flight count
    /// if it comes back.
    pub fn set_members(&self, members: &[Member]) {
        let mut state = self.state();
        let mut next = HashMap::with_capacity(members.len());
        for m in members {
            let known = state
                .upstreams
                .get(&m.id)
                .or_else(|| state.leaving.get(&m.id))
                .filter(|u| u.addr == m.addr)
                .cloned();
            let upstream = match known {
                Some(u) if u.draining.load(Ordering::SeqCst) => continue,
                Some(u) => u,
                None => Arc::new(Upstream {
                    id: m.id.clone(),
                    revision: m.revision.clone(),
                    revision_header: HeaderValue::from_str(&m.revision)
                        .unwrap_or_else(|_| HeaderValue::from_static("invalid")),
                    addr: m.addr,
                    inflight: AtomicU64::new(0),
                    draining: AtomicBool::new(false),
                }),
            };
            next.insert(m.id.clone(), upstream);
        }
        let same = next.len() == state.upstreams.len()
            && next
                .iter()
                .all(|(id, u)| state.upstreams.get(id).is_some_and(|v| Arc::ptr_eq(u, v)));
        if same {
            return;
        }
        let gone: Vec<_> = state
            .upstreams
            .drain()
            .filter(|(id, _)| !next.contains_key(id))
            .collect();
        state.leaving.extend(gone);
        state.leaving.retain(|id, u| {
            !next.contains_key(id)
                && (u.inflight.load(Ordering::SeqCst) > 0 || u.draining.load(Ordering::SeqCst))
        });
        state.upstreams = next;
        self.publish(&mut state);
    }

    /// Split traffic by weight per revision (`None`: by instance count).
    pub fn set_weights(&self, weights: Option<Vec<(RevisionId, u32)>>) {
        let mut state = self.state();
        state.weights = weights;
        self.publish(&mut state);
    }

    /// Take `ids` out of the table and wait until their requests in flight
    /// have finished, at most `grace`; returns how many were still in flight.
    pub async fn drain(&self, ids: &[InstanceId], grace: Duration) -> u64 {
        let draining: Vec<Arc<Upstream>> = {
            let mut state = self.state();
            let routed: Vec<_> = ids
                .iter()
                .filter_map(|id| state.upstreams.remove(id))
                .collect();
            let found: Vec<_> = routed
                .iter()
                .cloned()
                .chain(ids.iter().filter_map(|id| state.leaving.get(id).cloned()))
                .collect();
            for u in &found {
                u.draining.store(true, Ordering::SeqCst);
                state.leaving.insert(u.id.clone(), u.clone());
            }
            if !routed.is_empty() {
                self.publish(&mut state);
            }
            found
        };
        let started = Instant::now();
        loop {
            let left: u64 = draining
                .iter()
                .map(|u| u.inflight.load(Ordering::SeqCst))
                .sum();
            if left == 0 || started.elapsed() >= grace {
                let mut state = self.state();
                for u in &draining {
                    state.leaving.remove(&u.id);
                }
                return left;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The weights set by the policy, if any (`None`: by instance count).
    pub fn weights(&self) -> Option<Vec<(RevisionId, u32)>> {
        self.state().weights.clone()
    }

    /// Revisions with traffic metrics, sorted.
    pub fn revisions(&self) -> Vec<RevisionId> {
        let mut revisions: Vec<_> = self.state().metrics.keys().cloned().collect();
        revisions.sort();
        revisions
    }

    /// Traffic of `revision` over the last `window`.
    pub fn stats(&self, revision: &str, window: Duration) -> RevisionStats {
        let metrics = self.state().metrics.get(revision).cloned();
        let s = metrics.map(|m| m.summary(window)).unwrap_or_default();
        RevisionStats {
            revision: revision.to_string(),
            requests: s.requests,
            errors: s.errors,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        }
    }

    /// Prometheus text for this service, appended to `out`.
    pub fn prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let (metrics, weights, ready) = {
            let state = self.state();
            let mut ready: HashMap<RevisionId, usize> = HashMap::new();
            for u in state.upstreams.values() {
                *ready.entry(u.revision.clone()).or_default() += 1;
            }
            (state.metrics.clone(), state.weights.clone(), ready)
        };
        let mut revisions: Vec<_> = metrics.keys().cloned().collect();
        revisions.sort();
        for r in revisions {
            let labels = format!("service=\"{}\",revision=\"{r}\"", self.service);
            let m = &metrics[&r];
            let t = m.totals();
            let s = m.summary(Duration::from_secs(60));
            let weight = match &weights {
                Some(w) => w.iter().filter(|(x, _)| *x == r).map(|(_, w)| *w).sum(),
                None => ready.get(&r).copied().unwrap_or(0) as u32,
            };
            let _ = writeln!(out, "rollout_requests_total{{{labels}}} {}", t.requests);
            let _ = writeln!(out, "rollout_request_errors_total{{{labels}}} {}", t.errors);
            let _ = writeln!(
                out,
                "rollout_upstream_connect_errors_total{{{labels}}} {}",
                t.connect_errors
            );
            for (q, us) in [("0.5", s.p50_us), ("0.9", s.p90_us), ("0.99", s.p99_us)] {
                let _ = writeln!(
                    out,
                    "rollout_request_latency_seconds{{{labels},quantile=\"{q}\"}} {}",
                    us as f64 / 1e6
                );
            }
            let ready = ready.get(&r).copied().unwrap_or(0);
            let _ = writeln!(out, "rollout_ready_instances{{{labels}}} {ready}");
            let _ = writeln!(out, "rollout_traffic_weight{{{labels}}} {weight}");
        }
        let counts = self.admission.counts();
        let labels = format!("service=\"{}\",port=\"{}\"", self.service, self.addr.port());
        let _ = writeln!(
            out,
            "rollout_front_door_connections{{{labels}}} {}",
            counts.held
        );
        let _ = writeln!(
            out,
            "rollout_front_door_connections_refused_total{{{labels}}} {}",
            counts.refused
        );
        let _ = writeln!(
            out,
            "rollout_front_door_connections_evicted_total{{{labels}}} {}",
            counts.evicted
        );
    }
}

/// Bytes read from a socket at a time, from clients and instances alike.
const READ_SIZE: usize = 16 * 1024;

/// Read more from `stream` into `buf`; `Ok(false)` at its end.
async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    buf.reserve(READ_SIZE);
    Ok(stream.read_buf(buf).await? > 0)
}

/// A request in flight on an upstream, until dropped. It borrows the
/// upstream from the table the request was routed by: no reference count
/// is taken per request.
struct InFlight<'a>(&'a Upstream);

impl<'a> InFlight<'a> {
    fn enter(upstream: &'a Upstream) -> Self {
        upstream.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(upstream)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection accepted for a worker, with its place at the door.
type Handoff = (std::net::TcpStream, admission::Ticket);

/// What a client the door has no room for is told, with a `503`.
const NO_ROOM: &str = "the front door holds all the connections it may (traffic.max-connections)\n";

/// Accept connections until the proxy is dropped or closed, handing them
/// to the workers in turn; one the door has no room for is answered 503
/// and closed here. Accept errors (out of descriptors, most often) are
/// logged, at most once a second, and accepting pauses briefly.
async fn accept(
    proxy: Weak<Proxy>,
    listener: tokio::net::TcpListener,
    mut closed: tokio::sync::watch::Receiver<bool>,
    handoffs: Vec<tokio::sync::mpsc::UnboundedSender<Handoff>>,
) {
    let mut logged: Option<Instant> = None;
    for next in (0..handoffs.len()).cycle() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.wait_for(|c| *c) => return,
        };
        let admission = match proxy.upgrade() {
            Some(p) if p.open.load(Ordering::SeqCst) => p.admission.clone(),
            _ => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                    let addr = listener
                        .local_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    eprintln!("front door {addr}: cannot accept a connection: {e}");
                    logged = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(ticket) = admission.admit() else {
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // A worker that is gone takes nothing: the connection closes.
        if let Ok(stream) = stream.into_std() {
            let _ = handoffs[next].send((stream, ticket));
        }
    }
}

/// Answer a client the door has no room for with a `503` and close its
/// connection. Written straight to the socket (a fresh one's send buffer
/// takes it whole, and the runtime has not seen it writable yet), then
/// what the client already sent is read off, so that the close does not
/// reset the connection and lose the answer.
fn refuse(stream: tokio::net::TcpStream) {
    use std::io::{Read, Write};
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let mut answer = Vec::with_capacity(256);
    http1::own_answer(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        NO_ROOM,
        false,
        &mut answer,
    );
    let _ = stream.write_all(&answer);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

/// Serve the connections handed to this worker until the proxy is dropped
/// or closed.
async fn serve(
    proxy: Weak<Proxy>,
    mut inbox: tokio::sync::mpsc::UnboundedReceiver<Handoff>,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let handoff = tokio::select! {
            handoff = inbox.recv() => handoff,
            _ = closed.wait_for(|c| *c) => return,
        };
        let Some((stream, ticket)) = handoff else {
            return;
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            continue;
        };
        let Some((routes, door)) = proxy.upgrade().map(|p| (p.routes.clone(), p.door.clone()))
        else {
            return;
        };
        tokio::spawn(downstream::serve(routes, door, stream, ticket));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::{Method, Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;

    fn member(id: &str, port: u16) -> Member {
        Member {
            id: id.into(),
            revision: "r1".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn routed(proxy: &Proxy) -> Vec<InstanceId> {
        let (_, table) = proxy.routes.current(None);
        let mut ids: Vec<_> = table
            .groups
            .iter()
            .flat_map(|g| g.upstreams.iter().map(|u| u.id.clone()))
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_drain_waits_for_requests_on_an_instance_that_already_left() {
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
        proxy.set_members(&[member("a", 1), member("b", 2)]);
        let a = proxy.state().upstreams["a"].clone();
        let request = InFlight::enter(&a);
        // `a` fails a probe: out of the table, its request still running.
        proxy.set_members(&[member("b", 2)]);
        assert_eq!(routed(&proxy), ["b"]);
        let finish = async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(request);
        };
        let started = Instant::now();
        let ids = ["a".into()];
        let drained = proxy.drain(&ids, Duration::from_secs(5));
        assert_eq!(tokio::join!(drained, finish).0, 0);
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    #[tokio::test]
    async fn a_draining_instance_is_never_routed_again() {
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
        proxy.set_members(&[member("a", 1), member("b", 2)]);
        let a = proxy.state().upstreams["a"].clone();
        let request = InFlight::enter(&a);
        let drain = {
            let proxy = proxy.clone();
            tokio::spawn(async move { proxy.drain(&["a".into()], Duration::from_secs(5)).await })
        };
        while routed(&proxy) != ["b"] {
            tokio::task::yield_now().await;
        }
        // A stale publish still naming `a` does not bring it back.
        proxy.set_members(&[member("a", 1), member("b", 2)]);
        assert_eq!(routed(&proxy), ["b"]);
        drop(request);
        assert_eq!(drain.await.unwrap(), 0);
    }

    type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

    /// `n` frames of 16 KiB, of unknown total length (sent chunked).
    fn frames(n: usize) -> TestBody {
        use http_body_util::BodyExt;
        let frames =
            (0..n).map(|i| Ok(hyper::body::Frame::data(Bytes::from(vec![i as u8; 16384]))));
        http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed()
    }

    /// An instance that echoes a POST's body (saying how it was framed)
    /// and answers anything else with 64 chunked frames.
    async fn echo_instance() -> SocketAddr {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let framing = match req.headers().contains_key("transfer-encoding") {
                        true => "chunked",
                        false => "length",
                    };
                    let res = match *req.method() {
                        Method::POST => {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            Response::builder()
                                .header("x-framing", framing)
                                .body(Full::new(body).boxed())
                        }
                        _ => Response::builder().body(frames(64)),
                    };
                    Ok::<_, Infallible>(res.unwrap())
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    #[tokio::test]
    async fn bodies_of_every_framing_pass_through() {
        use http_body_util::BodyExt;
        let proxy = proxied().await;
        let stream = connect(&proxy).await;
        let (mut client, conn) =
            hyper::client::conn::http1::handshake::<_, TestBody>(TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = |method: Method, body: TestBody| {
            Request::builder()
                .method(method)
                .uri("/")
                .header("host", "svc")
                .body(body)
                .unwrap()
        };
        // One keep-alive client connection carries them all, in turn.
        for _ in 0..2 {
            let res = client
                .send_request(request(Method::POST, frames(3)))
                .await
                .unwrap();
            assert_eq!(res.headers()["x-framing"], "chunked");
            assert_eq!(res.headers()["x-rollout-revision"], "r1");
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 3 * 16384);
            assert!(body[16384..32768].iter().all(|&b| b == 1));

            let posted = Full::new(Bytes::from_static(b"hello")).boxed();
            let res = client
                .send_request(request(Method::POST, posted))
                .await
                .unwrap();
            assert_eq!(res.headers()["x-framing"], "length");
            assert_eq!(
                &res.into_body().collect().await.unwrap().to_bytes()[..],
                b"hello"
            );

            let res = client
                .send_request(request(Method::GET, frames(0)))
                .await
                .unwrap();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body.len(), 64 * 16384);
            assert!(body[63 * 16384..].iter().all(|&b| b == 63));

            let res = client
                .send_request(request(Method::HEAD, frames(0)))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            assert!(
                res.into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
                    .is_empty()
            );
        }
        // Every request has left the instance.
        assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 0);
    }

    /// A proxy for `svc` in front of one echo instance.
    async fn proxied() -> Arc<Proxy> {
        proxied_by(Door::default()).await
    }

    /// A proxy for `svc` with `door` in front of one echo instance.
    async fn proxied_by(door: Door) -> Arc<Proxy> {
        in_front_of(door, echo_instance().await)
    }

    /// Write `text` on a raw connection, then read until `done` holds for
    /// what came back (or the proxy closes the connection).
    async fn raw(
        stream: &mut tokio::net::TcpStream,
        text: &str,
        done: impl Fn(&str) -> bool,
    ) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream.write_all(text.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !done(&String::from_utf8_lossy(&got)) {
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(got).unwrap()
    }

    async fn connect(proxy: &Proxy) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn pipelined_requests_are_answered_in_order() {
        let proxy = proxied().await;
        let mut stream = connect(&proxy).await;
        let one = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\none";
        let two = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\r\ntwo";
        let got = raw(&mut stream, &format!("{one}{two}"), |t| t.ends_with("two")).await;
        let one_at = got.find("\r\n\r\none").expect(&got);
        let two_at = got.find("\r\n\r\ntwo").expect(&got);
        assert!(one_at < two_at, "{got}");
        assert_eq!(got.matches("x-rollout-revision: r1").count(), 2, "{got}");
    }

    #[tokio::test]
    async fn a_client_expecting_100_continue_is_told_to_go_on() {
        let proxy = proxied().await;
        let mut stream = connect(&proxy).await;
        let head =
            "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n";
        let interim = raw(&mut stream, head, |t| t.contains("\r\n\r\n")).await;
        assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
        let got = raw(&mut stream, "hello", |t| t.ends_with("hello")).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    }

    #[tokio::test]
    async fn an_http10_client_gets_a_body_of_unknown_length_until_the_close() {
        let proxy = proxied().await;
        let mut stream = connect(&proxy).await;
        // The instance answers a GET in chunks; HTTP/1.0 has no chunks.
        let got = raw(&mut stream, "GET / HTTP/1.0\r\nhost: svc\r\n\r\n", |_| {
            false
        })
        .await;
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("transfer-encoding"),
            "{head}"
        );
        assert_eq!(body.len(), 64 * 16384);
    }

    #[tokio::test]
    async fn a_bad_request_is_refused_and_its_connection_closed() {
        let proxy = proxied().await;
        let mut stream = connect(&proxy).await;
        let smuggled = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 3\r\n\
                        transfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        let got = raw(&mut stream, smuggled, |_| false).await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
        assert!(got.contains("connection: close"), "{got}");
        assert!(
            got.ends_with("both content-length and transfer-encoding\n"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn past_max_connections_the_one_idle_longest_gives_way() {
        let proxy = proxied_by(Door {
            max_connections: 1,
            ..Door::default()
        })
        .await;
        let get = "GET / HTTP/1.1\r\nhost: svc\r\ncontent-length: 0\r\n\r\n";
        let mut idle = connect(&proxy).await;
        let mut newcomer = connect(&proxy).await;
        // The idle connection is closed without an answer.
        assert_eq!(raw(&mut idle, "", |_| false).await, "");
        let got = raw(&mut newcomer, get, |t| t.contains("\r\n\r\n")).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        let mut metrics = String::new();
        proxy.prometheus(&mut metrics);
        assert!(
            metrics.contains("_evicted_total{service=\"svc\""),
            "{metrics}"
        );
        assert_eq!(proxy.admission.counts().evicted, 1);
    }

    #[tokio::test]
    async fn past_max_connections_with_every_one_busy_a_newcomer_gets_503() {
        let proxy = proxied_by(Door {
            max_connections: 1,
            ..Door::default()
        })
        .await;
        // A request whose body never comes keeps its connection busy.
        let mut busy = connect(&proxy).await;
        let head = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 5\r\n\r\n";
        tokio::io::AsyncWriteExt::write_all(&mut busy, head.as_bytes())
            .await
            .unwrap();
        // Its head has reached the instance: it is in flight.
        let upstream = proxy.state().upstreams["a"].clone();
        while upstream.inflight.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let mut newcomer = connect(&proxy).await;
        let got = raw(&mut newcomer, "", |_| false).await;
        assert!(
            got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{got}"
        );
        assert!(got.contains("connection: close"), "{got}");
        assert_eq!(proxy.admission.counts().refused, 1);
    }

    #[tokio::test]
    async fn without_a_ready_instance_the_answer_is_503_and_the_connection_stays() {
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
        let mut stream = connect(&proxy).await;
        let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
        for _ in 0..2 {
            let got = raw(&mut stream, get, |t| t.ends_with("no ready instance\n")).await;
            assert!(
                got.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
                "{got}"
            );
            assert!(!got.contains("connection: close"), "{got}");
        }
    }

    /// A door that waits `ms` on its clients.
    fn impatient(ms: u64) -> Door {
        Door {
            sticky: None,
            idle_timeout: Duration::from_millis(ms),
            head_timeout: Duration::from_millis(ms),
            upstream_timeout: Duration::from_millis(ms),
            ..Door::default()
        }
    }

    #[tokio::test]
    async fn an_idle_client_is_let_go_after_the_idle_timeout() {
        let proxy = proxied_by(impatient(100)).await;
        let mut stream = connect(&proxy).await;
        let get = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 2\r\n\r\nhi";
        let got = raw(&mut stream, get, |t| t.ends_with("hi")).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        let answered = Instant::now();
        // Nothing more comes, and nothing more is sent: the door closes.
        assert_eq!(raw(&mut stream, "", |_| false).await, "");
        assert!(answered.elapsed() >= Duration::from_millis(90));
    }

    #[tokio::test]
    async fn a_head_that_does_not_arrive_whole_in_time_gets_408() {
        let proxy = proxied_by(impatient(100)).await;
        let mut stream = connect(&proxy).await;
        let got = raw(&mut stream, "GET / HTTP/1.1\r\nhost: s", |_| false).await;
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
        assert!(got.contains("connection: close"), "{got}");
        assert!(
            got.ends_with("the request head did not arrive whole within 0.1s\n"),
            "{got}"
        );
    }

    #[tokio::test]
    async fn a_body_that_stalls_gets_408_and_does_not_count_against_the_instance() {
        let proxy = proxied_by(impatient(100)).await;
        let mut stream = connect(&proxy).await;
        let post = "POST / HTTP/1.1\r\nhost: svc\r\ncontent-length: 10\r\n\r\nabc";
        let got = raw(&mut stream, post, |_| false).await;
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
        assert!(got.contains("reading the client's body"), "{got}");
        let stats = proxy.stats("r1", Duration::from_secs(60));
        assert_eq!((stats.requests, stats.errors), (0, 0), "{stats:?}");
    }

    /// An instance on a loopback port that serves each connection with
    /// `serve`, speaking raw bytes.
    async fn raw_instance<F, Fut>(serve: F) -> SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream));
            }
        });
        addr
    }

    /// An instance that takes connections and reads, and answers
    /// nothing but `begin` (then holds the connection open).
    async fn mute_instance(begin: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        raw_instance(move |mut stream| async move {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(begin.as_bytes()).await;
            while stream.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        })
        .await
    }

    /// A proxy with `door` in front of `instance` as `a` of `r1`.
    fn in_front_of(door: Door, instance: SocketAddr) -> Arc<Proxy> {
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), door).unwrap();
        proxy.set_members(&[Member {
            id: "a".into(),
            revision: "r1".into(),
            addr: instance,
        }]);
        proxy
    }

    #[tokio::test]
    async fn an_instance_that_does_not_answer_in_time_gets_its_client_a_504_counted_as_an_error() {
        let proxy = in_front_of(impatient(100), mute_instance("").await);
        let mut stream = connect(&proxy).await;
        let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
        let got = raw(&mut stream, get, |t| t.ends_with("0.1s\n")).await;
        assert!(got.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{got}");
        assert!(
            got.ends_with("instance a did not answer within 0.1s\n"),
            "{got}"
        );
        let stats = proxy.stats("r1", Duration::from_secs(60));
        assert_eq!((stats.requests, stats.errors), (1, 1), "{stats:?}");
        // Its request has left the instance.
        assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 0);
    }

    #[tokio::test]
    async fn an_answer_that_stalls_midway_is_cut_off() {
        let begin = "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc";
        let proxy = in_front_of(impatient(100), mute_instance(begin).await);
        let mut stream = connect(&proxy).await;
        let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
        // The client has the head and what came of the body, then the end.
        let got = raw(&mut stream, get, |_| false).await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nabc"), "{got}");
    }

    #[tokio::test]
    async fn a_body_that_breaks_before_the_answer_went_out_is_a_502() {
        // Head and broken chunk arrive together: nothing went to the client.
        let broken = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n";
        let proxy = in_front_of(impatient(1000), mute_instance(broken).await);
        let mut stream = connect(&proxy).await;
        let get = "GET / HTTP/1.1\r\nhost: svc\r\n\r\n";
        let got = raw(&mut stream, get, |t| t.ends_with("size\n")).await;
        assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
        assert!(!got.contains("abc"), "{got}");
        // The client's connection carries on.
        let got = raw(&mut stream, get, |t| t.ends_with("size\n")).await;
        assert!(got.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{got}");
        // Counted as the errors they are, for a canary's analysis.
        let stats = proxy.stats("r1", Duration::from_secs(60));
        assert_eq!((stats.requests, stats.errors), (2, 2));
    }

    /// An instance that switches every connection to an echo protocol.
    async fn echo_switching_instance() -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        raw_instance(|mut stream| async move {
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.contains("upgrade: websocket\r\nconnection: upgrade\r\n"));
            let switch = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                          Connection: Upgrade\r\n\r\n";
            stream.write_all(switch.as_bytes()).await.unwrap();
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => stream.write_all(&buf[..n]).await.unwrap(),
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_upgraded_connection_is_a_tunnel_to_its_instance_until_it_closes() {
        let proxy = in_front_of(impatient(100), echo_switching_instance().await);
        let mut stream = connect(&proxy).await;
        let ask =
            "GET /ws HTTP/1.1\r\nhost: svc\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n";
        let got = raw(&mut stream, ask, |t| t.ends_with("\r\n\r\n")).await;
        assert!(
            got.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{got}"
        );
        assert!(
            got.contains("upgrade: websocket\r\nconnection: upgrade\r\n"),
            "{got}"
        );
        assert!(got.contains("x-rollout-revision: r1\r\n"), "{got}");
        // Longer quiet than every timeout of the door: a tunnel has none.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for word in ["ping", "pong"] {
            assert_eq!(raw(&mut stream, word, |t| t == word).await, word);
        }
        // The request is in flight until the tunnel closes.
        assert_eq!(proxy.drain(&["a".into()], Duration::ZERO).await, 1);
        drop(stream);
        assert_eq!(proxy.drain(&["a".into()], Duration::from_secs(5)).await, 0);
    }

    #[tokio::test]
    async fn a_port_in_use_is_refused() {
        let proxy = Proxy::bind("one", "127.0.0.1:0".parse().unwrap(), Door::default()).unwrap();
        let taken = Proxy::bind("two", proxy.local_addr(), Door::default());
        assert!(taken.is_err());
    }
}
