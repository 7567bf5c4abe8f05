//! Backend selection: what runs a service's instances (processes, Docker
//! containers or Swarm services), and how it runs one revision.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Agent, revision_id};
use crate::backend::docker::DockerRunner;
use crate::backend::process::ProcessRunner;
use crate::backend::swarm::SwarmRunner;
use crate::backend::{Launch, Runner};
use crate::spec::{BackendKind, ServiceSpec};

impl Agent {
    /// What runs the instances of a service on `backend`.
    pub(super) fn runner(&self, backend: BackendKind) -> Arc<dyn Runner> {
        match backend {
            BackendKind::Process => Arc::new(ProcessRunner),
            BackendKind::Docker => {
                Arc::new(DockerRunner::new(self.docker.clone(), self.owner.clone()))
            }
            BackendKind::Swarm => {
                Arc::new(SwarmRunner::new(self.docker.clone(), self.owner.clone()))
            }
        }
    }
}

/// How the backend runs revision `n` of `spec`.
pub(super) fn launch(spec: &ServiceSpec, n: u32) -> Launch {
    Launch {
        revision: revision_id(n),
        command: spec.revision.command.clone().unwrap_or_default(),
        image: spec.revision.image.clone(),
        args: spec.revision.args.clone(),
        env: spec.revision.env.clone(),
        workdir: spec.revision.workdir.as_ref().map(PathBuf::from),
        health: spec.health.clone(),
        stop_grace_ms: spec.stop_grace_ms,
        log_max_bytes: spec.log_max_bytes,
    }
}
