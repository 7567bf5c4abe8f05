//! `health.wait-ready`: probe until each instance is ready or failed, or
//! the timeout or the progress deadline passes. On the virtual clock it
//! jumps from one fleet change to the next; on the real clock it wakes when
//! the live fleet says it changed.

use super::{POLL_MS, Session};
use crate::clock::Clock;
use crate::model::{InstanceId, Probe, Verdict};
use crate::runtime::Call;

impl Session {
    /// Probe `id` now; a backend error is an unhealthy verdict.
    pub(super) async fn probe_now(&mut self, id: &str) -> Probe {
        self.backend.probe(id).await.unwrap_or_else(|e| Probe {
            instance: id.to_string(),
            verdict: Verdict::Unhealthy(e.to_string()),
            latency_us: 0,
        })
    }

    /// Wait for `ids` (see the module docs).
    pub(super) async fn await_ready(
        &mut self,
        ids: &[InstanceId],
        timeout_ms: u64,
    ) -> Call<Vec<Probe>> {
        let started = self.clock.now_ms();
        let until = started.saturating_add(timeout_ms);
        // The progress deadline cuts waits on the new revision short; a
        // policy bringing the old one back waits as long as it asked.
        let fleet = self.fleet().await.unwrap_or_default();
        let waits_on_new = fleet
            .iter()
            .any(|i| i.revision == self.info.to_revision && ids.contains(&i.id));
        let deadline_applies = waits_on_new && !self.restoring;
        loop {
            let mut probes = Vec::with_capacity(ids.len());
            for id in ids {
                probes.push(self.probe_now(id).await);
            }
            let pending = probes
                .iter()
                .any(|p| matches!(p.verdict, Verdict::Unknown(_)));
            let now = self.clock.now_ms();
            let stalled = pending && deadline_applies && self.check_stall();
            if !pending || now >= until || stalled {
                let why = match stalled {
                    true => format!(
                        "{} (not ready after {} ms)",
                        self.abort_reason().unwrap_or_default(),
                        now - started
                    ),
                    false => format!("not ready after {timeout_ms} ms"),
                };
                for p in &mut probes {
                    if let Verdict::Unknown(_) = p.verdict {
                        p.verdict = Verdict::Unknown(why.clone());
                    }
                }
                return Ok(probes);
            }
            let stall = self.stall_at_ms().filter(|_| deadline_applies);
            let wake = stall.map_or(until, |at| until.min(at));
            match (&self.clock, self.backend.changes()) {
                (Clock::Virtual(_), _) => {
                    let next = self.backend.next_change_ms().unwrap_or(until);
                    self.sleep_until(next.clamp(now + 1, wake)).await?;
                }
                // A live backend says when its fleet changed: wake then.
                (Clock::Real(_), Some(changed)) => {
                    self.waited();
                    let wait = std::time::Duration::from_millis(wake.saturating_sub(now).max(1));
                    let _ = tokio::time::timeout(wait, changed.notified()).await;
                    self.sleep_until(self.clock.now_ms()).await?;
                }
                (Clock::Real(_), None) => {
                    self.sleep_until((now + POLL_MS).clamp(now + 1, wake))
                        .await?;
                }
            }
        }
    }
}
