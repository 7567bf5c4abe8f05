//! The front door: one HTTP/1.1 listener per service, forwarding to ready
//! instances by revision weight, draining instances before they stop, and
//! counting requests, errors and latency per revision.
//!
//! - Routing reads an immutable [`table::Table`] snapshot (no lock on the
//!   request path); the fleet publishes its ready instances and policies
//!   set weights, each swapping in a new table.
//! - Draining: an instance about to stop is marked, leaves the table, and
//!   the stop waits until its in-flight requests (bodies included) finish,
//!   up to the grace period.
//! - A failed connection to an instance is retried on another instance for
//!   idempotent requests without a body; other requests get a 502, never a
//!   silent second attempt.
//! - Each client connection keeps its own keep-alive connections to the
//!   instances it used (HTTP/1.1 serves one request at a time per
//!   connection), so forwarding takes no lock and no shared pool.

pub mod metrics;
pub mod table;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

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
    /// The client's key in `req`, if it has one.
    fn key<'a>(&self, req: &'a Request<Incoming>) -> Option<&'a [u8]> {
        match self {
            Sticky::Header(name) => req.headers().get(name).map(HeaderValue::as_bytes),
            Sticky::Cookie(name) => req
                .headers()
                .get_all(hyper::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|kv| kv.trim().split_once('='))
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_bytes()),
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

/// A request body sent to an instance: none (most requests, nothing to
/// allocate), or the client's, streamed.
type Outgoing = Either<Empty<Bytes>, Incoming>;

/// An answer to a client: an instance's, streamed while its request stays
/// in flight, or the proxy's own (503, 502).
type Answer = Either<Tracked, Full<Bytes>>;

/// The front door of one service.
pub struct Proxy {
    service: String,
    addr: SocketAddr,
    sticky: Option<Sticky>,
    state: Mutex<State>,
    table: RwLock<Arc<Table>>,
    open: AtomicBool,
    closed: tokio::sync::watch::Sender<bool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.closed.send_replace(true);
    }
}

/// A non-blocking listener on `addr` that other listeners may share.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    // Handed over as a std listener: each worker registers its own with
    // its own runtime.
    socket.listen(1024)?.into_std()
}

/// The upstream connections of one client connection, by instance, and
/// the routing table they were last checked against.
#[derive(Default)]
struct Upstreams(Mutex<Kept>);

/// Kept connections, and the table (by address) they were checked against.
#[derive(Default)]
struct Kept {
    conns: Vec<(Arc<Upstream>, SendRequest<Outgoing>)>,
    checked: usize,
}

impl Upstreams {
    /// A ready connection to `upstream`: a kept one, else a new one.
    async fn checkout(&self, upstream: &Arc<Upstream>) -> Result<SendRequest<Outgoing>, String> {
        // A handful of instances per client connection: a scan beats a hash.
        let kept = {
            let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let kept = &mut guard.conns;
            let at = kept.iter().position(|(u, _)| Arc::ptr_eq(u, upstream));
            at.map(|i| kept.swap_remove(i).1)
        };
        if let Some(mut sender) = kept
            && sender.ready().await.is_ok()
        {
            return Ok(sender);
        }
        let stream = tokio::net::TcpStream::connect(upstream.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", upstream.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {}: {e}", upstream.addr))?;
        tokio::spawn(conn);
        Ok(sender)
    }

    /// Keep `sender` for the next request of this client connection, and
    /// forget connections to instances no longer routed to.
    fn keep(&self, upstream: &Arc<Upstream>, sender: SendRequest<Outgoing>, table: &Arc<Table>) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // When the table changed, connections to instances no longer routed
        // to close, so an instance being stopped is not held by idle ones.
        let current = Arc::as_ptr(table) as usize;
        if kept.checked != current {
            kept.conns.retain(|(u, _)| table.routes_to(&u.id));
            kept.checked = current;
        }
        kept.conns.push((upstream.clone(), sender));
    }
}

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: [HeaderName; 7] = [
    hyper::header::CONNECTION,
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    hyper::header::UPGRADE,
];
/// `Keep-Alive`, hop-by-hop too (hyper has no constant for it).
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// The header that tells a client which revision answered.
static REVISION_HEADER: HeaderName = HeaderName::from_static("x-rollout-revision");

impl Proxy {
    /// Listen on `addr` for `service`; the proxy serves until closed or
    /// dropped.
    ///
    /// Like nginx's workers, one thread per core runs its own
    /// single-threaded runtime with its own listener on the same port
    /// (`SO_REUSEPORT`, the kernel spreads connections): a request and its
    /// upstream connection stay on one thread, with no work stealing or
    /// cross-core wake-ups on the request path.
    pub fn bind(
        service: &str,
        addr: SocketAddr,
        sticky: Option<Sticky>,
    ) -> std::io::Result<Arc<Proxy>> {
        // SO_REUSEPORT would let a second service (or agent) share the port
        // and split its clients: a plain bind first proves it is free.
        drop(std::net::TcpListener::bind(addr)?);
        let first = reuseport_listener(addr)?;
        let bound = first.local_addr()?;
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut listeners = vec![first];
        for _ in 1..workers {
            listeners.push(reuseport_listener(bound)?);
        }
        let proxy = Arc::new(Proxy {
            service: service.to_string(),
            addr: bound,
            sticky,
            state: Mutex::new(State::default()),
            table: RwLock::new(Arc::new(Table::default())),
            open: AtomicBool::new(true),
            closed: tokio::sync::watch::Sender::new(false),
        });
        for (i, listener) in listeners.into_iter().enumerate() {
            let (weak, closed) = (Arc::downgrade(&proxy), proxy.closed.subscribe());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("proxy-{service}-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        match tokio::net::TcpListener::from_std(listener) {
                            Ok(l) => accept(weak, l, closed).await,
                            Err(e) => eprintln!("proxy: cannot use its listener: {e}"),
                        }
                    })
                })?;
        }
        Ok(proxy)
    }

    /// How it pins clients, if it does.
    pub fn sticky(&self) -> Option<&Sticky> {
        self.sticky.as_ref()
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
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
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
    }

    /// Forward one request of a client connection.
    async fn forward(&self, req: Request<Incoming>, conns: &Upstreams) -> Response<Answer> {
        let sticky = self
            .sticky
            .as_ref()
            .and_then(|s| s.key(&req))
            .map(<[u8]>::to_vec);
        let retriable = req.body().is_end_stream()
            && matches!(
                *req.method(),
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
        let mut outgoing = Some(upstream_request(req));
        let mut tried: Vec<InstanceId> = Vec::new();
        loop {
            // A fresh snapshot for each attempt: a retry sees the latest fleet.
            let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
            let Some(group) = table.pick_group(sticky.as_deref()) else {
                return answer(StatusCode::SERVICE_UNAVAILABLE, "no ready instance\n");
            };
            let upstream = table.pick_upstream(group, &tried).or_else(|| {
                table
                    .groups
                    .iter()
                    .find_map(|g| table.pick_upstream(g, &tried))
            });
            let Some(upstream) = upstream else {
                return answer(StatusCode::BAD_GATEWAY, "no instance could be reached\n");
            };
            let metrics = table.metrics(&upstream.revision);
            let guard = InFlight::enter(upstream.clone());
            if upstream.draining.load(Ordering::SeqCst) {
                // Lost a race with a drain: it may already have stopped.
                tried.push(upstream.id.clone());
                continue;
            }
            let Some(request) = outgoing.take() else {
                return answer(StatusCode::BAD_GATEWAY, "the request could not be resent\n");
            };
            let started = Instant::now();
            let sent = match conns.checkout(&upstream).await {
                Ok(mut sender) => {
                    let sent = sender.try_send_request(request).await;
                    if sent.is_ok() {
                        conns.keep(&upstream, sender, &table);
                    }
                    sent.map_err(|mut e| (e.take_message(), e.into_error().to_string()))
                }
                Err(why) => Err((Some(request), why)),
            };
            match sent {
                Ok(res) => {
                    metrics.record(res.status().as_u16(), started.elapsed());
                    let (mut head, body) = res.into_parts();
                    strip_hop_by_hop(&mut head.headers);
                    head.headers
                        .insert(REVISION_HEADER.clone(), upstream.revision_header.clone());
                    let body = Tracked {
                        inner: body,
                        _guard: guard,
                    };
                    return Response::from_parts(head, Either::Left(body));
                }
                // Not sent at all: safe to try elsewhere for idempotent requests.
                Err((Some(request), _)) if retriable && tried.len() < 2 => {
                    metrics.connect_error(false);
                    tried.push(upstream.id.clone());
                    outgoing = Some(request);
                }
                Err((_, why)) => {
                    metrics.connect_error(true);
                    let why = format!("instance {} failed: {why}\n", upstream.id);
                    return answer(StatusCode::BAD_GATEWAY, &why);
                }
            }
        }
    }
}

/// The request to send to an instance: same method, origin-form target,
/// headers (the client's `Host` included) minus hop-by-hop ones.
fn upstream_request(req: Request<Incoming>) -> Request<Outgoing> {
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if parts.uri.scheme().is_some() {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = path
            .parse()
            .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    }
    parts.version = hyper::Version::HTTP_11;
    let body = match body.is_end_stream() {
        true => Either::Left(Empty::new()),
        false => Either::Right(body),
    };
    Request::from_parts(parts, body)
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(&KEEP_ALIVE);
}

fn answer(status: StatusCode, text: &str) -> Response<Answer> {
    let body = Either::Right(Full::new(Bytes::from(text.to_string())));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    res
}

/// A request in flight on an upstream, until dropped.
struct InFlight(Arc<Upstream>);

impl InFlight {
    fn enter(upstream: Arc<Upstream>) -> Self {
        upstream.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(upstream)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request in flight until it ends.
struct Tracked {
    inner: Incoming,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Accept connections until the proxy is dropped or closed.
async fn accept(
    proxy: Weak<Proxy>,
    listener: tokio::net::TcpListener,
    mut closed: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closed.wait_for(|c| *c) => return,
        };
        let Some(p) = proxy.upgrade() else {
            return;
        };
        if !p.open.load(Ordering::SeqCst) {
            return;
        }
        let Ok((stream, _)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let weak = proxy.clone();
        tokio::spawn(async move {
            let conns = Arc::new(Upstreams::default());
            let service = hyper::service::service_fn(move |req| {
                let (weak, conns) = (weak.clone(), conns.clone());
                async move {
                    Ok::<_, Infallible>(match weak.upgrade() {
                        Some(p) => p.forward(req, &conns).await,
                        None => answer(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, port: u16) -> Member {
        Member {
            id: id.into(),
            revision: "r1".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn routed(proxy: &Proxy) -> Vec<InstanceId> {
        let table = proxy.table.read().unwrap().clone();
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
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), None).unwrap();
        proxy.set_members(&[member("a", 1), member("b", 2)]);
        let a = proxy.state().upstreams["a"].clone();
        let request = InFlight::enter(a.clone());
        // `a` fails a probe: out of the table, its request still running.
        proxy.set_members(&[member("b", 2)]);
        assert_eq!(routed(&proxy), ["b"]);
        let finish = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(request);
        });
        let started = Instant::now();
        assert_eq!(proxy.drain(&["a".into()], Duration::from_secs(5)).await, 0);
        assert!(started.elapsed() >= Duration::from_millis(40));
        finish.await.unwrap();
    }

    #[tokio::test]
    async fn a_draining_instance_is_never_routed_again() {
        let proxy = Proxy::bind("svc", "127.0.0.1:0".parse().unwrap(), None).unwrap();
        proxy.set_members(&[member("a", 1), member("b", 2)]);
        let a = proxy.state().upstreams["a"].clone();
        let request = InFlight::enter(a);
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

    #[tokio::test]
    async fn a_port_in_use_is_refused_despite_reuseport() {
        let proxy = Proxy::bind("one", "127.0.0.1:0".parse().unwrap(), None).unwrap();
        let taken = Proxy::bind("two", proxy.local_addr(), None);
        assert!(taken.is_err());
    }
}
