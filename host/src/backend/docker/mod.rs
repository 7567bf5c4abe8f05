//! The `docker` backend: each instance is a container, run through the
//! Docker Engine API (bollard).
//!
//! A container runs the revision's image with host networking, so it listens
//! on the loopback port the fleet gave it in `$PORT`, exactly like a process
//! instance; health probes and the front door reach it there. It is named
//! `rollout-<agent>-<instance>` and labelled with the agent's home, the
//! service, the revision and the instance, which is how a restarted agent
//! finds it again. Its output is mirrored from the API into the instance's
//! log file, so `rollout logs` and the log-pattern probe read containers and
//! processes alike; its exit is watched through the API's wait endpoint.
//! A stop on the agent's own machine signals the container's process
//! directly and sees it exit at once ([`process`]).
//!
//! Images must already be on the Docker host: the backend never pulls.

mod client;
pub(crate) mod container;
mod owner;
pub(crate) mod preflight;
pub mod process;
pub(crate) mod watch;

pub(crate) use client::api_error;
pub use client::{Connection, is_status};
pub use owner::{AGENT_LABEL, HOME_LABEL, INSTANCE_LABEL, Owner, REVISION_LABEL, SERVICE_LABEL};
pub(crate) use owner::{entrypoint, env_lines, image, log_options};

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};

use self::container::Container;
use super::BackendError;
use super::runner::{Launch, Runner, Running, StartRequest};
use crate::model::InstanceId;
use crate::store::InstanceRow;

/// Runs instances as containers of one Docker host.
pub struct DockerRunner {
    docker: Arc<Connection>,
    owner: Owner,
}

impl DockerRunner {
    /// Containers of agent `owner`, on the Docker host of `docker`.
    pub fn new(docker: Arc<Connection>, owner: Owner) -> DockerRunner {
        DockerRunner { docker, owner }
    }

    /// Remove container `name` whatever its state; gone already is fine.
    async fn remove(&self, name: &str) -> Result<(), BackendError> {
        let docker = self.docker.get().await?;
        let force = RemoveContainerOptionsBuilder::new().force(true).build();
        match docker.remove_container(name, Some(force)).await {
            Err(e) if !is_status(&e, 404) => Err(api_error(&format!("removing {name}"), &e)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Runner for DockerRunner {
    async fn check(&self, launch: &Launch) -> Result<(), BackendError> {
        preflight::check(&self.docker, launch).await
    }

    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let docker = self.docker.get().await?;
        let launch = request.launch;
        let image = image(launch)?;
        let name = self.owner.name(request.id);
        let (entrypoint, cmd) = entrypoint(launch);
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint,
            cmd,
            working_dir: launch.workdir.as_ref().map(|d| d.display().to_string()),
            env: Some(env_lines(request.env)),
            labels: Some(self.owner.labels(&request)),
            host_config: Some(HostConfig {
                // The instance listens on its loopback `$PORT` on this host.
                network_mode: Some("host".to_string()),
                // A small init as PID 1 passes SIGTERM on: the kernel
                // ignores it for a PID 1 without a handler, which would make
                // every stop wait out the grace period.
                init: Some(true),
                // Docker's own copy of the output, capped like the mirror.
                log_config: Some(HostConfigLogConfig {
                    typ: Some("json-file".to_string()),
                    config: Some(log_options(launch.log_max_bytes)),
                }),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let options = || Some(CreateContainerOptionsBuilder::new().name(&name).build());
        let created = match docker.create_container(options(), body.clone()).await {
            // A container of that name outlived an agent that died before
            // recording it: it is ours, and nobody uses it.
            Err(e) if is_status(&e, 409) => {
                self.remove(&name).await?;
                docker.create_container(options(), body).await
            }
            other => other,
        };
        if let Err(e) = created {
            return Err(match is_status(&e, 404) {
                true => preflight::missing_image(&image),
                false => api_error(&format!("creating {name} from {image}"), &e),
            });
        }
        if let Err(e) = docker.start_container(&name, None).await {
            let _ = self.remove(&name).await;
            return Err(api_error(&format!("starting {name} ({image})"), &e));
        }
        Ok(Container::watch(docker.clone(), name, request.log, false))
    }

    async fn adopt(
        &self,
        row: &InstanceRow,
        log: &Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        let docker = self.docker.get().await?;
        let name = self.owner.name(&row.id);
        let inspected = match docker.inspect_container(&name, None).await {
            Ok(inspected) => inspected,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(api_error(&format!("inspecting {name}"), &e)),
        };
        let ours = self
            .owner
            .owns(inspected.config.as_ref().and_then(|c| c.labels.as_ref()));
        let running = inspected.state.and_then(|s| s.running) == Some(true);
        if !(ours && running) {
            if ours {
                self.remove(&name).await?;
            }
            return Ok(None);
        }
        Ok(Some(Container::watch(docker.clone(), name, log, true)))
    }

    async fn sweep(&self, service: &str, known: &[InstanceId], _logs: &Path) -> Vec<InstanceId> {
        let Ok(docker) = self.docker.get().await else {
            return Vec::new();
        };
        let filters = self.owner.filters(service);
        let list = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(found) = docker.list_containers(Some(list)).await else {
            return Vec::new();
        };
        let found = found.into_iter().map(|c| (c.labels, c.id));
        let mut removed = Vec::new();
        for (instance, container) in Owner::strays(found, known) {
            if self.remove(&container).await.is_ok() {
                removed.push(instance);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_daemon_that_does_not_answer_keeps_the_records_of_its_containers() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let connection = Arc::new(Connection::at_socket(socket.to_str().unwrap()));
        let runner = DockerRunner::new(connection, Owner::of_home(dir.path()).unwrap());
        let row = InstanceRow {
            id: "web-r1-1".into(),
            service: "web".into(),
            revision: "r1".into(),
            pid: 0,
            start_ticks: 0,
            port: 8080,
            started_ms: 0,
        };
        // Not "gone" (which would forget a container that may well run).
        let Err(BackendError::Failed(why)) = runner.adopt(&row, &dir.path().join("log")).await
        else {
            panic!("adopting without a daemon did not fail");
        };
        assert!(why.contains("cannot reach the Docker daemon"), "{why}");
    }
}
