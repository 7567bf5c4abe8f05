//! Following a rollout: its journal entries as they are stored (a long
//! poll that wakes when one is written or the rollout ends), and waiting
//! for its end.

use super::{Agent, Result};
use crate::store::{JournalRow, RolloutRow};

/// Journal entries of a rollout, with the rollout as it stands.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Events {
    /// The rollout as it stands.
    pub rollout: RolloutRow,
    /// New entries, oldest first.
    pub events: Vec<JournalRow>,
}

impl Agent {
    /// Journal entries of rollout `id` after `after`, waiting up to
    /// `wait_ms` for some if there are none and the rollout still runs.
    pub async fn events(&self, id: i64, after: i64, wait_ms: u64) -> Result<Events> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        loop {
            let changed = self.journal_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rollout = self.store.rollout(id)?;
            let events = self.store.journal(id, after)?;
            if !events.is_empty() || rollout.state != "running" {
                return Ok(Events { rollout, events });
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Events { rollout, events });
            }
        }
    }

    /// Wait until rollout `id` has ended; how it ended.
    pub async fn wait(&self, id: i64) -> Result<RolloutRow> {
        loop {
            let rollout = self.events(id, i64::MAX, 1_000).await?.rollout;
            if rollout.state != "running" {
                return Ok(rollout);
            }
        }
    }
}
