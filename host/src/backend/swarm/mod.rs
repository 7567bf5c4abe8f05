//! The `swarm` backend: each instance is a task of Docker Swarm, created
//! through the manager's services API, so a cluster of many machines runs
//! the fleet and schedules every instance.
//!
//! An instance is a Swarm service of one replica (`rollout-<agent>-<id>`,
//! labelled like the docker backend's containers), with host networking and
//! the loopback `$PORT` the fleet chose, restart condition `none` (a task
//! that dies is a failed instance the policy sees, not one Swarm restarts
//! behind its back), `docker-init` as PID 1 and the spec's `stop-grace` as
//! its stop grace period. Stopping it removes the service: Swarm sends
//! SIGTERM, then SIGKILL after the grace period, on whichever node runs it.
//! Its output is mirrored from the service logs into the instance's log
//! file; its end is read from its task's status.
//!
//! Why a service per instance rather than one per revision scaled up and
//! down: Swarm's API cannot remove a chosen task when scaling down (it picks
//! by node balance), so the front door could not drain exactly the
//! instances that stop, and a policy's `stop(ids)` would stop others. A
//! service per instance keeps both exact, through the manager alone.

mod task;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bollard::models::{
    NetworkAttachmentConfig, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec, TaskSpecLogDriver, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use bollard::query_parameters::ListServicesOptionsBuilder;

use self::task::Task;
use super::BackendError;
use super::docker::{
    Connection, Owner, api_error, entrypoint, env_lines, image, is_status, log_options, preflight,
};
use super::runner::{Launch, Runner, Running, StartRequest};
use crate::model::InstanceId;
use crate::store::InstanceRow;

/// Runs instances as Swarm tasks, through a manager of the cluster.
pub struct SwarmRunner {
    docker: Arc<Connection>,
    owner: Owner,
    /// The Swarm node of the Docker daemon the agent talks to.
    local_node: tokio::sync::OnceCell<Option<String>>,
}

impl SwarmRunner {
    /// Services of agent `owner`, on the Swarm managed by the Docker host
    /// of `docker`.
    pub fn new(docker: Arc<Connection>, owner: Owner) -> SwarmRunner {
        SwarmRunner {
            docker,
            owner,
            local_node: tokio::sync::OnceCell::new(),
        }
    }

    /// The Swarm node id of the agent's Docker daemon, if it has one.
    async fn local_node(&self, docker: &bollard::Docker) -> Option<String> {
        let node = self
            .local_node
            .get_or_init(|| async {
                let info = docker.info().await.ok()?;
                info.swarm
                    .and_then(|s| s.node_id)
                    .filter(|id| !id.is_empty())
            })
            .await;
        node.clone()
    }

    /// Remove service `name`; gone already is fine.
    async fn remove(&self, name: &str) -> Result<(), BackendError> {
        let docker = self.docker.get().await?;
        match docker.delete_service(name).await {
            Err(e) if !is_status(&e, 404) => Err(api_error(&format!("removing {name}"), &e)),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl Runner for SwarmRunner {
    async fn check(&self, launch: &Launch) -> Result<(), BackendError> {
        preflight::check(&self.docker, launch).await
    }

    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let docker = self.docker.get().await?;
        let launch = request.launch;
        let name = self.owner.name(request.id);
        let (command, args) = entrypoint(launch);
        let labels = self.owner.labels(&request);
        let spec = ServiceSpec {
            name: Some(name.clone()),
            labels: Some(labels.clone()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..ServiceSpecMode::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image(launch)?),
                    command,
                    args,
                    env: Some(env_lines(request.env)),
                    dir: launch.workdir.as_ref().map(|d| d.display().to_string()),
                    labels: Some(labels),
                    init: Some(true),
                    stop_grace_period: Some(
                        i64::try_from(launch.stop_grace_ms)
                            .unwrap_or(i64::MAX / 1_000_000)
                            .saturating_mul(1_000_000),
                    ),
                    ..TaskSpecContainerSpec::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..TaskSpecRestartPolicy::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some("host".to_string()),
                    ..NetworkAttachmentConfig::default()
                }]),
                log_driver: Some(TaskSpecLogDriver {
                    name: Some("json-file".to_string()),
                    options: Some(log_options(launch.log_max_bytes)),
                }),
                ..TaskSpec::default()
            }),
            ..ServiceSpec::default()
        };
        let created = match docker.create_service(spec.clone(), None).await {
            // A service of that name outlived an agent that died before
            // recording it: it is ours, and nobody uses it.
            Err(e) if is_status(&e, 409) => {
                self.remove(&name).await?;
                docker.create_service(spec, None).await
            }
            other => other,
        };
        match created {
            Ok(_) => {
                let node = self.local_node(docker).await;
                Ok(Task::watch(docker.clone(), name, node, request.log, false))
            }
            Err(e) if is_status(&e, 503) => Err(BackendError::Failed(format!(
                "the Docker host is not a Swarm manager: run `docker swarm init` there (or point DOCKER_HOST at a manager): {}",
                api_error("creating a service", &e)
            ))),
            Err(e) => Err(api_error(&format!("creating service {name}"), &e)),
        }
    }

    async fn adopt(
        &self,
        row: &InstanceRow,
        log: &Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        let docker = self.docker.get().await?;
        let name = self.owner.name(&row.id);
        let service = match docker.inspect_service(&name, None).await {
            Ok(service) => service,
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(api_error(&format!("inspecting service {name}"), &e)),
        };
        if !self
            .owner
            .owns(service.spec.as_ref().and_then(|s| s.labels.as_ref()))
        {
            return Ok(None);
        }
        if !task::live(docker, &name).await? {
            self.remove(&name).await?;
            return Ok(None);
        }
        let node = self.local_node(docker).await;
        Ok(Some(Task::watch(docker.clone(), name, node, log, true)))
    }

    async fn sweep(&self, service: &str, known: &[InstanceId], _logs: &Path) -> Vec<InstanceId> {
        let Ok(docker) = self.docker.get().await else {
            return Vec::new();
        };
        let filters = self.owner.filters(service);
        let list = ListServicesOptionsBuilder::new().filters(&filters).build();
        let Ok(found) = docker.list_services(Some(list)).await else {
            return Vec::new();
        };
        let found = found.into_iter().map(|s| {
            let spec = s.spec.unwrap_or_default();
            (spec.labels, spec.name)
        });
        let mut removed = Vec::new();
        for (instance, name) in Owner::strays(found, known) {
            if self.remove(&name).await.is_ok() {
                removed.push(instance);
            }
        }
        removed
    }
}
