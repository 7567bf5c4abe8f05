//! One running container: its output mirrored into the instance's log file
//! and its exit watched, both through the API.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
};
use futures_util::StreamExt;

use crate::backend::live::Running;

/// A container the fleet runs.
pub struct Container {
    docker: Docker,
    name: String,
    /// How it ended, once the wait endpoint said so.
    status: Mutex<Option<String>>,
    /// Its output has all reached the log file (the log stream ended).
    logged: AtomicBool,
}

impl Container {
    /// Watch container `name`: mirror its output into `log` (from its start,
    /// replacing what the file held when `replay`) and note its exit.
    pub fn watch(docker: Docker, name: String, log: &Path, replay: bool) -> Arc<dyn Running> {
        let container = Arc::new(Container {
            docker,
            name,
            status: Mutex::new(None),
            logged: AtomicBool::new(false),
        });
        // Append mode always: rotation truncates the file under the
        // writer, whose next write must land at the new end.
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|f| match replay {
                true => f.set_len(0).map(|()| f),
                false => Ok(f),
            });
        tokio::spawn(container.clone().mirror(file));
        tokio::spawn(container.clone().wait());
        container
    }

    /// Append everything the container writes to `file`, until it stops.
    async fn mirror(self: Arc<Self>, file: std::io::Result<std::fs::File>) {
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .build();
        let mut stream = self.docker.logs(&self.name, Some(options));
        if let Ok(mut file) = file {
            while let Some(Ok(chunk)) = stream.next().await {
                let (LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message }
                | LogOutput::StdIn { message }) = chunk;
                if file.write_all(&message).is_err() {
                    break;
                }
            }
        }
        self.logged.store(true, Ordering::SeqCst);
    }

    /// Note how the container ended, once it has.
    async fn wait(self: Arc<Self>) {
        let status = match self.docker.wait_container(&self.name, None).next().await {
            Some(Ok(answer)) => format!("exit status: {}", answer.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => {
                format!("exit status: {code}")
            }
            Some(Err(e)) => format!("lost track of it: {e}"),
            None => "lost track of it: the wait ended without a status".to_string(),
        };
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
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
        // Its last words are in the log before its exit is reported.
        if !self.logged.load(Ordering::SeqCst) {
            return None;
        }
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
