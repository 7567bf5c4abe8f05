//! The host's vocabulary: instances, verdicts, outcomes, commands.
//!
//! These mirror the WIT types but belong to the host, so the engine and the
//! backends do not depend on one WIT version: each binding in
//! [`crate::runtime`] converts to and from them.

use serde::{Deserialize, Serialize};

/// A revision of the service, e.g. `"v2"`.
pub type RevisionId = String;
/// An instance of the service.
pub type InstanceId = String;

/// Lifecycle of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Started, not yet ready.
    Starting,
    /// Ready; receives traffic.
    Ready,
    /// Was ready, now failing its health check.
    Unhealthy,
    /// Being stopped.
    Draining,
    /// Stopped by the host.
    Stopped,
    /// Exited or crashed on its own.
    Failed,
}

impl InstanceState {
    /// True while the instance occupies capacity (a process, a container,
    /// a task): starting, ready, unhealthy or draining. A stopped or failed
    /// one has exited, so it does not count against max surge.
    pub fn counts(self) -> bool {
        !matches!(self, InstanceState::Stopped | InstanceState::Failed)
    }

    /// Lowercase name, as in the journal.
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Starting => "starting",
            InstanceState::Ready => "ready",
            InstanceState::Unhealthy => "unhealthy",
            InstanceState::Draining => "draining",
            InstanceState::Stopped => "stopped",
            InstanceState::Failed => "failed",
        }
    }
}

/// One instance as the backend reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique id.
    pub id: InstanceId,
    /// Revision it runs.
    pub revision: RevisionId,
    /// Current state.
    pub state: InstanceState,
    /// Address for traffic, once known.
    pub address: Option<String>,
    /// Milliseconds since it started.
    pub age_ms: u64,
}

/// A health judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Passing.
    Healthy,
    /// Failing, with the reason.
    Unhealthy(String),
    /// Not enough information yet.
    Unknown(String),
}

/// The result of probing one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Instance probed.
    pub instance: InstanceId,
    /// What the probe found.
    pub verdict: Verdict,
    /// How long the probe took.
    pub latency_us: u64,
}

/// Traffic received by one revision over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionStats {
    /// Revision measured.
    pub revision: RevisionId,
    /// Requests completed.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "reason")]
pub enum Outcome {
    /// Every instance runs the new revision.
    Completed,
    /// The old revision serves again.
    RolledBack(String),
    /// Left for an operator.
    Failed(String),
}

impl Outcome {
    /// `completed`, `rolled-back` or `failed`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::RolledBack(_) => "rolled-back",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The process exit code for this outcome: 0, 2 or 3.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Completed => 0,
            Outcome::RolledBack(_) => 2,
            Outcome::Failed(_) => 3,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Completed => f.write_str("completed"),
            Outcome::RolledBack(why) => write!(f, "rolled back: {why}"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// What the operator asks at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Carry on.
    Proceed,
    /// Skip the remaining steps.
    Promote,
    /// Roll back.
    Abort(String),
}

/// Why the host refused an effect; the policy sees it and may react.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum EffectError {
    /// A guardrail forbids it.
    #[error("guardrail: {0}")]
    Guardrail(String),
    /// The operator aborted the rollout.
    #[error("aborted: {0}")]
    Aborted(String),
    /// The request is malformed or names nothing that exists.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The backend failed.
    #[error("backend: {0}")]
    Backend(String),
}

/// Progress reported by a policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Current step, from 1.
    pub step: u32,
    /// Total steps, 0 when unknown.
    pub steps: u32,
    /// What the step does.
    pub message: String,
}

/// Severity of a policy log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Detail.
    Debug,
    /// Normal.
    Info,
    /// Suspicious.
    Warn,
    /// Failure.
    Error,
}

impl Level {
    /// Lowercase name, as in the journal.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What a policy is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutInfo {
    /// Service name.
    pub service: String,
    /// Revision serving now, if any.
    pub from_revision: Option<RevisionId>,
    /// Revision to roll out.
    pub to_revision: RevisionId,
    /// Instances the service should run.
    pub replicas: u32,
    /// Policy parameters.
    pub params: Vec<(String, String)>,
}
