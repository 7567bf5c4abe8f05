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
    /// The store could not record how rollout `id` ended (`error`: disk
    /// full, say): keep the outcome in memory, failed, so the client
    /// following it gets an answer; its row stays `running` in the store
    /// and the next agent marks it failed.
    pub(super) fn unrecorded_outcome(&self, id: i64, state: &str, reason: &str, error: &str) {
        let why = format!(
            "the agent could not write its state ({error}); the rollout ended {state}{}{reason}; \
             free space in the agent's home, then check `rollout status`",
            if reason.is_empty() { "" } else { ": " }
        );
        self.lock_unrecorded().insert(id, ("failed".into(), why));
        self.journal_changed.notify_waiters();
    }

    pub(super) fn lock_unrecorded(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<i64, (String, String)>> {
        self.unrecorded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `rollout` as the store has it, or as it ended if the store could
    /// not record that.
    fn known_outcome(&self, mut rollout: RolloutRow) -> RolloutRow {
        if rollout.state == "running"
            && let Some((state, reason)) = self.lock_unrecorded().get(&rollout.id)
        {
            rollout.state = state.clone();
            rollout.reason = reason.clone();
        }
        rollout
    }

    /// Journal entries of rollout `id` after `after`, waiting up to
    /// `wait_ms` for some if there are none and the rollout still runs.
    pub async fn events(&self, id: i64, after: i64, wait_ms: u64) -> Result<Events> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        loop {
            let changed = self.journal_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rollout = self.known_outcome(self.store.rollout(id)?);
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
