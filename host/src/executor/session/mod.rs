//! One rollout in progress: the policy's imports land here.
//!
//! Every call first paces the policy ([`pace`]: journal what the fleet did
//! on its own, apply due operator commands, check the deadlines). Every
//! effect is then checked against the guardrails and the operator's abort
//! before the backend sees it ([`effects`]); refusals come back to the
//! policy as [`EffectError`] values and are journaled like every effect.
//! When the policy is done, [`restore`] checks its claim and restores the
//! old revision if it failed.

mod effects;
mod imports;
mod pace;
mod restore;
#[cfg(test)]
mod tests;
mod wait;

use std::collections::HashSet;

use super::guardrails::{GuardrailSpec, Guardrails};
use super::operator::Operator;
use crate::backend::{Backend, BackendError};
use crate::clock::Clock;
use crate::journal::{Entry, Journal, Kind};
use crate::model::{EffectError, Instance, InstanceId, Progress, RolloutInfo};
use crate::runtime::Call;

/// Poll interval of `wait-ready` on the real clock.
const POLL_MS: u64 = 250;

/// Most host calls a policy may make at one instant of a virtual clock, or
/// between two waits on the real clock.
const BUSY_CALLS: u64 = 1_000_000;

/// One rollout in progress.
pub struct Session {
    info: RolloutInfo,
    backend: Box<dyn Backend>,
    clock: Clock,
    guardrails: Guardrails,
    operator: Operator,
    journal: Journal,
    last_progress_ms: u64,
    stalled: bool,
    step: Option<Progress>,
    seen_ready: HashSet<InstanceId>,
    /// Restoring after the policy failed: the rollout deadline no longer
    /// cuts waits short (restore has its own bounds).
    restoring: bool,
    /// The virtual instant of the last host call, and the calls made at it
    /// (on the real clock: the calls made since the policy last waited).
    busy: (u64, u64),
    /// Set when the agent is stopping (see [`Session::stop_on`]).
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
    /// The policy was stopped because the agent is stopping.
    interrupted: bool,
}

impl Session {
    /// A rollout of `info` on `backend`, timed by `clock`.
    pub fn new(
        info: RolloutInfo,
        backend: Box<dyn Backend>,
        clock: Clock,
        guardrails: &GuardrailSpec,
        operator: Operator,
    ) -> Self {
        let guardrails = Guardrails::resolve(guardrails, info.replicas);
        let mut journal = Journal::default();
        journal.push(
            clock.now_ms(),
            Kind::Host,
            format!(
                "rollout of {} from {} to {} ({} replicas; guardrails: at most {} instances, at least {} ready)",
                info.service,
                info.from_revision.as_deref().unwrap_or("nothing"),
                info.to_revision,
                info.replicas,
                guardrails.max_instances,
                guardrails.min_ready
            ),
        );
        Session {
            info,
            backend,
            clock,
            guardrails,
            operator,
            journal,
            last_progress_ms: 0,
            stalled: false,
            step: None,
            seen_ready: HashSet::new(),
            restoring: false,
            busy: (0, 0),
            stopping: None,
            interrupted: false,
        }
    }

    /// Stop the policy at its next host call (or wait) once `stopping`
    /// turns true: the agent is stopping. The effect in flight finishes;
    /// then every call halts with [`Halt::Stopping`](crate::runtime::Halt).
    pub fn stop_on(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> Self {
        self.stopping = Some(stopping);
        self
    }

    /// True if the policy was stopped because the agent is stopping.
    pub fn interrupted(&self) -> bool {
        self.interrupted
    }

    /// Also send every journal entry, from the first, to `sink`.
    pub fn journal_to(mut self, sink: tokio::sync::mpsc::UnboundedSender<Entry>) -> Self {
        let mut journal = Journal::with_sink(sink);
        for e in self.journal.entries() {
            journal.push(e.at_ms, e.kind, e.text.clone());
        }
        self.journal = journal;
        self
    }

    /// The journal so far.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The journal and the backend, once the rollout is over.
    pub fn into_parts(self) -> (Journal, Box<dyn Backend>) {
        (self.journal, self.backend)
    }

    /// Milliseconds since the rollout started (not a policy's call).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The rollout resumes after the agent restarted: its opening entry
    /// says so, instead of announcing a new rollout.
    pub fn resuming(mut self, recorded: usize) -> Self {
        self.journal = Journal::default();
        self.journal.push(
            self.clock.now_ms(),
            Kind::Host,
            format!("the agent restarted: resuming the rollout by replaying its {recorded} recorded call(s)"),
        );
        self
    }

    /// A step the policy reported before the agent restarted, seen again
    /// while replaying: the session knows it without journaling it twice.
    pub(crate) fn replayed_progress(&mut self, progress: Progress) {
        self.last_progress_ms = self.clock.now_ms();
        self.step = Some(progress);
    }

    /// The last step number reported, if any.
    pub fn step_number(&self) -> Option<u32> {
        self.step.as_ref().map(|p| p.step)
    }

    /// Append a host entry to the journal.
    pub fn note(&mut self, text: impl Into<String>) {
        self.journal.push(self.clock.now_ms(), Kind::Host, text);
    }

    /// Journal a refused effect and hand the policy its error.
    fn refuse<T>(&mut self, what: &str, error: EffectError) -> Call<Result<T, EffectError>> {
        self.journal.push(
            self.clock.now_ms(),
            Kind::Refused,
            format!("{what}: {error}"),
        );
        Ok(Err(error))
    }

    /// The fleet as the backend lists it.
    async fn fleet(&mut self) -> Result<Vec<Instance>, EffectError> {
        self.backend.list().await.map_err(effect_error)
    }
}

/// How a backend error reaches the policy.
fn effect_error(e: BackendError) -> EffectError {
    match e {
        BackendError::UnknownInstance(_) | BackendError::UnknownRevision(_) => {
            EffectError::Invalid(e.to_string())
        }
        BackendError::Failed(why) => EffectError::Backend(why),
    }
}
