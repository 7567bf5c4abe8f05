//! One instance on Swarm: the task of its one-replica service, followed
//! through the manager's API.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::TaskState;
use bollard::query_parameters::{KillContainerOptionsBuilder, ListTasksOptionsBuilder};

use crate::backend::BackendError;
use crate::backend::docker::container::end_of;
use crate::backend::docker::process::Direct;
use crate::backend::docker::watch::{Watch, log_options};
use crate::backend::docker::{api_error, is_status};
use crate::backend::exit::describe_container;
use crate::backend::runner::Running;

/// How often a task's state is read from the manager.
const POLL: Duration = Duration::from_millis(50);
/// How long Swarm waits after a service is removed before it signals its
/// task, for the routing mesh to converge (moby's
/// `defaultGossipConvergeDelay`).
const CONVERGE_DELAY: Duration = Duration::from_secs(2);
/// How long a stop waits for a task still starting to run on the agent's
/// node, so it can be signalled there rather than removed through Swarm.
const START_WAIT: Duration = Duration::from_secs(1);
/// How often that wait tries again.
const START_RETRY: Duration = Duration::from_millis(10);

/// A task the fleet runs.
pub struct Task {
    docker: Docker,
    /// Its service.
    service: String,
    /// The Swarm node whose Docker daemon the agent talks to.
    local_node: Option<String>,
    /// Its container, once it has one on the agent's own node.
    local_container: Mutex<Option<String>>,
    /// The address of its node, once it runs on another one.
    node_addr: Mutex<Option<std::net::IpAddr>>,
    watch: Watch,
    direct: Direct,
}

impl Task {
    /// Follow the task of service `service`: its state until it ends, and
    /// its output into `log` (from its start, replacing what the file held
    /// when `replay`).
    pub fn watch(
        docker: Docker,
        service: String,
        local_node: Option<String>,
        log: &Path,
        replay: bool,
    ) -> Arc<dyn Running> {
        let task = Arc::new(Task {
            docker,
            service,
            local_node,
            local_container: Mutex::new(None),
            node_addr: Mutex::new(None),
            watch: Watch::default(),
            direct: Direct::default(),
        });
        tokio::spawn(task.clone().follow(log.to_path_buf(), replay));
        task
    }

    /// Read the task's state until it ends; mirror its output once it runs
    /// (or once it ended without running, to keep why).
    async fn follow(self: Arc<Self>, log: PathBuf, replay: bool) {
        let mut id: Option<String> = None;
        let mut mirroring = false;
        loop {
            let task = match &id {
                None => match tasks(&self.docker, &self.service).await {
                    Ok(mut found) => found.pop(),
                    Err(e) if is_status(&e, 404) => {
                        self.watch.end("its service was removed".into());
                        return;
                    }
                    Err(_) => None,
                },
                Some(task) => match self.docker.inspect_task(task).await {
                    Ok(task) => Some(task),
                    // Reaped once shut down.
                    Err(e) if is_status(&e, 404) => {
                        self.watch.end("stopped".into());
                        return;
                    }
                    Err(_) => None,
                },
            };
            if let Some(task) = task {
                id = task.id.clone();
                self.note_container(&task);
                self.note_node(&task).await;
                let state = task.status.as_ref().and_then(|s| s.state);
                let ended = state.is_some_and(ended);
                if !mirroring && (state == Some(TaskState::RUNNING) || ended) {
                    mirroring = true;
                    tokio::spawn(self.clone().mirror(log.clone(), replay, !ended));
                }
                if ended {
                    self.watch.end(describe(&task));
                    return;
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Append the task's output to `log`; with `follow`, until it ends,
    /// else what there is. On the agent's own node the container's log
    /// stream ends with the container; a service's (elsewhere) only with
    /// the service, so the end of a remote task waits a little for its last
    /// lines instead.
    async fn mirror(self: Arc<Self>, log: PathBuf, replay: bool, follow: bool) {
        let local = self
            .local_container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match local {
            Some(container) => {
                let open = |since, follow| {
                    let options = log_options(since, follow);
                    self.docker.logs(&container, Some(options))
                };
                self.watch.mirror(&log, replay, follow, open).await;
            }
            None => {
                let open = |since, follow| {
                    let options = log_options(since, follow);
                    self.docker.service_logs(&self.service, Some(options))
                };
                self.watch.mirror(&log, replay, follow, open).await;
            }
        }
    }

    /// Remember the task's container if it runs on the agent's own node,
    /// and from then on wait for its end there: the container's wait
    /// answers the moment it exits, where the task's state reaches the
    /// manager later (the node reports it in batches).
    fn note_container(self: &Arc<Self>, task: &bollard::models::Task) {
        let Some(container) = task
            .status
            .as_ref()
            .and_then(|s| s.container_status.as_ref())
            .and_then(|c| c.container_id.clone())
        else {
            return;
        };
        if task.node_id.is_none() || task.node_id != self.local_node {
            return;
        }
        let mut local = self
            .local_container
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if local.is_none() {
            *local = Some(container.clone());
            let task = self.clone();
            tokio::spawn(async move {
                let how = end_of(&task.docker, &container).await;
                task.watch.end(how);
            });
        }
    }

    /// Remember the address of the task's node if it is not the agent's:
    /// the task listens on its port there (host networking).
    async fn note_node(&self, task: &bollard::models::Task) {
        let Some(node) = task.node_id.as_deref().filter(|n| !n.is_empty()) else {
            return;
        };
        let known = self
            .node_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        if known || Some(node) == self.local_node.as_deref() {
            return;
        }
        let addr = match self.docker.inspect_node(node).await {
            Ok(node) => node.status.and_then(|s| s.addr),
            Err(_) => None,
        };
        if let Some(addr) = addr.and_then(|a| a.parse().ok()) {
            *self.node_addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(addr);
        }
    }

    /// Signal the task's container directly, if it runs on the agent's own
    /// node (to its process when the agent reaches it, else through the
    /// daemon); false if it does not (or not yet, or not any more).
    async fn signal_locally(&self, signal: libc::c_int) -> bool {
        let container = self
            .local_container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(container) = container else {
            return false;
        };
        if self.direct.signal(&self.docker, &container, signal).await {
            return true;
        }
        let options = KillContainerOptionsBuilder::new()
            .signal(&signal.to_string())
            .build();
        self.docker
            .kill_container(&container, Some(options))
            .await
            .is_ok()
    }

    /// Whether the task runs on another node.
    fn remote(&self) -> bool {
        self.node_addr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    async fn remove_service(&self) {
        // Gone already is what was wanted.
        let _ = self.docker.delete_service(&self.service).await;
    }
}

#[async_trait]
impl Running for Task {
    fn identity(&self) -> (i64, u64) {
        (0, 0)
    }

    fn host(&self) -> Option<std::net::IpAddr> {
        *self.node_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exited(&self) -> Option<String> {
        self.direct.end(self.watch.exited())
    }

    /// A task that never ran here is waited for [`START_WAIT`], and
    /// Swarm holds a removed service's task for [`CONVERGE_DELAY`] before
    /// it signals it: so a task on another node stops that much later
    /// than its grace period says.
    fn stop_delay(&self) -> Duration {
        START_WAIT + CONVERGE_DELAY
    }

    /// SIGTERM its container when it runs on the agent's own node: removing
    /// the service would first make Swarm wait [`CONVERGE_DELAY`] for its
    /// routing mesh to converge, which the front door, already drained,
    /// does not need. A task still starting (a rollback stops those) is
    /// given [`START_WAIT`] to run there. On another node, or if it never
    /// runs: remove its service, and Swarm sends SIGTERM, then SIGKILL
    /// after the service's stop grace period (the spec's `stop-grace`).
    async fn terminate(&self) {
        let deadline = tokio::time::Instant::now() + START_WAIT;
        while !self.remote() && self.watch.exited().is_none() {
            if self.signal_locally(libc::SIGTERM).await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(START_RETRY).await;
        }
        self.remove_service().await;
    }

    /// SIGKILL its container on the agent's own node; elsewhere Swarm
    /// kills the task when its grace period ends.
    async fn kill(&self) {
        self.signal_locally(libc::SIGKILL).await;
    }

    async fn remove(&self) {
        self.remove_service().await;
    }
}

/// The tasks of service `service`, oldest first.
async fn tasks(
    docker: &Docker,
    service: &str,
) -> Result<Vec<bollard::models::Task>, bollard::errors::Error> {
    let filters = HashMap::from([("service", vec![service.to_string()])]);
    let options = ListTasksOptionsBuilder::new().filters(&filters).build();
    let mut found = docker.list_tasks(Some(options)).await?;
    found.sort_by_key(|t| t.version.as_ref().and_then(|v| v.index));
    Ok(found)
}

/// True when service `service` has a task that has not ended: one that
/// runs, or is still on its way to (pending, assigned, preparing,
/// starting), as a task just created when its agent restarted is; or no
/// task yet, as a service just created has.
pub async fn live(docker: &Docker, service: &str) -> Result<bool, BackendError> {
    let found = tasks(docker, service)
        .await
        .map_err(|e| api_error(&format!("listing the tasks of {service}"), &e))?;
    Ok(found.is_empty()
        || found
            .iter()
            .any(|t| !t.status.as_ref().and_then(|s| s.state).is_some_and(ended)))
}

/// True for a state a task never leaves.
fn ended(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
}

/// How a task ended, in words: its exit status, or Swarm's reason.
fn describe(task: &bollard::models::Task) -> String {
    let status = task.status.clone().unwrap_or_default();
    let code = status.container_status.and_then(|c| c.exit_code);
    let state = status.state.map(|s| s.to_string()).unwrap_or_default();
    let exited = matches!(status.state, Some(TaskState::FAILED | TaskState::COMPLETE));
    match (code, status.err.filter(|e| !e.is_empty())) {
        (Some(code), _) if exited => describe_container(code),
        (_, Some(err)) => format!("task {state}: {err}"),
        _ => format!(
            "task {state}: {}",
            status.message.unwrap_or_else(|| "no reason given".into())
        ),
    }
}
