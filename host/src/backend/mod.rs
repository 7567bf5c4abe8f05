//! Backends run the instances: `sim` (a scripted fleet on the virtual clock)
//! for `rollout test`, and the live fleet ([`crate::fleet`], above this
//! module) whose instances a [`Runner`] starts: child processes
//! ([`process`]), Docker containers ([`docker`]) or Swarm tasks ([`swarm`]).
//!
//! A backend executes effects; it does not judge them. Guardrails, operator
//! commands and the journal live in [`crate::executor`], above every backend.

pub mod docker;
pub(crate) mod exit;
pub mod process;
pub mod runner;
pub mod sim;
pub mod swarm;

pub use runner::{Launch, Runner, Running, StartRequest};

use async_trait::async_trait;

use crate::model::{Instance, InstanceId, InstanceState, Probe, RevisionId, RevisionStats};

/// A state change an instance went through on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// When, in rollout milliseconds.
    pub at_ms: u64,
    /// Which instance.
    pub instance: InstanceId,
    /// Its revision.
    pub revision: RevisionId,
    /// The state it entered.
    pub state: InstanceState,
}

/// A backend failure, shown to the policy as `effect-error::backend` (or
/// `invalid` for [`BackendError::UnknownInstance`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No instance has this id.
    #[error("no instance {0}")]
    UnknownInstance(InstanceId),
    /// No revision has this id.
    #[error("no revision {0}")]
    UnknownRevision(RevisionId),
    /// The backend could not carry out the request.
    #[error("{0}")]
    Failed(String),
}

/// What runs the instances of one service.
#[async_trait]
pub trait Backend: Send + std::any::Any {
    /// Every instance that is not stopped.
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError>;
    /// Start `count` instances of `revision`.
    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError>;
    /// Drain then stop instances.
    async fn stop(&mut self, ids: &[InstanceId]) -> Result<(), BackendError>;
    /// The last `max_lines` log lines of an instance.
    async fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, BackendError>;
    /// Run the health check of one instance now.
    async fn probe(&mut self, id: &str) -> Result<Probe, BackendError>;
    /// Split traffic between revisions by weight.
    async fn set_weights(&mut self, weights: &[(RevisionId, u32)]) -> Result<(), BackendError>;
    /// Traffic a revision received over the last `window_ms`.
    async fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats;
    /// When the fleet may next change on its own, in rollout milliseconds,
    /// if known: lets waits on the virtual clock jump straight there.
    fn next_change_ms(&mut self) -> Option<u64>;
    /// State changes the backend observed since the last call, oldest first.
    fn take_observations(&mut self) -> Vec<Observation>;
    /// Signalled when the fleet changes on its own (live backends), so
    /// waits on the real clock wake at once instead of polling.
    fn changes(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }
}
