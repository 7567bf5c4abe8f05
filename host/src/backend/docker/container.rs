//! One running container: its output mirrored into the instance's log file
//! and its exit watched, both through the API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use super::watch::Watch;
use crate::backend::live::Running;

/// A container the fleet runs.
pub struct Container {
    docker: Docker,
    name: String,
    watch: Watch,
}

impl Container {
    /// Watch container `name`: mirror its output into `log` (from its start,
    /// replacing what the file held when `replay`) and note its exit.
    pub fn watch(docker: Docker, name: String, log: &Path, replay: bool) -> Arc<dyn Running> {
        let container = Arc::new(Container {
            docker,
            name,
            watch: Watch::default(),
        });
        tokio::spawn(container.clone().mirror(log.to_path_buf(), replay));
        tokio::spawn(container.clone().wait());
        container
    }

    /// Append everything the container writes to `log`, until it stops.
    async fn mirror(self: Arc<Self>, log: PathBuf, replay: bool) {
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let stream = self.docker.logs(&self.name, Some(options));
        self.watch.mirror(&log, replay, stream).await;
    }

    /// Note how the container ended, once it has.
    async fn wait(self: Arc<Self>) {
        let how = match self.docker.wait_container(&self.name, None).next().await {
            Some(Ok(answer)) => format!("exit status: {}", answer.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                format!("exit status: {code}")
            }
            Some(Err(e)) => format!("lost track of it: {e}"),
            None => "lost track of it: the wait ended without a status".to_string(),
        };
        self.watch.end(how);
    }

    async fn signal(&self, signal: &str) {
        let options = KillContainerOptionsBuilder::new().signal(signal).build();
        // Not running any more is what was wanted.
        let _ = self.docker.kill_container(&self.name, Some(options)).await;
    }
}

#[async_trait]
impl Running for Container {
    fn identity(&self) -> (i64, u64) {
        (0, 0)
    }

    fn exited(&self) -> Option<String> {
        self.watch.exited()
    }

    async fn terminate(&self) {
        self.signal("SIGTERM").await;
    }

    async fn kill(&self) {
        self.signal("SIGKILL").await;
    }

    async fn remove(&self) {
        let force = RemoveContainerOptionsBuilder::new().force(true).build();
        let _ = self.docker.remove_container(&self.name, Some(force)).await;
    }
}
