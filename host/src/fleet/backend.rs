//! The fleet as one rollout sees it: the executor's [`Backend`], timed by
//! the rollout's clock, with traffic weighed by the front door.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::Fleet;
use crate::backend::{Backend, BackendError, Observation};
use crate::clock::Clock;
use crate::model::{Instance, InstanceId, Probe, RevisionId, RevisionStats};

impl Fleet {
    /// A backend for one rollout timed by `clock`.
    pub fn backend(self: &Arc<Self>, clock: Clock) -> LiveBackend {
        self.lock().events.clear();
        LiveBackend {
            fleet: self.clone(),
            clock,
        }
    }
}

/// The live fleet as one rollout sees it.
pub struct LiveBackend {
    fleet: Arc<Fleet>,
    clock: Clock,
}

#[async_trait]
impl Backend for LiveBackend {
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError> {
        Ok(self.fleet.list())
    }

    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        self.fleet.start(revision, count).await
    }

    async fn stop(&mut self, ids: &[InstanceId]) -> Result<(), BackendError> {
        self.fleet.stop(ids).await
    }

    async fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, BackendError> {
        self.fleet.logs(id, max_lines)
    }

    async fn probe(&mut self, id: &str) -> Result<Probe, BackendError> {
        self.fleet.probe(id).await
    }

    async fn set_weights(&mut self, weights: &[(RevisionId, u32)]) -> Result<(), BackendError> {
        let proxy = self.fleet.front_door().ok_or_else(|| {
            BackendError::Failed(
                "this service has no front door to weigh traffic in: give it a `port` in its spec"
                    .into(),
            )
        })?;
        proxy.set_weights(Some(weights.to_vec()));
        Ok(())
    }

    async fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        match self.fleet.front_door() {
            Some(proxy) => proxy.stats(revision, Duration::from_millis(window_ms)),
            None => RevisionStats {
                revision: revision.to_string(),
                ..RevisionStats::default()
            },
        }
    }

    fn next_change_ms(&mut self) -> Option<u64> {
        None
    }

    fn take_observations(&mut self) -> Vec<Observation> {
        let events = std::mem::take(&mut self.fleet.lock().events);
        let start = match &self.clock {
            Clock::Real(start) => *start,
            Clock::Virtual(_) => Instant::now(),
        };
        events
            .into_iter()
            .map(|(at, mut o)| {
                o.at_ms = at.saturating_duration_since(start).as_millis() as u64;
                o
            })
            .collect()
    }

    fn changes(&self) -> Option<Arc<Notify>> {
        Some(self.fleet.changed.clone())
    }
}
