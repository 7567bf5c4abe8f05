//! Run and deploy admission: a rollout request is checked in full before
//! anything changes, in this order: the spec parses, the policy loads, the
//! backend can start the revision, the service stays on its backend, no
//! other rollout of it runs, and its front door can listen. Only then is
//! the revision recorded and its rollout task started ([`super::rollout`]).

use std::path::Path;
use std::sync::Arc;

use super::rollout;
use super::runners::launch;
use super::service::Active;
use super::{Agent, AgentError, Result, front_door::front_door, revision_id};
use crate::executor::Durable;
use crate::executor::operator::Inbox;
use crate::model::InstanceState;
use crate::runtime::{LoadedPolicy, PolicySource};
use crate::spec::ServiceSpec;
use crate::store::PinnedPolicy;

/// Which policy a rollout runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyChoice {
    /// A built-in policy name, or the path of a component on the agent's
    /// machine.
    Named(String),
    /// A component a client sent.
    Uploaded {
        /// Where the client read it, for messages.
        name: String,
        /// The component.
        bytes: Arc<[u8]>,
    },
}

/// `rollout run`: record a new revision of a spec and roll it out.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The spec as canonical TOML (overrides applied, paths absolute).
    pub spec: String,
    /// Where the spec came from, for messages.
    pub origin: String,
    /// The policy; `None` runs the spec's.
    pub policy: Option<PolicyChoice>,
    /// Policy params overriding the spec's.
    pub params: Vec<(String, String)>,
    /// Why (`--cause`); the default says what changed.
    pub cause: Option<String>,
}

/// What a run or an undo started.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Started {
    /// The rollout; `None` when nothing changed.
    pub rollout: Option<i64>,
    /// Service name.
    pub service: String,
    /// Revision serving before.
    pub from_revision: Option<u32>,
    /// Revision rolled out (or already serving, when unchanged).
    pub to_revision: u32,
    /// What the agent did, in words.
    pub message: String,
}

impl Agent {
    /// `rollout run`: record the spec as a new revision and roll it out.
    pub fn run(self: &Arc<Self>, req: RunRequest) -> Result<Started> {
        let spec = ServiceSpec::parse(&req.spec, &req.origin, Path::new("/"))?;
        // Checked even when nothing would change: a bad policy is refused.
        let policy = self.policy(&req.policy, &spec)?;
        let current = self.store.current_revision(&spec.name)?;
        if current.is_some() {
            let (n, serving) = self.serving(&spec.name)?;
            if serving.replicas != spec.replicas && serving.with_replicas(spec.replicas) == spec {
                // Only `replicas` changed: a scale of the serving
                // revision, no new revision and no policy.
                let why = format!("rollout run of {}", req.origin);
                return self.scale(&spec.name, spec.replicas, &why);
            }
            if serving == spec && self.healthy(&spec.name, n, spec.replicas)? {
                return Ok(Started {
                    rollout: None,
                    service: spec.name.clone(),
                    from_revision: current,
                    to_revision: n,
                    message: format!(
                        "no change: revision {n} already serves {} with {} ready instance(s)",
                        spec.name, spec.replicas
                    ),
                });
            }
        }
        let cause = match req.cause {
            Some(c) => c,
            None => self.default_cause(&spec, current, &req.origin)?,
        };
        self.roll_out(spec, &req.origin, policy, req.params, cause)
    }

    /// Admit `spec` as a new revision and start rolling it out with
    /// `loaded` (see [`Agent::policy`]), or refuse it with nothing changed.
    pub(super) fn roll_out(
        self: &Arc<Self>,
        spec: ServiceSpec,
        origin: &str,
        loaded: LoadedPolicy<Durable>,
        params: Vec<(String, String)>,
        cause: String,
    ) -> Result<Started> {
        self.check_backend(&spec, origin)?;
        let service = self.service_on(&spec.name, spec.backend)?;
        if service.backend != spec.backend {
            return Err(AgentError::Invalid(format!(
                "{} runs on the {} backend; a revision cannot move it to {} (deploy it under another name, then stop this one); nothing was changed",
                spec.name,
                service.backend.name(),
                spec.backend.name()
            )));
        }
        let mut active = service.active.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = active.as_ref() {
            return Err(AgentError::Conflict(format!(
                "rollout {} of {} is in progress: wait for it (`rollout status {} --watch`) or stop it (`rollout abort {}`); nothing was changed",
                a.id, spec.name, spec.name, spec.name
            )));
        }
        if service.removed() {
            return Err(AgentError::Conflict(format!(
                "{} is being removed (`rollout rm`): deploy it again once that is over; nothing was changed",
                spec.name
            )));
        }
        if let Err(e) = front_door(&self.doors, &service.fleet, &spec) {
            if self.store.revisions(&spec.name)?.is_empty() {
                // Never deployed: its next first deploy may pick another
                // backend.
                self.forget(&spec.name);
            }
            return Err(e);
        }
        // Admitted: from here on, the revision is recorded.
        let from = self.store.current_revision(&spec.name)?;
        let to = self
            .store
            .add_revision(&spec.name, &spec.to_toml(), &cause)?;
        service.fleet.register(launch(&spec, to));
        // The new spec states its replicas: an earlier `rollout scale` is
        // over, and a removed service is listed again.
        self.store.set_scale(&spec.name, None)?;
        self.store.unremove_service(&spec.name)?;
        let mut merged = spec.policy.params.clone();
        for (k, v) in params {
            merged.retain(|(key, _)| *key != k);
            merged.push((k, v));
        }
        // The rollout starts with its policy pinned, so a restarted agent
        // can resume it from its first instant.
        let pinned = PinnedPolicy {
            name: loaded.name.clone(),
            digest: loaded.digest.clone(),
            wit: loaded.wit.to_string(),
            params: merged.clone(),
            bytes: loaded.bytes.to_vec(),
        };
        let id = self.store.start_rollout(&spec.name, from, to, &pinned)?;
        let inbox = Inbox::default();
        *active = Some(Active {
            id,
            inbox: inbox.clone(),
            paused: false,
        });
        drop(active);
        let message = match from {
            Some(f) => format!("rolling {} from revision {f} to {to}", spec.name),
            None => format!("deploying {} revision {to}", spec.name),
        };
        let job = rollout::Job {
            id,
            spec,
            from,
            to,
            params: merged,
            inbox,
        };
        let service_name = job.spec.name.clone();
        tokio::spawn(rollout::run(
            self.clone(),
            service,
            loaded,
            job,
            rollout::Begin::New,
        ));
        Ok(Started {
            rollout: Some(id),
            service: service_name,
            from_revision: from,
            to_revision: to,
            message,
        })
    }

    /// Load the policy a request names (or the spec's), checked and ready.
    pub(super) fn policy(
        &self,
        policy: &Option<PolicyChoice>,
        spec: &ServiceSpec,
    ) -> Result<LoadedPolicy<Durable>> {
        let source = match policy {
            Some(PolicyChoice::Named(name)) => PolicySource::parse(name),
            Some(PolicyChoice::Uploaded { name, bytes }) => Ok(PolicySource::Uploaded {
                name: name.clone(),
                bytes: bytes.clone(),
            }),
            None => PolicySource::parse(&spec.policy.name),
        };
        self.runtime
            .load(&source.map_err(AgentError::Policy)?)
            .map_err(AgentError::Policy)
    }

    /// Refuse a revision its backend could not start (a command that does
    /// not exist, an image the Docker host lacks, a daemon that does not
    /// answer) before anything changes; `origin` names the spec.
    /// Rollout requests are synchronous (policies compile), so this blocks
    /// its thread, whether a blocking one or a worker of the multi-threaded
    /// runtime.
    fn check_backend(&self, spec: &ServiceSpec, origin: &str) -> Result<()> {
        let runner = self.runner(spec.backend);
        let launch = launch(spec, 0);
        let check = async move { runner.check(&launch).await };
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(check)).map_err(
            |source| AgentError::Unstartable {
                origin: origin.to_string(),
                source,
            },
        )
    }

    /// True when `replicas` instances of revision `n` are ready and nothing
    /// else runs.
    fn healthy(&self, service: &str, n: u32, replicas: u32) -> Result<bool> {
        let fleet = self.service(service)?.fleet.list();
        let rev = revision_id(n);
        let ready = fleet
            .iter()
            .filter(|i| i.revision == rev && i.state == InstanceState::Ready)
            .count() as u32;
        Ok(ready == replicas && fleet.len() as u32 == replicas)
    }

    /// What changed, in words, for a revision recorded without `--cause`.
    fn default_cause(
        &self,
        spec: &ServiceSpec,
        current: Option<u32>,
        origin: &str,
    ) -> Result<String> {
        let Some(n) = current else {
            return Ok(format!("first deploy from {origin}"));
        };
        let before = self.spec_of(&spec.name, n)?;
        let diff = before.diff(spec);
        Ok(match diff.len() {
            0 => format!("redeploy of revision {n} from {origin}"),
            1..=3 => diff.join("; "),
            k => format!("{}; and {} more change(s)", diff[..3].join("; "), k - 3),
        })
    }
}
