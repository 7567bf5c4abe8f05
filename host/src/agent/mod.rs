//! The agent: owns the services, their fleets and their rollouts.
//!
//! A rollout request is checked in full before anything changes (spec,
//! backend, policy compiled and version-checked, no other rollout of the
//! service running); only then is the revision recorded and the policy
//! started in its own task, journaling every step to the store. The control
//! API ([`crate::api`]) is a thin layer over this module.

mod rollout;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::sync::Notify;

use crate::api::types::{
    ControlAnswer, Events, HistoryEntry, PolicyRef, RevisionTraffic, RunRequest, ServiceStatus,
    Started, UndoRequest,
};
use crate::backend::docker::{self, DockerRunner};
use crate::backend::live::{Fleet, Launch, Runner};
use crate::backend::process::ProcessRunner;
use crate::backend::swarm::SwarmRunner;
use crate::engine::journal::Kind;
use crate::engine::operator::{Action, Inbox};
use crate::model::InstanceState;
use crate::proxy::{Door, Proxy};
use crate::runtime::{LoadedPolicy, PolicySource, Runtime};
use crate::spec::{BackendKind, ServiceSpec};
use crate::store::{RolloutRow, Store, StoreError};

/// Why the agent refused a request.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The request is wrong; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// It names nothing that exists.
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with what is running (another rollout).
    #[error("{0}")]
    Conflict(String),
    /// The agent failed.
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AgentError::NotFound(what),
            e => AgentError::Internal(e.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, AgentError>;

/// A rollout in progress.
struct Active {
    id: i64,
    inbox: Inbox,
    paused: bool,
}

/// One service the agent runs.
struct Service {
    /// What runs its instances; fixed when it is first deployed.
    backend: BackendKind,
    fleet: Arc<Fleet>,
    active: Mutex<Option<Active>>,
}

/// The agent's state.
pub struct Agent {
    home: PathBuf,
    store: Arc<Store>,
    runtime: Arc<Runtime>,
    services: Mutex<HashMap<String, Arc<Service>>>,
    /// The Docker host, for services on the docker and swarm backends.
    docker: Arc<docker::Connection>,
    /// This agent, as its containers and Swarm services are labelled.
    owner: docker::Owner,
    /// Signalled whenever a journal entry is stored or a rollout ends.
    journal_changed: Arc<Notify>,
}

/// The revision id policies and instances see for revision `n`.
pub fn revision_id(n: u32) -> String {
    format!("r{n}")
}

impl Agent {
    /// Open the agent's state under `home` and re-adopt the instances an
    /// earlier agent left running. Returns the agent and what it found.
    pub async fn open(home: &Path, runtime: Runtime) -> anyhow::Result<(Arc<Agent>, Vec<String>)> {
        std::fs::create_dir_all(home)?;
        let store = Arc::new(Store::open(&home.join("state.db"))?);
        let mut notes = Vec::new();
        let interrupted = store.fail_interrupted("the agent stopped during the rollout; the fleet was left as it was: check `rollout status` and `rollout undo` if needed")?;
        if interrupted > 0 {
            notes.push(format!(
                "{interrupted} rollout(s) were interrupted by the agent stopping; marked failed"
            ));
        }
        let agent = Arc::new(Agent {
            home: home.to_path_buf(),
            store,
            runtime: Arc::new(runtime),
            services: Mutex::new(HashMap::new()),
            docker: Arc::default(),
            owner: docker::Owner::of_home(home).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read or write the agent's id in {}: {e}",
                    home.join("agent.id").display()
                )
            })?,
            journal_changed: Arc::new(Notify::new()),
        });
        for name in agent.store.services()? {
            let service = agent.service(&name)?;
            let found = service
                .fleet
                .adopt()
                .await
                .map_err(|e| anyhow::anyhow!("re-adopting {name}: {e}"))?;
            if !found.adopted.is_empty() || !found.gone.is_empty() || !found.swept.is_empty() {
                let mut note = format!(
                    "{name}: re-adopted {} running instance(s)",
                    found.adopted.len()
                );
                if !found.gone.is_empty() {
                    note.push_str(&format!(
                        ", {} had exited and were forgotten",
                        found.gone.len()
                    ));
                }
                if !found.swept.is_empty() {
                    note.push_str(&format!(
                        ", removed {} nobody had recorded ({})",
                        found.swept.len(),
                        found.swept.join(", ")
                    ));
                }
                notes.push(note);
            }
        }
        Ok((agent, notes))
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The service `name`, with its fleet knowing every recorded revision.
    fn service(&self, name: &str) -> Result<Arc<Service>> {
        self.service_on(name, BackendKind::Process)
    }

    /// The service `name`; a service never deployed yet gets `backend`.
    fn service_on(&self, name: &str, backend: BackendKind) -> Result<Arc<Service>> {
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
        let fleet = Fleet::new(name, self.runner(backend)?, dir, self.store.clone())
            .map_err(|e| AgentError::Internal(format!("cannot create the log directory: {e}")))?;
        for (number, spec) in &specs {
            fleet.register(launch(spec, *number));
        }
        let service = Arc::new(Service {
            backend,
            fleet,
            active: Mutex::new(None),
        });
        let serving = self.store.current_revision(name)?;
        if let Some(n) = serving.or(self.store.revisions(name)?.last().map(|r| r.number)) {
            // A port taken meanwhile leaves the service without a front door
            // until its next rollout says why.
            let _ = front_door(&service, &self.spec_of(name, n)?);
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
    fn forget(&self, name: &str) {
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        services.remove(name);
    }

    /// What runs the instances of a service on `backend`.
    fn runner(&self, backend: BackendKind) -> Result<Arc<dyn Runner>> {
        match backend {
            BackendKind::Process => Ok(Arc::new(ProcessRunner)),
            BackendKind::Docker => Ok(Arc::new(DockerRunner::new(
                self.docker.clone(),
                self.owner.clone(),
            ))),
            BackendKind::Swarm => Ok(Arc::new(SwarmRunner::new(
                self.docker.clone(),
                self.owner.clone(),
            ))),
        }
    }

    /// The spec of revision `n` of `service`.
    fn spec_of(&self, service: &str, n: u32) -> Result<ServiceSpec> {
        parse_stored(&self.store.revision(service, n)?.spec)
    }

    /// Load the policy a request names (or the spec's), checked and ready.
    fn policy(&self, policy: &Option<PolicyRef>, spec: &ServiceSpec) -> Result<LoadedPolicy> {
        let source = match policy {
            Some(PolicyRef::Builtin { name }) => PolicySource::parse(name),
            Some(PolicyRef::Wasm { name, base64 }) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(base64)
                    .map_err(|e| AgentError::Invalid(format!("policy {name}: bad upload: {e}")))?;
                Ok(PolicySource::Uploaded {
                    name: name.clone(),
                    bytes: bytes.into(),
                })
            }
            None => PolicySource::parse(&spec.policy.name),
        };
        let unchanged = |e: crate::runtime::PolicyError| {
            AgentError::Invalid(format!("{e}; nothing was changed"))
        };
        self.runtime
            .load(&source.map_err(unchanged)?)
            .map_err(unchanged)
    }

    /// `rollout run`: record the spec as a new revision and roll it out.
    pub fn run(self: &Arc<Self>, req: RunRequest) -> Result<Started> {
        let spec = ServiceSpec::parse(&req.spec, &req.origin, Path::new("/"))
            .map_err(|e| AgentError::Invalid(e.to_string()))?;
        let current = self.store.current_revision(&spec.name)?;
        if let Some(n) = current {
            let serving = self.spec_of(&spec.name, n)?;
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
        self.roll_out(spec, &req.origin, &req.policy, req.params, cause)
    }

    /// `rollout undo`: roll out an earlier revision's spec again, as a new
    /// revision (as `kubectl rollout undo` does).
    pub fn undo(self: &Arc<Self>, service: &str, req: UndoRequest) -> Result<Started> {
        let current = self.store.current_revision(service)?.ok_or_else(|| {
            AgentError::NotFound(format!(
                "{service} has no revision serving: nothing to undo"
            ))
        })?;
        let target = match req.to_revision {
            Some(n) => n,
            None => self
                .store
                .rollouts(service)?
                .iter()
                .rev()
                .filter(|r| r.state == "completed" && r.to_revision == current)
                .find_map(|r| r.from_revision)
                .ok_or_else(|| {
                    AgentError::NotFound(format!(
                        "{service} has no revision before {current} to return to; name one with --to-revision"
                    ))
                })?,
        };
        if target == current {
            return Err(AgentError::Invalid(format!(
                "revision {target} already serves {service}; nothing was changed"
            )));
        }
        let spec = self.spec_of(service, target)?;
        let cause = format!("undo: back to revision {target}");
        let origin = format!("revision {target} of {service}");
        self.roll_out(spec, &origin, &req.policy, req.params, cause)
    }

    fn roll_out(
        self: &Arc<Self>,
        spec: ServiceSpec,
        origin: &str,
        policy: &Option<PolicyRef>,
        params: Vec<(String, String)>,
        cause: String,
    ) -> Result<Started> {
        let loaded = self.policy(policy, &spec)?;
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
        if let Err(e) = front_door(&service, &spec) {
            if self.store.revisions(&spec.name)?.is_empty() {
                // Never deployed: its next first deploy may pick another
                // backend.
                self.forget(&spec.name);
            }
            return Err(e);
        }
        let from = self.store.current_revision(&spec.name)?;
        let to = self
            .store
            .add_revision(&spec.name, &spec.to_toml(), &cause)?;
        service.fleet.register(launch(&spec, to));
        let id = self
            .store
            .start_rollout(&spec.name, from, to, &loaded.name)?;
        let inbox = Inbox::default();
        *active = Some(Active {
            id,
            inbox: inbox.clone(),
            paused: false,
        });
        drop(active);
        let mut merged = spec.policy.params.clone();
        for (k, v) in params {
            merged.retain(|(key, _)| *key != k);
            merged.push((k, v));
        }
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
        tokio::spawn(rollout::run(self.clone(), service, loaded, job));
        Ok(Started {
            rollout: Some(id),
            service: service_name,
            from_revision: from,
            to_revision: to,
            message,
        })
    }

    /// Refuse a revision its backend could not start (a command that does
    /// not exist, an image the Docker host lacks, a daemon that does not
    /// answer) before anything changes; `origin` names the spec.
    /// Rollout requests are synchronous (policies compile), so this blocks
    /// its thread, whether a blocking one or a worker of the multi-threaded
    /// runtime.
    fn check_backend(&self, spec: &ServiceSpec, origin: &str) -> Result<()> {
        let runner = self.runner(spec.backend)?;
        let launch = launch(spec, 0);
        let check = async move { runner.check(&launch).await };
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(check))
            .map_err(|e| AgentError::Invalid(format!("{origin}: {e}; nothing was changed")))
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

    /// Send an operator command to the rollout of `service` in progress.
    pub fn control(&self, service: &str, action: Action) -> Result<ControlAnswer> {
        let s = self.existing(service)?;
        let mut active = s.active.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = active.as_mut() else {
            return Err(AgentError::Conflict(format!(
                "no rollout of {service} is in progress: nothing to {}",
                action.name()
            )));
        };
        if !a.inbox.send(action) {
            return Err(AgentError::Conflict(format!(
                "rollout {} of {service} is finishing (its policy has ended; the host may be restoring the fleet): nothing to {}; see `rollout status {service}`",
                a.id,
                action.name()
            )));
        }
        match action {
            Action::Pause => a.paused = true,
            Action::Resume | Action::Abort => a.paused = false,
            Action::Promote => {}
        }
        Ok(ControlAnswer {
            rollout: a.id,
            message: format!(
                "{} sent to rollout {} of {service}; it applies at the policy's next step",
                action.name(),
                a.id
            ),
        })
    }

    fn existing(&self, service: &str) -> Result<Arc<Service>> {
        if !self.store.services()?.iter().any(|s| s == service) {
            return Err(AgentError::NotFound(format!(
                "no service {service} (see `rollout status`)"
            )));
        }
        self.service(service)
    }

    /// Status of one service.
    pub fn status(&self, service: &str) -> Result<ServiceStatus> {
        let s = self.existing(service)?;
        let current = self.store.current_revision(service)?;
        let rollouts = self.store.rollouts(service)?;
        let latest = self.store.revisions(service)?;
        let spec_rev = current.or(latest.last().map(|r| r.number));
        let spec = match spec_rev {
            Some(n) => Some(self.spec_of(service, n)?),
            None => None,
        };
        let (active, paused) = {
            let a = s.active.lock().unwrap_or_else(|p| p.into_inner());
            (
                a.as_ref().map(|a| a.id),
                a.as_ref().is_some_and(|a| a.paused),
            )
        };
        let active = rollouts.iter().find(|r| Some(r.id) == active).cloned();
        let progress = match &active {
            Some(r) => self.store.last_entry(r.id, Kind::Progress)?,
            None => None,
        };
        let door = s.fleet.front_door();
        let traffic = match &door {
            Some(proxy) => {
                let weights = proxy.weights();
                proxy
                    .revisions()
                    .into_iter()
                    .map(|revision| RevisionTraffic {
                        weight: weights.as_ref().map(|w| {
                            w.iter()
                                .filter(|(r, _)| *r == revision)
                                .map(|(_, w)| *w)
                                .sum()
                        }),
                        stats: proxy.stats(&revision, std::time::Duration::from_secs(60)),
                        revision,
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(ServiceStatus {
            front_door: door.map(|p| p.local_addr().to_string()),
            preview: s.fleet.preview().map(|p| p.local_addr().to_string()),
            traffic,
            name: service.to_string(),
            current_revision: current,
            replicas: spec.as_ref().map_or(0, |s| s.replicas),
            backend: spec
                .as_ref()
                .map_or("process", |s| s.backend.name())
                .to_string(),
            instances: s.fleet.list(),
            active,
            paused,
            last: rollouts.last().cloned(),
            progress,
        })
    }

    /// Status of every service.
    pub fn statuses(&self) -> Result<Vec<ServiceStatus>> {
        self.store
            .services()?
            .iter()
            .map(|s| self.status(s))
            .collect()
    }

    /// The revisions of `service` with their causes and diffs (or one, with
    /// its whole spec).
    pub fn history(&self, service: &str, revision: Option<u32>) -> Result<Vec<HistoryEntry>> {
        self.existing(service)?;
        let current = self.store.current_revision(service)?;
        let rollouts = self.store.rollouts(service)?;
        let revisions = self.store.revisions(service)?;
        let mut entries = Vec::new();
        let mut previous: Option<ServiceSpec> = None;
        for r in &revisions {
            let spec = parse_stored(&r.spec)?;
            let diff = previous.as_ref().map(|p| p.diff(&spec)).unwrap_or_default();
            let outcome = rollouts
                .iter()
                .rev()
                .find(|x| x.to_revision == r.number)
                .map(|x| x.state.clone());
            if revision.is_none_or(|n| n == r.number) {
                entries.push(HistoryEntry {
                    number: r.number,
                    cause: r.cause.clone(),
                    created_ms: r.created_ms,
                    current: current == Some(r.number),
                    outcome,
                    diff,
                    spec: revision.map(|_| r.spec.clone()),
                });
            }
            previous = Some(spec);
        }
        if let (Some(n), true) = (revision, entries.is_empty()) {
            return Err(AgentError::NotFound(format!(
                "{service} has no revision {n}"
            )));
        }
        Ok(entries)
    }

    /// Journal entries of rollout `id` after `after`, waiting up to
    /// `wait_ms` for some if there are none and the rollout still runs.
    pub async fn events(&self, id: i64, after: i64, wait_ms: u64) -> Result<Events> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
        loop {
            let changed = self.journal_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let rollout = self.store.rollout(id)?;
            let events = self.store.journal(id, after)?;
            if !events.is_empty() || rollout.state != "running" {
                return Ok(Events { rollout, events });
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Events { rollout, events });
            }
        }
    }

    /// Wait until rollout `id` has ended; how it ended.
    pub async fn wait(&self, id: i64) -> Result<RolloutRow> {
        loop {
            let rollout = self.events(id, i64::MAX, 1_000).await?.rollout;
            if rollout.state != "running" {
                return Ok(rollout);
            }
        }
    }

    /// Stop every instance of every service (the end of `rollout demo` and
    /// of benchmarks); how many were stopped.
    pub async fn stop_all(&self) -> Result<usize> {
        let mut stopped = 0;
        for name in self.store.services()? {
            let fleet = self.service(&name)?.fleet.clone();
            let ids: Vec<_> = fleet.list().into_iter().map(|i| i.id).collect();
            fleet
                .stop(&ids)
                .await
                .map_err(|e| AgentError::Internal(e.to_string()))?;
            stopped += ids.len();
        }
        Ok(stopped)
    }

    /// Prometheus text: per-revision traffic of every front door, and
    /// instances per revision and state.
    pub fn prometheus(&self) -> Result<String> {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "# TYPE rollout_requests_total counter");
        let _ = writeln!(out, "# TYPE rollout_request_errors_total counter");
        let _ = writeln!(out, "# TYPE rollout_upstream_connect_errors_total counter");
        let _ = writeln!(out, "# TYPE rollout_request_latency_seconds summary");
        let _ = writeln!(out, "# TYPE rollout_ready_instances gauge");
        let _ = writeln!(out, "# TYPE rollout_traffic_weight gauge");
        let _ = writeln!(out, "# TYPE rollout_instances gauge");
        for name in self.store.services()? {
            let fleet = self.service(&name)?.fleet.clone();
            if let Some(proxy) = fleet.front_door() {
                proxy.prometheus(&mut out);
            }
            let mut counts: std::collections::BTreeMap<(String, &str), usize> =
                std::collections::BTreeMap::new();
            for i in fleet.list() {
                *counts.entry((i.revision, i.state.name())).or_default() += 1;
            }
            for ((revision, state), n) in counts {
                let _ = writeln!(
                    out,
                    "rollout_instances{{service=\"{name}\",revision=\"{revision}\",state=\"{state}\"}} {n}"
                );
            }
        }
        Ok(out)
    }

    /// Lines an instance logged (running or stopped).
    pub fn logs(&self, instance: &str, lines: u32) -> Result<Vec<String>> {
        for name in self.store.services()? {
            match self.service(&name)?.fleet.logs(instance, lines) {
                Err(crate::backend::BackendError::UnknownInstance(_)) => continue,
                other => return other.map_err(|e| AgentError::Internal(e.to_string())),
            }
        }
        Err(AgentError::NotFound(format!(
            "no instance {instance} (see `rollout ls`)"
        )))
    }
}

/// Put a front door (proxy) on `port` in front of the service's fleet, if
/// its spec has a port and the fleet has none there yet.
fn front_door(service: &Service, spec: &ServiceSpec) -> Result<()> {
    let door = spec.traffic.door();
    let preview = Door {
        sticky: None,
        ..door.clone()
    };
    let fleet = &service.fleet;
    if let Some(proxy) = open_door(spec, fleet.front_door(), spec.port, door)? {
        fleet.attach(proxy);
    }
    let port = spec.traffic.preview_port;
    if let Some(proxy) = open_door(spec, fleet.preview(), port, preview)? {
        fleet.attach_preview(proxy);
    }
    Ok(())
}

/// A proxy for `spec` on `port`, unless `current` already is one; the new
/// door is open before the old one closes.
fn open_door(
    spec: &ServiceSpec,
    current: Option<Arc<Proxy>>,
    port: Option<u16>,
    door: Door,
) -> Result<Option<Arc<Proxy>>> {
    let Some(port) = port else {
        return Ok(None);
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if let Some(p) = &current
        && p.local_addr() == addr
        && *p.door() == door
    {
        return Ok(None);
    }
    if current.as_ref().is_some_and(|p| p.local_addr() == addr) {
        // Same port, new stickiness or timeouts: the listener must move
        // over.
        current.iter().for_each(|p| p.close());
    }
    let proxy = Proxy::bind(&spec.name, addr, door).map_err(|e| {
        AgentError::Invalid(format!(
            "{}: cannot listen on {addr} for its front door: {e}; nothing was changed",
            spec.name
        ))
    })?;
    if let Some(old) = current.filter(|p| p.local_addr() != addr) {
        old.close();
    }
    Ok(Some(proxy))
}

/// A spec the agent stored itself.
fn parse_stored(text: &str) -> Result<ServiceSpec> {
    ServiceSpec::parse(text, "stored revision", Path::new("/"))
        .map_err(|e| AgentError::Internal(format!("a stored spec no longer parses: {e}")))
}

/// How the process backend runs revision `n` of `spec`.
fn launch(spec: &ServiceSpec, n: u32) -> Launch {
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
