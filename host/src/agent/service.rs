//! The services the agent holds in memory: each with its backend, its
//! fleet (knowing every recorded revision) and the rollout in progress, if
//! any. A service is loaded from the store the first time it is named.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::front_door::front_door;
use super::heal::{self, Healing};
use super::runners::launch;
use super::{Agent, AgentError, Result, revision_id};
use crate::executor::operator::Inbox;
use crate::fleet::Fleet;
use crate::spec::{BackendKind, ServiceSpec};

/// A rollout in progress.
pub(super) struct Active {
    /// Its id in the store.
    pub id: i64,
    /// Where operator commands go.
    pub inbox: Inbox,
    /// Whether the last command was a pause.
    pub paused: bool,
}

/// One service the agent runs.
pub(super) struct Service {
    /// What runs its instances; fixed when it is first deployed.
    pub backend: BackendKind,
    /// Its instances.
    pub fleet: Arc<Fleet>,
    /// Its rollout in progress.
    pub active: Mutex<Option<Active>>,
    /// What its fleet manager did and holds back ([`heal`]).
    pub healing: Mutex<Healing>,
    /// Set by `rollout rm` (and the demo's cleanup, which stops every
    /// instance): its fleet manager stops for good.
    removed: AtomicBool,
    /// Held by whoever changes the fleet on the service's behalf: its
    /// fleet manager for one pass, a rollout from its first step to its
    /// end, `rollout rm`. A rollout admitted while the fleet manager starts
    /// a replacement begins once it is started, and sees it.
    pub busy: tokio::sync::Mutex<()>,
}

impl Service {
    /// Whether `rollout rm` removed it.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Mark it removed: its fleet manager stops at its next pass.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }
}

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
            let _ = front_door(&service.fleet, &self.spec_of(name, n)?);
        }
        // Until a rollout sets weights, the serving revision takes all the
        // traffic: instances of a rollout cut short (a green set at weight
        // 0, an unanalysed canary) get none after an agent restart.
        if let (Some(n), Some(proxy)) = (serving, service.fleet.front_door()) {
            proxy.set_weights(Some(vec![(revision_id(n), 100)]));
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

/// A spec the agent stored itself.
pub(super) fn parse_stored(text: &str) -> Result<ServiceSpec> {
    ServiceSpec::parse(text, "stored revision", Path::new("/")).map_err(AgentError::StoredSpec)
}
