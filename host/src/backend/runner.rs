//! What the fleet manager ([`crate::fleet`]) needs from whatever runs its
//! instances: start one, watch it exit, stop it, and find it again after an
//! agent restart. The process, docker and swarm runners implement it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::BackendError;
use crate::health::HealthSpec;
use crate::model::{InstanceId, RevisionId};
use crate::store::InstanceRow;

/// How to run instances of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Revision id.
    pub revision: RevisionId,
    /// Program to run (process backend), or the image's entrypoint
    /// override (containers; empty keeps the image's).
    pub command: String,
    /// Image to run (container backends).
    pub image: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment added to the agent's.
    pub env: BTreeMap<String, String>,
    /// Working directory, if not the agent's.
    pub workdir: Option<PathBuf>,
    /// Health checks.
    pub health: HealthSpec,
    /// SIGTERM to SIGKILL, in ms.
    pub stop_grace_ms: u64,
    /// Log size that triggers rotation.
    pub log_max_bytes: u64,
}

/// One instance to start.
pub struct StartRequest<'a> {
    /// The service it belongs to.
    pub service: &'a str,
    /// Its id (`web-r2-7`).
    pub id: &'a str,
    /// How its revision runs.
    pub launch: &'a Launch,
    /// Its whole environment on top of the launch's own: `PORT`,
    /// `ROLLOUT_SERVICE`, `ROLLOUT_REVISION`, `ROLLOUT_INSTANCE` included.
    pub env: &'a [(String, String)],
    /// The file its output must be appended to.
    pub log: &'a Path,
}

/// Starts instances and finds them again: child processes or containers.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Refuse, before anything changes, a launch this runner could not
    /// start (an image the Docker host lacks, a daemon that does not
    /// answer); by default every launch is fine.
    async fn check(&self, _launch: &Launch) -> Result<(), BackendError> {
        Ok(())
    }
    /// Start one instance. Returns once it runs (not once it is ready).
    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError>;
    /// The instance an earlier agent started and recorded as `row`, if it
    /// still runs; its output goes on to `log`. An error means it cannot
    /// be told (the Docker daemon does not answer): the record must stay.
    async fn adopt(
        &self,
        row: &InstanceRow,
        log: &Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError>;
    /// Remove the instances of `service` this runner finds that are not in
    /// `known` (started by an agent that died before recording them);
    /// their ids. `logs` is the directory their output went to
    /// (`ID.log`, as [`StartRequest::log`]), whatever else tells them as
    /// this agent's.
    async fn sweep(&self, service: &str, known: &[InstanceId], logs: &Path) -> Vec<InstanceId>;
}

/// One started instance.
#[async_trait]
pub trait Running: Send + Sync {
    /// What the store keeps of it: process id and start time in clock ticks
    /// (0 and 0 for a container, found again by its labels).
    fn identity(&self) -> (i64, u64);
    /// The machine it runs on, when not the agent's own (where it is
    /// reached on its port instead of on loopback); never blocks.
    fn host(&self) -> Option<std::net::IpAddr> {
        None
    }
    /// How it ended (`exit status: 3`), once it has; never blocks.
    fn exited(&self) -> Option<String>;
    /// How much longer than its grace period it may take to be gone once
    /// asked to stop, beyond a kill's own latency: nothing for a process
    /// or a container the agent signals itself.
    fn stop_delay(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// Ask it to stop (SIGTERM).
    async fn terminate(&self);
    /// Force it to stop (SIGKILL).
    async fn kill(&self);
    /// Clean up after it has stopped: stray processes of its group, its
    /// container.
    async fn remove(&self);
}
