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
//! - Upstream connections are kept alive and pooled per instance.

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
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

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
    weights: Option<Vec<(RevisionId, u32)>>,
    metrics: HashMap<RevisionId, Arc<RevisionMetrics>>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// The front door of one service.
pub struct Proxy {
    service: String,
    addr: SocketAddr,
    sticky: Option<Sticky>,
    state: Mutex<State>,
    table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, ProxyBody>,
    open: AtomicBool,
}

/// Headers that belong to one connection, not to the message.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Proxy {
    /// Listen on `addr` for `service`; the proxy serves until dropped.
    /// Call within a tokio runtime.
    pub fn bind(
        service: &str,
        addr: SocketAddr,
        sticky: Option<Sticky>,
    ) -> std::io::Result<Arc<Proxy>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .build(connector);
        let proxy = Arc::new(Proxy {
            service: service.to_string(),
            addr: listener.local_addr()?,
            sticky,
            state: Mutex::new(State::default()),
            table: RwLock::new(Arc::new(Table::default())),
            client,
            open: AtomicBool::new(true),
        });
        tokio::spawn(accept(Arc::downgrade(&proxy), listener));
        Ok(proxy)
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections (the service is gone).
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuild the table from `state`.
    fn publish(&self, state: &mut State) {
        let upstreams: Vec<_> = state.upstreams.values().cloned().collect();
        for u in &upstreams {
            state.metrics.entry(u.revision.clone()).or_default();
        }
        for (r, _) in state.weights.iter().flatten() {
            state.metrics.entry(r.clone()).or_default();
        }
        let table = Table::new(&upstreams, state.weights.as_deref(), &state.metrics);
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }

    /// The instances that take traffic now (ready ones, not draining).
    pub fn set_members(&self, members: &[Member]) {
        let mut state = self.state();
        let mut next = HashMap::with_capacity(members.len());
        for m in members {
            let kept = state
                .upstreams
                .get(&m.id)
                .filter(|u| u.addr == m.addr && !u.draining.load(Ordering::SeqCst))
                .cloned();
            let upstream = kept.unwrap_or_else(|| {
                Arc::new(Upstream {
                    id: m.id.clone(),
                    revision: m.revision.clone(),
                    addr: m.addr,
                    inflight: AtomicU64::new(0),
                    draining: AtomicBool::new(false),
                })
            });
            next.insert(m.id.clone(), upstream);
        }
        let same = next.len() == state.upstreams.len()
            && next
                .iter()
                .all(|(id, u)| state.upstreams.get(id).is_some_and(|v| Arc::ptr_eq(u, v)));
        if same {
            return;
        }
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
            let found: Vec<_> = ids
                .iter()
                .filter_map(|id| state.upstreams.remove(id))
                .collect();
            for u in &found {
                u.draining.store(true, Ordering::SeqCst);
            }
            if !found.is_empty() {
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
                return left;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
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

    /// Forward one request.
    async fn forward(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        let sticky = self
            .sticky
            .as_ref()
            .and_then(|s| s.key(&req))
            .map(<[u8]>::to_vec);
        let bodiless = req.body().is_end_stream();
        let retriable = bodiless
            && matches!(
                *req.method(),
                Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
            );
        let (parts, body) = req.into_parts();
        let mut body = Some(body);
        let mut tried: Vec<InstanceId> = Vec::new();
        loop {
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
            let metrics = table
                .groups
                .iter()
                .find(|g| g.revision == upstream.revision)
                .map(|g| g.metrics.clone())
                .unwrap_or_default();
            let guard = InFlight::enter(upstream.clone());
            if upstream.draining.load(Ordering::SeqCst) {
                // Lost a race with a drain: it may already have stopped.
                tried.push(upstream.id.clone());
                continue;
            }
            let request_body = match (retriable, body.take()) {
                (false, Some(b)) => b.boxed(),
                _ => Empty::new().map_err(|never| match never {}).boxed(),
            };
            let outgoing = upstream_request(&parts, upstream.addr, request_body);
            let started = Instant::now();
            match self.client.request(outgoing).await {
                Ok(res) => {
                    metrics.record(res.status().as_u16(), started.elapsed());
                    let (mut head, body) = res.into_parts();
                    strip_hop_by_hop(&mut head.headers);
                    if let Ok(v) = HeaderValue::from_str(&upstream.revision) {
                        head.headers.insert("x-rollout-revision", v);
                    }
                    let body = Tracked {
                        inner: body,
                        _guard: guard,
                    };
                    return Response::from_parts(head, body.boxed());
                }
                Err(e) if e.is_connect() && retriable && tried.len() < 2 => {
                    metrics.connect_error(false);
                    tried.push(upstream.id.clone());
                }
                Err(e) => {
                    metrics.connect_error(true);
                    let why = format!("instance {} failed: {e}\n", upstream.id);
                    return answer(StatusCode::BAD_GATEWAY, &why);
                }
            }
        }
    }
}

/// The request to send to `addr`: same method, path, headers (minus
/// hop-by-hop), plus `x-forwarded-*`.
fn upstream_request(
    parts: &hyper::http::request::Parts,
    addr: SocketAddr,
    body: ProxyBody,
) -> Request<ProxyBody> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = format!("http://{addr}{path}")
        .parse()
        .unwrap_or_else(|_| hyper::Uri::from_static("/"));
    *req.headers_mut() = parts.headers.clone();
    strip_hop_by_hop(req.headers_mut());
    if let Some(host) = parts.headers.get(hyper::header::HOST) {
        req.headers_mut().insert("x-forwarded-host", host.clone());
    }
    req.headers_mut()
        .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    req
}

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never| match never {})
        .boxed();
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
async fn accept(proxy: Weak<Proxy>, listener: tokio::net::TcpListener) {
    loop {
        let accepted = listener.accept().await;
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
            let service = hyper::service::service_fn(move |req| {
                let weak = weak.clone();
                async move {
                    Ok::<_, Infallible>(match weak.upgrade() {
                        Some(p) => p.forward(req).await,
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
