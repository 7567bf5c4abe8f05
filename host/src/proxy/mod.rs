//! The front door: one HTTP/1.1 listener per service, forwarding to ready
//! instances by revision weight, draining instances before they stop, and
//! counting requests, errors and latency per revision.
//!
//! - [`config`]: how a door treats its clients ([`Door`], [`Sticky`]).
//! - `listener`: the listener and its worker threads (one per core).
//! - `members`: the ready instances the fleet publishes ([`Member`]) and
//!   the weights a policy sets; each change publishes a new routing table
//!   (`table`: weights, stickiness, least in flight) to the `routes` every
//!   connection reads without a lock.
//! - `drain`: an instance about to stop leaves the table, and its stop
//!   waits for its requests in flight, up to the grace period.
//! - `downstream`: a client connection, served by one task that parses
//!   its requests in place and talks to the instances itself over
//!   keep-alive connections from its worker's idle pool (`upstream`); a
//!   failed connection to an instance is retried elsewhere only for
//!   idempotent requests without a body, else it is a 502. `body`, `io`
//!   and `timer` are what both sides share.
//! - [`admission`]: which client connections a door holds; `metrics` and
//!   `report`: traffic per revision, for policies and `/metrics`.
//!
//! The HTTP/1.1 codec is the `rollout-http1` crate; routing lives here.

pub mod admission;
mod body;
pub(crate) mod config;
mod downstream;
mod drain;
mod io;
mod listener;
mod members;
mod metrics;
mod report;
mod routes;
mod sticky;
mod table;
mod timer;
mod upstream;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::Door;
pub use members::Member;
pub use sticky::Sticky;

use crate::model::{InstanceId, RevisionId, RevisionStats};
use admission::{Admission, Budget};
use members::Members;
use routes::Routes;

/// The front door of one service.
pub struct Proxy {
    service: String,
    addr: SocketAddr,
    door: Door,
    members: Members,
    routes: Arc<Routes>,
    admission: Arc<Admission>,
    /// True once closed or dropped: its listener and workers stop.
    closed: tokio::sync::watch::Sender<bool>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.routes.leave();
        self.closed.send_replace(true);
    }
}

impl Proxy {
    /// Listen on `addr` for `service`, on one worker thread per core; the
    /// proxy serves until closed or dropped.
    pub fn bind(service: &str, addr: SocketAddr, door: Door) -> std::io::Result<Arc<Proxy>> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let routes = Arc::new(Routes::default());
        let proxy = Arc::new(Proxy {
            service: service.to_string(),
            addr: listener.local_addr()?,
            members: Members::new(routes.clone()),
            routes,
            admission: Admission::new(door.max_connections, Budget::process()),
            door,
            closed: tokio::sync::watch::Sender::new(false),
        });
        let entrance = listener::Entrance {
            routes: proxy.routes.clone(),
            door: proxy.door.clone(),
            admission: proxy.admission.clone(),
            closed: proxy.closed.subscribe(),
        };
        listener::spawn(service, listener, entrance)?;
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
        self.closed.send_replace(true);
    }

    /// The instances that take traffic now (ready ones). An instance being
    /// drained is never taken back; one that left keeps its in-flight count
    /// if it comes back.
    pub fn set_members(&self, members: &[Member]) {
        self.members.set(members);
    }

    /// Split traffic by weight per revision (`None`: by instance count).
    pub fn set_weights(&self, weights: Option<Vec<(RevisionId, u32)>>) {
        self.members.set_weights(weights);
    }

    /// Take `ids` out of the table and wait until their requests in flight
    /// have finished, at most `grace`; returns how many were still in flight.
    pub async fn drain(&self, ids: &[InstanceId], grace: Duration) -> u64 {
        self.members.drain(ids, grace).await
    }

    /// The weights set by the policy, if any (`None`: by instance count).
    pub fn weights(&self) -> Option<Vec<(RevisionId, u32)>> {
        self.members.weights()
    }

    /// Revisions with traffic metrics, sorted.
    pub fn revisions(&self) -> Vec<RevisionId> {
        self.members.revisions()
    }

    /// Traffic of `revision` over the last `window`.
    pub fn stats(&self, revision: &str, window: Duration) -> RevisionStats {
        self.members.stats(revision, window)
    }

    /// Prometheus text for this service, appended to `out`.
    pub fn prometheus(&self, out: &mut String) {
        let port = self.addr.port();
        let admission = &self.admission;
        self.members.prometheus(&self.service, port, admission, out);
    }
}
