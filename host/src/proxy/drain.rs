//! Draining: an instance about to stop leaves the table at once, and its
//! stop waits until its requests in flight (bodies and tunnels included)
//! have finished, up to a grace period. A request counts as in flight on
//! its instance while an [`InFlight`] guard lives.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::members::Members;
use super::table::Upstream;
use crate::model::InstanceId;

/// A request in flight on an upstream, until dropped. It borrows the
/// upstream from the table the request was routed by: no reference count
/// is taken per request.
pub(super) struct InFlight<'a>(&'a Upstream);

impl<'a> InFlight<'a> {
    /// A request enters `upstream`.
    pub(super) fn enter(upstream: &'a Upstream) -> Self {
        upstream.inflight.fetch_add(1, Ordering::SeqCst);
        InFlight(upstream)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Members {
    /// Take `ids` out of the table and wait until their requests in flight
    /// have finished, at most `grace`; returns how many were still in flight.
    pub(super) async fn drain(&self, ids: &[InstanceId], grace: Duration) -> u64 {
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
}
