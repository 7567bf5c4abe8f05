//! After the policy: check what it claims against the fleet, and the
//! host's safety net that brings the old revision back when a policy fails.

use super::Session;
use crate::model::{EffectError, Instance, InstanceState, Outcome};

impl Session {
    /// The policy has ended: operator commands no longer apply.
    pub fn close_operator(&mut self) {
        self.operator.close();
    }

    /// Check what `policy` (its name, for the message) claims against the
    /// fleet: a `completed` with the new revision short of its replicas is a
    /// failure, and the host restores the old revision.
    pub async fn verify(&mut self, policy: &str, outcome: Outcome) -> Outcome {
        self.observe();
        let Outcome::Completed = outcome else {
            return outcome;
        };
        let to = self.info.to_revision.clone();
        let ready = self.count_ready(&to).await;
        if ready < self.info.replicas {
            let why = format!(
                "policy {policy} reported completed, but only {ready} of {} instances of {to} are ready",
                self.info.replicas
            );
            self.note(why.clone());
            let restored = self.restore().await;
            return Outcome::Failed(format!("{why}; {restored}"));
        }
        outcome
    }

    async fn count_ready(&mut self, revision: &str) -> u32 {
        let fleet = self.fleet().await.unwrap_or_default();
        let ready = |i: &&Instance| i.revision == revision && i.state == InstanceState::Ready;
        fleet.iter().filter(ready).count() as u32
    }

    /// The host's safety net after a policy crashed or broke a limit:
    /// bring the old revision back to `replicas` ready instances within the
    /// guardrails, then stop the new revision. Returns what it did.
    pub async fn restore(&mut self) -> String {
        let to = self.info.to_revision.clone();
        let Some(from) = self.info.from_revision.clone() else {
            return match self.stop_revision(&to).await {
                Ok(n) => format!("stopped {n} instance(s) of {to}"),
                Err(e) => format!("could not stop {to}: {e}"),
            };
        };
        self.restoring = true;
        self.note(format!("restoring {from}"));
        let replicas = self.info.replicas;
        for _ in 0..=2 * replicas + 1 {
            let fleet = self.fleet().await.unwrap_or_default();
            let ready = fleet
                .iter()
                .filter(|i| i.revision == from && i.state == InstanceState::Ready)
                .count() as u32;
            if ready >= replicas {
                return match self.stop_revision(&to).await {
                    Ok(n) => format!(
                        "fleet restored: {ready} instance(s) of {from} ready, {n} of {to} stopped"
                    ),
                    Err(e) => format!("{from} restored, but stopping {to} failed: {e}"),
                };
            }
            // Unready instances other than the old revision's (new ones,
            // strays of other revisions) serve nothing; stopping them frees
            // room. Failed and stopped ones occupy none (see
            // `InstanceState::counts`).
            let unready: Vec<_> = fleet
                .iter()
                .filter(|i| i.revision != from)
                .filter(|i| !matches!(i.state, InstanceState::Ready | InstanceState::Stopped))
                .map(|i| i.id.clone())
                .collect();
            let occupying = |i: &&Instance| i.state.counts();
            let alive = fleet
                .iter()
                .filter(occupying)
                .filter(|i| i.revision == from)
                .count() as u32;
            let staying = fleet
                .iter()
                .filter(occupying)
                .filter(|i| i.revision == from || i.state == InstanceState::Ready)
                .count() as u32;
            let room = self.guardrails.max_instances.saturating_sub(staying);
            let wanted = replicas.saturating_sub(alive).min(room).max(1);
            let step = async {
                self.stop_checked(&unready).await?;
                if room == 0 {
                    let spare = fleet
                        .iter()
                        .find(|i| i.revision != from && i.state.counts())
                        .map(|i| i.id.clone());
                    self.stop_checked(spare.as_slice()).await?;
                }
                let started = self.start_checked(&from, wanted).await?;
                let ids: Vec<_> = started.into_iter().map(|i| i.id).collect();
                Ok::<_, EffectError>(ids)
            };
            match step.await {
                Ok(ids) => {
                    if self.await_ready(&ids, 60_000).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    self.note(format!("restore: {e}"));
                    break;
                }
            }
        }
        format!(
            "could not restore {from} to {replicas} ready instance(s); the fleet needs an operator"
        )
    }

    async fn stop_revision(&mut self, revision: &str) -> Result<usize, EffectError> {
        let ids: Vec<_> = self
            .fleet()
            .await?
            .into_iter()
            .filter(|i| i.revision == revision)
            .map(|i| i.id)
            .collect();
        self.stop_checked(&ids).await?;
        Ok(ids.len())
    }
}
