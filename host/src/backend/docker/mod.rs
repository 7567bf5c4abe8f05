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
//!
//! Images must already be on the Docker host: the backend never pulls.

mod client;
mod container;

pub use client::Connection;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use sha2::{Digest, Sha256};

use self::client::{api_error, is_status};
use self::container::Container;
use super::BackendError;
use super::live::{Runner, Running, StartRequest};
use crate::model::InstanceId;
use crate::store::InstanceRow;

/// Label holding the home directory of the agent that started a container.
pub const HOME_LABEL: &str = "rollout.home";
/// Label holding the service.
pub const SERVICE_LABEL: &str = "rollout.service";
/// Label holding the revision.
pub const REVISION_LABEL: &str = "rollout.revision";
/// Label holding the instance id.
pub const INSTANCE_LABEL: &str = "rollout.instance";

/// Runs instances as containers of one Docker host.
pub struct DockerRunner {
    docker: Arc<Connection>,
    /// The agent's home, as its containers' [`HOME_LABEL`].
    home: String,
    /// Short digest of `home`, in container names: two agents on one
    /// Docker host never share a name.
    key: String,
}

impl DockerRunner {
    /// Containers of the agent whose home is `home`, on the Docker host of
    /// `docker`.
    pub fn new(docker: Arc<Connection>, home: &Path) -> DockerRunner {
        let home = home.display().to_string();
        let digest = Sha256::digest(home.as_bytes());
        let key = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        DockerRunner { docker, home, key }
    }

    fn name(&self, id: &str) -> String {
        format!("rollout-{}-{id}", self.key)
    }

    fn labels(&self, request: &StartRequest<'_>) -> HashMap<String, String> {
        HashMap::from([
            (HOME_LABEL.to_string(), self.home.clone()),
            (SERVICE_LABEL.to_string(), request.service.to_string()),
            (REVISION_LABEL.to_string(), request.launch.revision.clone()),
            (INSTANCE_LABEL.to_string(), request.id.to_string()),
        ])
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
    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let docker = self.docker.get().await?;
        let launch = request.launch;
        let image = launch.image.clone().ok_or_else(|| {
            BackendError::Failed(format!("revision {} names no image", launch.revision))
        })?;
        let name = self.name(request.id);
        let (entrypoint, cmd) = match (launch.command.is_empty(), launch.args.is_empty()) {
            (false, _) => (
                Some(vec![launch.command.clone()]),
                Some(launch.args.clone()),
            ),
            (true, false) => (None, Some(launch.args.clone())),
            (true, true) => (None, None),
        };
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            entrypoint,
            cmd,
            working_dir: launch.workdir.as_ref().map(|d| d.display().to_string()),
            env: Some(
                request
                    .env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect(),
            ),
            labels: Some(self.labels(&request)),
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
                    config: Some(HashMap::from([
                        ("max-size".to_string(), launch.log_max_bytes.to_string()),
                        ("max-file".to_string(), "2".to_string()),
                    ])),
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
                true => missing_image(&image),
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
        let name = self.name(&row.id);
        let inspected = match docker.inspect_container(&name, None).await {
            Ok(inspected) => inspected,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(api_error(&format!("inspecting {name}"), &e)),
        };
        let ours = inspected
            .config
            .and_then(|c| c.labels)
            .is_some_and(|l| l.get(HOME_LABEL) == Some(&self.home));
        let running = inspected.state.and_then(|s| s.running) == Some(true);
        if !(ours && running) {
            if ours {
                self.remove(&name).await?;
            }
            return Ok(None);
        }
        Ok(Some(Container::watch(docker.clone(), name, log, true)))
    }

    async fn sweep(&self, service: &str, known: &[InstanceId]) -> Vec<InstanceId> {
        let Ok(docker) = self.docker.get().await else {
            return Vec::new();
        };
        let filters = HashMap::from([(
            "label",
            vec![
                format!("{HOME_LABEL}={}", self.home),
                format!("{SERVICE_LABEL}={service}"),
            ],
        )]);
        let list = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let Ok(found) = docker.list_containers(Some(list)).await else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        for summary in found {
            let instance = summary.labels.and_then(|mut l| l.remove(INSTANCE_LABEL));
            let (Some(instance), Some(container)) = (instance, summary.id) else {
                continue;
            };
            if !known.contains(&instance) && self.remove(&container).await.is_ok() {
                removed.push(instance);
            }
        }
        removed
    }
}

/// Check that the Docker host has `image`: the backend never pulls, so a
/// missing image is refused before a rollout changes anything.
pub async fn check_image(docker: &Connection, image: &str) -> Result<(), BackendError> {
    match docker.get().await?.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 404) => Err(missing_image(image)),
        Err(e) => Err(api_error(&format!("inspecting image {image}"), &e)),
    }
}

fn missing_image(image: &str) -> BackendError {
    BackendError::Failed(format!(
        "image {image} is not on the Docker host (rollout never pulls): build it (`docker build -t {image} .`) or pull it (`docker pull {image}`)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_daemon_that_does_not_answer_keeps_the_records_of_its_containers() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let connection = Arc::new(Connection::at_socket(socket.to_str().unwrap()));
        let runner = DockerRunner::new(connection, dir.path());
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
