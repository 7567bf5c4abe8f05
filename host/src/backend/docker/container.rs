//! One running container: its output mirrored into the instance's log file
//! and its exit watched, both through the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{KillContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use futures_util::StreamExt;

use super::client::is_status;
use super::process::Direct;
use super::watch::Watch;
use super::watch::log_options;
use crate::backend::exit::describe_container;
use crate::backend::runner::Running;

/// Pause before waiting again for a container whose wait was cut short.
const REWAIT: Duration = Duration::from_millis(500);

/// A container the fleet runs.
pub struct Container {
    docker: Docker,
    name: String,
    watch: Watch,
    direct: Direct,
}

impl Container {
    /// Watch container `name`: mirror its output into `log` (from its start,
    /// replacing what the file held when `replay`) and note its exit.
    pub fn watch(docker: Docker, name: String, log: &Path, replay: bool) -> Arc<dyn Running> {
        let container = Arc::new(Container {
            docker,
            name,
            watch: Watch::default(),
            direct: Direct::default(),
        });
        tokio::spawn(container.clone().mirror(log.to_path_buf(), replay));
        tokio::spawn(container.clone().wait());
        container
    }

    /// Append everything the container writes to `log`, until it stops.
    async fn mirror(self: Arc<Self>, log: PathBuf, replay: bool) {
        let open = |since, follow| {
            let options = log_options(since, follow);
            self.docker.logs(&self.name, Some(options))
        };
        self.watch.mirror(&log, replay, true, open).await;
    }

    /// Note how the container ended, once it has.
    async fn wait(self: Arc<Self>) {
        self.watch.end(end_of(&self.docker, &self.name).await);
    }

    /// Send `signal` to the container: to its process when the agent
    /// reaches it, else through the API (which takes signal numbers too).
    async fn signal(&self, signal: libc::c_int) {
        if self.direct.signal(&self.docker, &self.name, signal).await {
            return;
        }
        let options = KillContainerOptionsBuilder::new()
            .signal(&signal.to_string())
            .build();
        // Not running any more is what was wanted.
        let _ = self.docker.kill_container(&self.name, Some(options)).await;
    }
}

/// How container `name` ended, once it has (its wait endpoint answers the
/// moment it exits). A wait cut short (the daemon restarting, a dropped
/// socket) is not an end: the container is looked at, and waited for again
/// while it runs.
pub async fn end_of(docker: &Docker, name: &str) -> String {
    loop {
        let how = match docker.wait_container(name, None).next().await {
            Some(Ok(answer)) => Some(describe_container(answer.status_code)),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                Some(describe_container(code))
            }
            Some(Err(_)) | None => looked_at(docker, name).await,
        };
        if let Some(how) = how {
            return how;
        }
        tokio::time::sleep(REWAIT).await;
    }
}

/// How container `name` ended, if it has (`None`: it runs, or the daemon
/// cannot say now).
async fn looked_at(docker: &Docker, name: &str) -> Option<String> {
    match docker.inspect_container(name, None).await {
        Ok(inspected) => {
            let state = inspected.state.unwrap_or_default();
            match state.running {
                Some(true) => None,
                _ => Some(describe_container(state.exit_code.unwrap_or(-1))),
            }
        }
        Err(e) if is_status(&e, 404) => Some("its container was removed".to_string()),
        Err(_) => None,
    }
}

#[async_trait]
impl Running for Container {
    fn identity(&self) -> (i64, u64) {
        (0, 0)
    }

    fn exited(&self) -> Option<String> {
        self.direct.end(self.watch.exited())
    }

    async fn terminate(&self) {
        self.signal(libc::SIGTERM).await;
    }

    async fn kill(&self) {
        self.signal(libc::SIGKILL).await;
    }

    async fn remove(&self) {
        let force = RemoveContainerOptionsBuilder::new().force(true).build();
        let _ = self.docker.remove_container(&self.name, Some(force)).await;
    }
}
