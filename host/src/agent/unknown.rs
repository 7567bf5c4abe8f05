//! Instances of this home that the state does not know: what runs when
//! `state.db` was lost, emptied or replaced (a lost WAL, a restore from an
//! old backup) while the instances of the old state kept running. Starting
//! as new over them would run a deploy next to them, twice the replicas.
//!
//! A service has a directory `HOME/services/NAME` whatever its backend; for
//! each one the state does not know, the marks of each backend are looked
//! for: a process whose standard output is a log file in its `logs`
//! directory, a container or Swarm service labelled with this agent's id
//! and the service. Instances of services the state knows are adopted or
//! swept by their fleet ([`crate::fleet::Fleet::adopt`]).

use bollard::query_parameters::{ListContainersOptionsBuilder, ListServicesOptionsBuilder};

use super::Agent;
use crate::backend::Runner;
use crate::backend::docker::{DockerRunner, INSTANCE_LABEL};
use crate::backend::process::os;
use crate::backend::swarm::SwarmRunner;

/// A running instance of this home that the state does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The service its log directory names.
    pub service: String,
    /// Its instance id (its log file's name).
    pub id: String,
    /// What runs it.
    pub on: Where,
}

/// What runs an unknown instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// A process group led by this pid.
    Process(i64),
    /// A Docker container.
    Container,
    /// A Swarm service.
    SwarmService,
}

impl std::fmt::Display for Where {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Process(pid) => write!(f, "pid {pid}"),
            Where::Container => f.write_str("a Docker container"),
            Where::SwarmService => f.write_str("a Swarm service"),
        }
    }
}

impl Agent {
    /// Running instances under this home of services the state does not know.
    pub async fn unknown_instances(&self) -> Vec<Unknown> {
        let mut found = Vec::new();
        for service in self.unknown_services() {
            let logs = self.home.join("services").join(&service).join("logs");
            let mut add = |id: String, on: Where| {
                found.push(Unknown {
                    service: service.clone(),
                    id,
                    on,
                })
            };
            for (pid, id) in os::instances_logging_to(&logs) {
                add(id, Where::Process(pid));
            }
            // A Swarm task's container carries its service's labels: the
            // instance is the Swarm service.
            let tasks = self.swarm_labelled(&service).await;
            for id in self.labelled(&service).await {
                if !tasks.contains(&id) {
                    add(id, Where::Container);
                }
            }
            for id in tasks {
                add(id, Where::SwarmService);
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Services with a directory in this home that the state does not know.
    fn unknown_services(&self) -> Vec<String> {
        let known = self.store.services().unwrap_or_default();
        let Ok(dirs) = std::fs::read_dir(self.home.join("services")) else {
            return Vec::new();
        };
        dirs.filter_map(Result::ok)
            .map(|d| d.file_name().to_string_lossy().into_owned())
            .filter(|name| !known.contains(name))
            .collect()
    }

    /// Instances of `service` in containers labelled as this agent's (none
    /// when no Docker daemon answers).
    async fn labelled(&self, service: &str) -> Vec<String> {
        let Ok(docker) = self.docker.get().await else {
            return Vec::new();
        };
        let filters = self.owner.filters(service);
        let list = ListContainersOptionsBuilder::new()
            .all(false)
            .filters(&filters)
            .build();
        let found = docker.list_containers(Some(list)).await.unwrap_or_default();
        found
            .into_iter()
            .filter_map(|c| c.labels?.remove(INSTANCE_LABEL))
            .collect()
    }

    /// Instances of `service` in Swarm services labelled as this agent's.
    async fn swarm_labelled(&self, service: &str) -> Vec<String> {
        let Ok(docker) = self.docker.get().await else {
            return Vec::new();
        };
        let filters = self.owner.filters(service);
        let list = ListServicesOptionsBuilder::new().filters(&filters).build();
        let found = docker.list_services(Some(list)).await.unwrap_or_default();
        found
            .into_iter()
            .filter_map(|s| s.spec?.labels?.remove(INSTANCE_LABEL))
            .collect()
    }

    /// Stop `unknown` instances: process groups are killed, containers and
    /// Swarm services removed (each backend's sweep with nothing known).
    pub async fn stop_unknown(&self, unknown: &[Unknown]) {
        let mut services: Vec<&str> = Vec::new();
        for u in unknown {
            if let Where::Process(pid) = u.on {
                os::signal_group(pid, libc::SIGKILL);
            } else if !services.contains(&u.service.as_str()) {
                services.push(&u.service);
            }
        }
        let docker = DockerRunner::new(self.docker.clone(), self.owner.clone());
        let swarm = SwarmRunner::new(self.docker.clone(), self.owner.clone());
        for service in services {
            let logs = self.home.join("services").join(service).join("logs");
            // Services first: their task containers go with them.
            swarm.sweep(service, &[], &logs).await;
            docker.sweep(service, &[], &logs).await;
        }
    }
}

/// Why an agent refuses to start over `unknown` instances, and what to do.
pub fn refusal(home: &std::path::Path, unknown: &[Unknown]) -> String {
    let named: Vec<String> = unknown
        .iter()
        .take(10)
        .map(|u| format!("{} (service {}, {})", u.id, u.service, u.on))
        .collect();
    let more = match unknown.len() {
        n if n > 10 => format!(" and {} more", n - 10),
        _ => String::new(),
    };
    format!(
        "{} instance(s) of this home still run that the state at {} does not know: {}{more}. \
         The state was lost or replaced (an empty or missing state.db, a lost WAL) while they ran; \
         starting as new would deploy next to them. Put the old state.db back if you have it, \
         or stop them: `rollout serve --stop-unknown` stops them and starts with the state as it is",
        unknown.len(),
        home.join("state.db").display(),
        named.join(", ")
    )
}
