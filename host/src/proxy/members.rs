//! The member table: the ready instances the fleet publishes
//! ([`Member`]), those that left with requests still in flight, the
//! weights a policy set and the traffic metrics of each revision. Every
//! change rebuilds the routing [`Table`] and publishes it to the
//! [`Routes`] the connections follow.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::header::HeaderValue;

use super::metrics::RevisionMetrics;
use super::routes::Routes;
use super::table::{Table, Upstream};
use crate::model::{InstanceId, RevisionId};

/// A ready instance, as the fleet publishes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    /// Instance id.
    pub id: InstanceId,
    /// Its revision.
    pub revision: RevisionId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// What the member table holds, under its lock.
#[derive(Default)]
pub(super) struct State {
    /// In the table: ready and not draining.
    pub(super) upstreams: HashMap<InstanceId, Arc<Upstream>>,
    /// Out of the table (not ready, or draining) with requests possibly
    /// still in flight: a drain must wait for them too.
    pub(super) leaving: HashMap<InstanceId, Arc<Upstream>>,
    /// Set by the policy (`None`: by instance count).
    pub(super) weights: Option<Vec<(RevisionId, u32)>>,
    /// Traffic of each revision that has instances or a weight.
    pub(super) metrics: HashMap<RevisionId, Arc<RevisionMetrics>>,
}

/// The member table of one proxy, publishing to its routes.
pub(super) struct Members {
    state: Mutex<State>,
    routes: Arc<Routes>,
}

impl Members {
    /// An empty table publishing to `routes`.
    pub(super) fn new(routes: Arc<Routes>) -> Self {
        Members {
            state: Mutex::new(State::default()),
            routes,
        }
    }

    /// The state, locked.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Rebuild the table from `state` and publish it.
    pub(super) fn publish(&self, state: &mut State) {
        let upstreams: Vec<_> = state.upstreams.values().cloned().collect();
        let live: HashSet<RevisionId> = upstreams
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
        self.routes.publish(table);
    }

    /// The instances that take traffic now (ready ones). An instance being
    /// drained is never taken back; one that left keeps its in-flight count
    /// if it comes back.
    pub(super) fn set(&self, members: &[Member]) {
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
    pub(super) fn set_weights(&self, weights: Option<Vec<(RevisionId, u32)>>) {
        let mut state = self.state();
        state.weights = weights;
        self.publish(&mut state);
    }

    /// The weights set by the policy, if any (`None`: by instance count).
    pub(super) fn weights(&self) -> Option<Vec<(RevisionId, u32)>> {
        self.state().weights.clone()
    }

    /// Revisions with traffic metrics, sorted.
    pub(super) fn revisions(&self) -> Vec<RevisionId> {
        let mut revisions: Vec<_> = self.state().metrics.keys().cloned().collect();
        revisions.sort();
        revisions
    }
}
