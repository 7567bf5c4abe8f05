//! Where the agent finds its services: loaded from the store the first
//! time one is named (its fleet knowing every recorded revision, its front
//! door open, its fleet manager started), then kept in memory.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::front_door::front_door;
use super::heal;
use super::runners::launch;
use super::service::{Service, parse_stored};
use super::{Agent, AgentError, Result, revision_id};
use crate::fleet::Fleet;
use crate::spec::{BackendKind, ServiceSpec};

impl Agent {
    /// The service `name`, with its fleet knowing every recorded revision.
    pub(super) fn service(&self, name: &str) -> Result<Arc<Service>> {
        self.service_on(name, BackendKind::Process)
    }

    /// The service `name`; a service never deployed yet gets `backend`.
    pub(super) fn service_on(&self, name: &str, backend: BackendKind) -> Result<Arc<Service>> {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = services.get(name) {
            return Ok(s.clone());
        }
        let revisions = self.store.revisions(name)?;
        let specs = revisions
            .iter()
            .map(|r| Ok((r.number, parse_stored(&r.spec)?)))
            .collect::<Result<Vec<_>>>()?;
        let backend = specs.last().map_or(backend, |(_, spec)| spec.backend);
        let dir = self.home.join("services").join(name).join("logs");
        let fleet = Fleet::new(name, self.runner(backend), dir, self.store.clone())
            .map_err(AgentError::LogDir)?;
        for (number, spec) in &specs {
            fleet.register(launch(spec, *number));
        }
        let service = Arc::new(Service {
            backend,
            fleet,
            active: Mutex::new(None),
            healing: Mutex::new(heal::recorded(&self.store, name)),
            removed: AtomicBool::new(false),
            busy: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(heal::heal(
            self.store.clone(),
            Arc::downgrade(&service),
            name.to_string(),
        ));
        let serving = self.store.current_revision(name)?;
        if let Some(n) = serving.or(self.store.revisions(name)?.last().map(|r| r.number)) {
            // A port taken meanwhile leaves the service without a front door
            // until its next rollout says why.
            let _ = front_door(&self.doors, &service.fleet, &self.spec_of(name, n)?);
        }
        // A door taken over keeps the weights it has (a resumed rollout
        // sets them again). On a new door, until a rollout sets weights,
        // the serving revision takes all the traffic: instances of a
        // rollout cut short (a green set at weight 0, an unanalysed canary)
        // get none.
        if let (Some(n), Some(door)) = (serving, service.fleet.front_door())
            && !door.adopted()
        {
            door.set_weights(Some(vec![(revision_id(n), 100)]));
        }
        services.insert(name.to_string(), service.clone());
        Ok(service)
    }

    /// Drop the service `name` from memory (a service never deployed).
    pub(super) fn forget(&self, name: &str) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.remove(name);
    }

    /// The service `name`, which must have been deployed.
    pub(super) fn existing(&self, service: &str) -> Result<Arc<Service>> {
        if !self.store.services()?.iter().any(|s| s == service) {
            return Err(AgentError::NotFound(format!(
                "no service {service} (see `rollout status`)"
            )));
        }
        self.service(service)
    }

    /// The spec of revision `n` of `service`.
    pub(super) fn spec_of(&self, service: &str, n: u32) -> Result<ServiceSpec> {
        parse_stored(&self.store.revision(service, n)?.spec)
    }
}
