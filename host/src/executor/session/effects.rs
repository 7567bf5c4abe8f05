//! Effects after the host's checks: a start within max surge, a stop
//! within min available, each journaled when it happened.

use std::collections::HashSet;

use super::{Session, effect_error};
use crate::journal::Kind;
use crate::model::{EffectError, Instance, InstanceId, InstanceState};

impl Session {
    /// Start after the surge check; journals success.
    pub(super) async fn start_checked(
        &mut self,
        revision: &str,
        count: u32,
    ) -> Result<Vec<Instance>, EffectError> {
        // Only instances that occupy capacity count: a failed or stopped
        // one (killed by hand, crashed) must not block the next rollout.
        let fleet = self.fleet().await?;
        let running = fleet.iter().filter(|i| i.state.counts()).count() as u32;
        self.guardrails
            .check_start(running, count)
            .map_err(EffectError::Guardrail)?;
        let started = self
            .backend
            .start(revision, count)
            .await
            .map_err(effect_error)?;
        let ids: Vec<_> = started.iter().map(|i| i.id.as_str()).collect();
        self.journal.push(
            self.clock.now_ms(),
            Kind::Effect,
            format!("start {revision} x{count} -> {}", ids.join(" ")),
        );
        Ok(started)
    }

    /// Stop after the availability check; journals success.
    pub(super) async fn stop_checked(&mut self, ids: &[InstanceId]) -> Result<(), EffectError> {
        if ids.is_empty() {
            return Ok(());
        }
        let fleet = self.fleet().await?;
        let stopping: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let running: HashSet<&str> = fleet.iter().map(|i| i.id.as_str()).collect();
        if let Some(missing) = stopping.iter().find(|id| !running.contains(*id)) {
            return Err(EffectError::Invalid(format!(
                "no running instance {missing}"
            )));
        }
        let ready = |i: &&Instance| i.state == InstanceState::Ready;
        let before = fleet.iter().filter(ready).count() as u32;
        let staying = |i: &&Instance| !stopping.contains(i.id.as_str());
        let after = fleet.iter().filter(ready).filter(staying).count() as u32;
        self.guardrails
            .check_stop(before, after)
            .map_err(EffectError::Guardrail)?;
        self.backend.stop(ids).await.map_err(effect_error)?;
        self.journal.push(
            self.clock.now_ms(),
            Kind::Effect,
            format!("stop {}", ids.join(" ")),
        );
        Ok(())
    }
}
