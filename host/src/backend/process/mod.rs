//! The `process` backend: instances are child processes of the agent.
//!
//! Each instance runs its revision's command in its own process group with
//! `$PORT` (a free loopback port), `$ROLLOUT_SERVICE`, `$ROLLOUT_REVISION` and
//! `$ROLLOUT_INSTANCE`; stdout and stderr go to a per-instance log file,
//! capped by rotation. A monitor task probes instances (the spec's health
//! checks, every `interval` after the readiness delay) and notices exits;
//! every state change is an observation the session journals, and wakes any
//! `wait-ready`. Stopping sends SIGTERM to the group, then SIGKILL after the
//! grace period.
//!
//! Instances outlive the agent: each is recorded in the store with its pid
//! and the process's start time, and a restarted agent re-adopts those that
//! still run (a reused pid has another start time), so nothing is started
//! twice or left behind.

mod os;

pub use os::free_port;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Backend, BackendError, Observation};
use crate::engine::clock::Clock;
use crate::health::{self, HealthSpec, LogScanner};
use crate::model::{
    Instance, InstanceId, InstanceState, Probe, RevisionId, RevisionStats, Verdict,
};
use crate::proxy::{Member, Proxy};
use crate::store::{InstanceRow, Store, unix_ms};

/// How often the monitor looks at the fleet (exits, due probes).
const TICK: Duration = Duration::from_millis(2);
/// How often a stop checks whether its instances are gone.
const STOP_POLL: Duration = Duration::from_millis(1);
/// Logs of stopped instances kept per service (the newest), so `rollout
/// logs` can still say why a rolled-back revision failed.
const KEPT_LOGS: usize = 50;
/// Most log lines one `logs` call returns.
pub const MAX_LOG_LINES: usize = 10_000;
/// How often the monitor checks log sizes.
const ROTATE_EVERY_MS: u64 = 1_000;
/// How long a stop waits after SIGKILL before giving up on an instance.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How to run instances of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Revision id.
    pub revision: RevisionId,
    /// Program to run.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment added to the agent's.
    pub env: BTreeMap<String, String>,
    /// Working directory, if not the agent's.
    pub workdir: Option<PathBuf>,
    /// Health checks.
    pub health: HealthSpec,
    /// SIGTERM to SIGKILL, in ms.
    pub stop_grace_ms: u64,
    /// Log size that triggers rotation.
    pub log_max_bytes: u64,
}

/// One instance as the fleet tracks it.
struct Proc {
    row: InstanceRow,
    launch: Arc<Launch>,
    env: Vec<(String, String)>,
    /// Our child, if this agent started it (re-adopted ones have none).
    child: Option<tokio::process::Child>,
    state: InstanceState,
    /// Why it is not healthy, when it is not.
    reason: Option<String>,
    scanner: Option<LogScanner>,
    next_probe: u64,
    next_rotate_check: u64,
    /// Probes started so far; each result carries its number.
    probes_started: u64,
    /// Number of the newest probe whose result was applied: an older result
    /// that arrives late (a refused connect that lost the race against a
    /// later success) must not overwrite a newer one.
    probe_applied: u64,
}

impl Proc {
    fn instance(&self, now_ms: u64) -> Instance {
        Instance {
            id: self.row.id.clone(),
            revision: self.row.revision.clone(),
            state: self.state,
            address: Some(format!("127.0.0.1:{}", self.row.port)),
            age_ms: now_ms.saturating_sub(self.row.started_ms),
        }
    }

    /// Its health checks, ready to run without the fleet's lock.
    fn check(&mut self) -> Check {
        self.probes_started += 1;
        Check {
            id: self.row.id.clone(),
            seq: self.probes_started,
            launch: self.launch.clone(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], self.row.port)),
            env: self.env.clone(),
        }
    }

    /// The exit status, once the process is gone.
    fn exited(&mut self) -> Option<String> {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => Some(status.to_string()),
                Ok(None) => None,
                Err(e) => Some(format!("cannot be waited for: {e}")),
            },
            None => (!os::alive(self.row.pid, self.row.start_ticks))
                .then(|| "exited (status unknown: started by an earlier agent)".to_string()),
        }
    }

    fn verdict(&self) -> Verdict {
        let why = || self.reason.clone().unwrap_or_default();
        match self.state {
            InstanceState::Ready => Verdict::Healthy,
            InstanceState::Starting => Verdict::Unknown(match &self.reason {
                Some(r) => format!("starting: {r}"),
                None => "starting".to_string(),
            }),
            InstanceState::Unhealthy | InstanceState::Failed => Verdict::Unhealthy(why()),
            InstanceState::Draining | InstanceState::Stopped => {
                Verdict::Unhealthy("stopping".to_string())
            }
        }
    }
}

/// One instance's health checks, detached from the fleet.
struct Check {
    id: InstanceId,
    /// Which probe of the instance this is.
    seq: u64,
    launch: Arc<Launch>,
    addr: std::net::SocketAddr,
    env: Vec<(String, String)>,
}

impl Check {
    async fn run(self) -> Outcome {
        let target = health::Target {
            addr: self.addr,
            env: &self.env,
        };
        let result = health::check(&self.launch.health, &target).await;
        Outcome {
            id: self.id,
            seq: self.seq,
            result,
        }
    }
}

/// What one probe found (`Err` = failing).
struct Outcome {
    id: InstanceId,
    seq: u64,
    result: Result<(), String>,
}

#[derive(Default)]
struct Inner {
    launches: HashMap<RevisionId, Arc<Launch>>,
    procs: BTreeMap<InstanceId, Proc>,
    events: Vec<(Instant, Observation)>,
    next_index: u64,
}

impl Inner {
    fn proc(&mut self, id: &str) -> Result<&mut Proc, BackendError> {
        self.procs
            .get_mut(id)
            .ok_or_else(|| BackendError::UnknownInstance(id.to_string()))
    }

    /// Move an instance to `state`, recording the change; true if it changed.
    fn set(&mut self, id: &str, state: InstanceState, reason: Option<String>) -> bool {
        let Some(p) = self.procs.get_mut(id) else {
            return false;
        };
        p.reason = reason;
        if p.state == state {
            return false;
        }
        p.state = state;
        let o = Observation {
            at_ms: 0,
            instance: p.row.id.clone(),
            revision: p.row.revision.clone(),
            state,
        };
        self.events.push((Instant::now(), o));
        true
    }

    /// Apply a probe's result to its instance, unless a newer probe's
    /// already was; true if the instance's state changed.
    fn apply_probe(&mut self, outcome: Outcome) -> bool {
        let Outcome { id, seq, result } = outcome;
        let id = id.as_str();
        let Some(p) = self.procs.get_mut(id) else {
            return false;
        };
        if seq <= p.probe_applied {
            return false;
        }
        p.probe_applied = seq;
        let logged = p.scanner.as_mut().and_then(LogScanner::scan);
        let state = p.state;
        let result = match logged {
            Some(line) => Err(format!("logged {:?}", shorten(&line, 300))),
            None => result,
        };
        match (state, result) {
            (InstanceState::Starting | InstanceState::Unhealthy, Ok(())) => {
                self.set(id, InstanceState::Ready, None)
            }
            (InstanceState::Ready, Err(why)) => self.set(id, InstanceState::Unhealthy, Some(why)),
            (InstanceState::Starting, Err(why)) if logged_failure(&why) => {
                self.set(id, InstanceState::Unhealthy, Some(why))
            }
            (InstanceState::Starting | InstanceState::Unhealthy, Err(why)) => {
                p.reason = Some(why);
                false
            }
            _ => false,
        }
    }
}

/// At most `max` characters of `line` (a matching log line can be long).
fn shorten(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

fn logged_failure(why: &str) -> bool {
    why.starts_with("logged ")
}

/// The instances of one service, shared by the agent and every rollout.
pub struct ProcessFleet {
    service: String,
    logs: PathBuf,
    store: Arc<Store>,
    inner: Mutex<Inner>,
    changed: Arc<Notify>,
    front_door: Mutex<Option<Arc<Proxy>>>,
    preview: Mutex<Option<Arc<Proxy>>>,
}

impl ProcessFleet {
    /// The fleet of `service`, logging under `dir`, remembering instances in
    /// `store`; its monitor runs until the fleet is dropped.
    pub fn new(service: &str, dir: PathBuf, store: Arc<Store>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let fleet = Arc::new(ProcessFleet {
            service: service.to_string(),
            logs: dir,
            store,
            inner: Mutex::new(Inner::default()),
            changed: Arc::new(Notify::new()),
            front_door: Mutex::new(None),
            preview: Mutex::new(None),
        });
        tokio::spawn(monitor(Arc::downgrade(&fleet)));
        Ok(fleet)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Route the service's traffic through `proxy`: it learns every change
    /// of the ready set, and stops drain through it.
    pub fn attach(&self, proxy: Arc<Proxy>) {
        *self.front_door.lock().unwrap_or_else(|p| p.into_inner()) = Some(proxy);
        self.publish();
    }

    /// The proxy in front of the fleet, if any.
    pub fn front_door(&self) -> Option<Arc<Proxy>> {
        self.front_door
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Route a preview listener's traffic through `proxy` too.
    pub fn attach_preview(&self, proxy: Arc<Proxy>) {
        *self.preview.lock().unwrap_or_else(|p| p.into_inner()) = Some(proxy);
        self.publish();
    }

    /// The preview listener, if any.
    pub fn preview(&self) -> Option<Arc<Proxy>> {
        self.preview
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every proxy in front of the fleet.
    fn doors(&self) -> Vec<Arc<Proxy>> {
        self.front_door()
            .into_iter()
            .chain(self.preview())
            .collect()
    }

    /// Tell the proxy which instances are ready. Under the fleet's lock, so
    /// an older ready set can never overwrite a newer one (lock order: fleet,
    /// then proxy; the proxy never calls the fleet).
    fn publish(&self) {
        let doors = self.doors();
        if doors.is_empty() {
            return;
        }
        let inner = self.lock();
        let members: Vec<Member> = inner
            .procs
            .values()
            .filter(|p| p.state == InstanceState::Ready)
            .map(|p| Member {
                id: p.row.id.clone(),
                revision: p.row.revision.clone(),
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], p.row.port)),
            })
            .collect();
        for door in doors {
            door.set_members(&members);
        }
    }

    /// Know how to run `launch.revision` (replacing an earlier definition).
    pub fn register(&self, launch: Launch) {
        let mut inner = self.lock();
        inner
            .launches
            .insert(launch.revision.clone(), Arc::new(launch));
    }

    /// Take back the instances an earlier agent started; returns the ids of
    /// those adopted and of those found gone (forgotten).
    pub fn adopt(&self) -> Result<(Vec<InstanceId>, Vec<InstanceId>), BackendError> {
        let rows = self.store.instances(&self.service).map_err(failed)?;
        let (mut adopted, mut gone) = (Vec::new(), Vec::new());
        let mut inner = self.lock();
        for row in rows {
            let index = row.id.rsplit('-').next().and_then(|n| n.parse().ok());
            inner.next_index = inner.next_index.max(index.unwrap_or(0));
            let launch = inner.launches.get(&row.revision).cloned();
            match launch {
                Some(launch) if os::alive(row.pid, row.start_ticks) => {
                    let env = instance_env(&self.service, &launch, &row.id, row.port);
                    let scanner = scanner(&launch, self.log_path(&row.id));
                    adopted.push(row.id.clone());
                    let proc = Proc {
                        launch,
                        env,
                        child: None,
                        state: InstanceState::Starting,
                        reason: None,
                        scanner,
                        next_probe: 0,
                        next_rotate_check: 0,
                        probes_started: 0,
                        probe_applied: 0,
                        row,
                    };
                    inner.procs.insert(proc.row.id.clone(), proc);
                }
                _ => {
                    self.store.remove_instance(&row.id).map_err(failed)?;
                    gone.push(row.id);
                }
            }
        }
        Ok((adopted, gone))
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// Every instance not stopped.
    pub fn list(&self) -> Vec<Instance> {
        let now = unix_ms();
        let inner = self.lock();
        inner.procs.values().map(|p| p.instance(now)).collect()
    }

    /// Start `count` instances of `revision`.
    pub fn start(&self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        let mut inner = self.lock();
        let launch = inner
            .launches
            .get(revision)
            .cloned()
            .ok_or_else(|| BackendError::UnknownRevision(revision.to_string()))?;
        let mut started = Vec::new();
        for _ in 0..count {
            inner.next_index += 1;
            let id = format!("{}-{revision}-{}", self.service, inner.next_index);
            let proc = self.spawn(&launch, &id)?;
            // An instance nobody remembers would outlive the agent untracked.
            if let Err(e) = self.store.add_instance(&proc.row) {
                os::signal_group(proc.row.pid, libc::SIGKILL);
                return Err(failed(format!("{id} stopped: cannot record it: {e}")));
            }
            started.push(proc.instance(unix_ms()));
            inner.procs.insert(id, proc);
        }
        Ok(started)
    }

    fn spawn(&self, launch: &Arc<Launch>, id: &str) -> Result<Proc, BackendError> {
        let cannot = |e: std::io::Error| {
            BackendError::Failed(format!("cannot start {id} ({}): {e}", launch.command))
        };
        let port = os::free_port().map_err(cannot)?;
        let log = self.log_path(id);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(cannot)?;
        let err = out.try_clone().map_err(cannot)?;
        let env = instance_env(&self.service, launch, id, port);
        let mut command = tokio::process::Command::new(&launch.command);
        command
            .args(&launch.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: signals reach its children, and a Ctrl-C at
            // the agent's terminal does not reach it.
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &launch.workdir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(cannot)?;
        let pid = child.id().map(i64::from).unwrap_or_default();
        let row = InstanceRow {
            id: id.to_string(),
            service: self.service.clone(),
            revision: launch.revision.clone(),
            pid,
            start_ticks: os::start_ticks(pid).unwrap_or_default(),
            port,
            started_ms: unix_ms(),
        };
        Ok(Proc {
            next_probe: row.started_ms + launch.health.readiness_delay,
            next_rotate_check: row.started_ms + ROTATE_EVERY_MS,
            probes_started: 0,
            probe_applied: 0,
            scanner: scanner(launch, log),
            launch: launch.clone(),
            env,
            child: Some(child),
            state: InstanceState::Starting,
            reason: None,
            row,
        })
    }

    /// SIGTERM each instance's group, SIGKILL after the grace period, and
    /// forget them once gone.
    pub async fn stop(&self, ids: &[InstanceId]) -> Result<(), BackendError> {
        let mut grace = Duration::ZERO;
        let mut live = Vec::new();
        {
            let mut inner = self.lock();
            for id in ids {
                inner.proc(id)?;
            }
            for id in ids {
                let p = inner.proc(id)?;
                grace = grace.max(Duration::from_millis(p.launch.stop_grace_ms));
                if p.state != InstanceState::Failed {
                    p.state = InstanceState::Draining;
                    live.push(p.row.pid);
                }
            }
        }
        // No new requests, and those in flight finish, before the signal;
        // the grace period after it is the instance's own.
        for door in self.doors() {
            door.drain(ids, grace).await;
        }
        let started = Instant::now();
        live.iter()
            .for_each(|&pid| os::signal_group(pid, libc::SIGTERM));
        let mut killed = false;
        loop {
            let running = {
                let mut inner = self.lock();
                let mut running = Vec::new();
                for id in ids {
                    if let Some(p) = inner.procs.get_mut(id)
                        && p.exited().is_none()
                    {
                        running.push(p.row.pid);
                    }
                }
                running
            };
            if running.is_empty() {
                break;
            }
            let waited = started.elapsed();
            if !killed && waited >= grace {
                running
                    .iter()
                    .for_each(|&pid| os::signal_group(pid, libc::SIGKILL));
                killed = true;
            } else if waited >= grace + KILL_WAIT {
                return Err(BackendError::Failed(format!(
                    "{} process(es) still running after SIGKILL",
                    running.len()
                )));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        let mut inner = self.lock();
        for id in ids {
            if let Some(p) = inner.procs.remove(id)
                && p.state != InstanceState::Failed
            {
                // Stragglers the instance forked into its group go too (a
                // failed instance's group was killed when its exit was seen).
                os::signal_group(p.row.pid, libc::SIGKILL);
            }
            self.store.remove_instance(id).map_err(failed)?;
        }
        let running: Vec<PathBuf> = inner.procs.keys().map(|id| self.log_path(id)).collect();
        drop(inner);
        os::prune_logs(&self.logs, &running, KEPT_LOGS);
        Ok(())
    }

    /// The last `lines` lines (at most [`MAX_LOG_LINES`]) an instance wrote,
    /// running or stopped (its log file stays).
    pub fn logs(&self, id: &str, lines: u32) -> Result<Vec<String>, BackendError> {
        let path = self.log_path(id);
        if !self.lock().procs.contains_key(id) && !path.is_file() {
            return Err(BackendError::UnknownInstance(id.to_string()));
        }
        os::tail(&path, (lines as usize).min(MAX_LOG_LINES)).map_err(failed)
    }

    /// Run an instance's health checks now.
    pub async fn probe(&self, id: &str) -> Result<Probe, BackendError> {
        let started = Instant::now();
        let (check, waiting) = {
            let mut inner = self.lock();
            let p = inner.proc(id)?;
            let waiting = unix_ms() < p.row.started_ms + p.launch.health.readiness_delay;
            ((!waiting).then(|| p.check()), waiting)
        };
        if let Some(check) = check {
            let outcome = check.run().await;
            if self.lock().apply_probe(outcome) {
                self.publish();
                self.changed.notify_one();
            }
        }
        let mut inner = self.lock();
        let p = inner.proc(id)?;
        let verdict = match (waiting, p.verdict()) {
            (true, Verdict::Unknown(_)) => Verdict::Unknown("readiness delay".into()),
            (_, v) => v,
        };
        Ok(Probe {
            instance: id.to_string(),
            verdict,
            latency_us: started.elapsed().as_micros() as u64,
        })
    }

    /// One pass of the monitor: notice exits, rotate logs, run due probes.
    async fn tick(&self) {
        let now = unix_ms();
        let mut due = Vec::new();
        let mut changed = false;
        {
            let mut inner = self.lock();
            let ids: Vec<InstanceId> = inner.procs.keys().cloned().collect();
            for id in ids {
                let Some(p) = inner.procs.get_mut(&id) else {
                    continue;
                };
                if matches!(p.state, InstanceState::Failed | InstanceState::Draining) {
                    continue;
                }
                if let Some(status) = p.exited() {
                    let last = os::tail(&self.log_path(&id), 1).unwrap_or_default();
                    let why = match last.first() {
                        Some(line) => format!("exited ({status}); last log line: {line}"),
                        None => format!("exited ({status})"),
                    };
                    // Whatever it left in its group goes now, while the
                    // group id cannot belong to anyone else.
                    os::signal_group(p.row.pid, libc::SIGKILL);
                    changed |= inner.set(&id, InstanceState::Failed, Some(why));
                    continue;
                }
                if now >= p.next_rotate_check {
                    p.next_rotate_check = now + ROTATE_EVERY_MS;
                    rotate_if_large(p, &self.log_path(&id));
                }
                if now >= p.next_probe {
                    p.next_probe = now + p.launch.health.interval.max(1);
                    due.push(p.check());
                }
            }
        }
        if !due.is_empty() {
            changed |= self.run_probes(due).await;
        }
        if changed {
            self.publish();
            self.changed.notify_one();
        }
    }

    /// Probe instances concurrently; true if any changed state.
    async fn run_probes(&self, due: Vec<Check>) -> bool {
        let mut changed = false;
        let mut probes = tokio::task::JoinSet::new();
        for check in due {
            probes.spawn(check.run());
        }
        while let Some(Ok(outcome)) = probes.join_next().await {
            changed |= self.lock().apply_probe(outcome);
        }
        changed
    }

    /// A backend for one rollout timed by `clock`.
    pub fn backend(self: &Arc<Self>, clock: Clock) -> ProcessBackend {
        self.lock().events.clear();
        // Each rollout starts with traffic spread over every ready instance;
        // a policy that weighs traffic sets its weights first.
        if let Some(proxy) = self.front_door() {
            proxy.set_weights(None);
        }
        ProcessBackend {
            fleet: self.clone(),
            clock,
        }
    }
}

fn rotate_if_large(p: &mut Proc, log: &std::path::Path) {
    let size = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    if size > p.launch.log_max_bytes {
        // Read what the pattern check has not seen before it moves away.
        if let Some(s) = p.scanner.as_mut() {
            s.scan();
        }
        if let Err(e) = os::rotate(log) {
            p.reason = Some(format!("log rotation failed: {e}"));
        }
    }
}

fn scanner(launch: &Launch, log: PathBuf) -> Option<LogScanner> {
    let pattern = launch.health.log_pattern.as_ref()?;
    (!pattern.is_empty()).then(|| LogScanner::new(log, pattern.clone()))
}

fn instance_env(service: &str, launch: &Launch, id: &str, port: u16) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = launch
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("PORT".into(), port.to_string()));
    env.push(("ROLLOUT_SERVICE".into(), service.to_string()));
    env.push(("ROLLOUT_REVISION".into(), launch.revision.clone()));
    env.push(("ROLLOUT_INSTANCE".into(), id.to_string()));
    env
}

fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(e.to_string())
}

/// The monitor of a fleet: runs until the fleet is dropped.
async fn monitor(fleet: Weak<ProcessFleet>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        fleet.tick().await;
    }
}

/// The process fleet as one rollout sees it.
pub struct ProcessBackend {
    fleet: Arc<ProcessFleet>,
    clock: Clock,
}

#[async_trait]
impl Backend for ProcessBackend {
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError> {
        Ok(self.fleet.list())
    }

    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        self.fleet.start(revision, count)
    }

    async fn stop(&mut self, ids: &[InstanceId]) -> Result<(), BackendError> {
        self.fleet.stop(ids).await
    }

    async fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, BackendError> {
        self.fleet.logs(id, max_lines)
    }

    async fn probe(&mut self, id: &str) -> Result<Probe, BackendError> {
        self.fleet.probe(id).await
    }

    async fn set_weights(&mut self, weights: &[(RevisionId, u32)]) -> Result<(), BackendError> {
        let proxy = self.fleet.front_door().ok_or_else(|| {
            BackendError::Failed(
                "this service has no front door to weigh traffic in: give it a `port` in its spec"
                    .into(),
            )
        })?;
        proxy.set_weights(Some(weights.to_vec()));
        Ok(())
    }

    async fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        match self.fleet.front_door() {
            Some(proxy) => proxy.stats(revision, Duration::from_millis(window_ms)),
            None => RevisionStats {
                revision: revision.to_string(),
                ..RevisionStats::default()
            },
        }
    }

    fn next_change_ms(&mut self) -> Option<u64> {
        None
    }

    fn take_observations(&mut self) -> Vec<Observation> {
        let events = std::mem::take(&mut self.fleet.lock().events);
        let start = match &self.clock {
            Clock::Real(start) => *start,
            Clock::Virtual(_) => Instant::now(),
        };
        events
            .into_iter()
            .map(|(at, mut o)| {
                o.at_ms = at.saturating_duration_since(start).as_millis() as u64;
                o
            })
            .collect()
    }

    fn changes(&self) -> Option<Arc<Notify>> {
        Some(self.fleet.changed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fleet() -> (tempfile::TempDir, Arc<ProcessFleet>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
        let fleet = ProcessFleet::new("svc", dir.path().join("logs"), store).unwrap();
        (dir, fleet)
    }

    fn shell(revision: &str, script: &str, health: HealthSpec) -> Launch {
        Launch {
            revision: revision.into(),
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::new(),
            workdir: None,
            health,
            stop_grace_ms: 300,
            log_max_bytes: 64 * 1024,
        }
    }

    /// Wait (bounded) until `id` is in `state`.
    async fn until(fleet: &ProcessFleet, id: &str, state: InstanceState) -> Instance {
        for _ in 0..1_000 {
            if let Some(i) = fleet
                .list()
                .into_iter()
                .find(|i| i.id == id && i.state == state)
            {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{id} never became {state:?}: {:?}", fleet.list());
    }

    #[tokio::test]
    async fn an_exit_marks_the_instance_failed_with_its_last_line() {
        let (_dir, fleet) = fleet();
        fleet.register(shell(
            "r1",
            "echo going down; exit 3",
            HealthSpec::default(),
        ));
        let id = fleet.start("r1", 1).unwrap().remove(0).id;
        until(&fleet, &id, InstanceState::Failed).await;
        let probe = fleet.probe(&id).await.unwrap();
        let Verdict::Unhealthy(why) = probe.verdict else {
            panic!("{probe:?}");
        };
        assert!(
            why.contains("exit status: 3") && why.contains("going down"),
            "{why}"
        );
        fleet.stop(std::slice::from_ref(&id)).await.unwrap();
        assert!(fleet.list().is_empty());
        assert_eq!(fleet.logs(&id, 5).unwrap(), ["going down"]);
    }

    #[tokio::test]
    async fn a_late_result_of_an_older_probe_is_ignored() {
        let (_dir, fleet) = fleet();
        fleet.register(shell("r1", "sleep 30", HealthSpec::default()));
        let id = fleet.start("r1", 1).unwrap().remove(0).id;
        let (older, newer) = {
            let mut inner = fleet.lock();
            let p = inner.proc(&id).unwrap();
            (p.check().seq, p.check().seq)
        };
        let outcome = |seq, result| Outcome {
            id: id.clone(),
            seq,
            result,
        };
        let state = {
            let mut inner = fleet.lock();
            // The newer probe found it listening; the older one's refused
            // connect arrives afterwards and must not undo that.
            inner.apply_probe(outcome(newer, Ok(())));
            inner.apply_probe(outcome(older, Err("connection refused".into())));
            inner.proc(&id).unwrap().state
        };
        assert_eq!(state, InstanceState::Ready);
        fleet.stop(&[id]).await.unwrap();
    }

    #[tokio::test]
    async fn stop_escalates_to_sigkill_after_the_grace_period() {
        let (_dir, fleet) = fleet();
        let stubborn = "trap '' TERM; echo up; while true; do sleep 0.05; done";
        fleet.register(shell("r1", stubborn, HealthSpec::default()));
        let id = fleet.start("r1", 1).unwrap().remove(0).id;
        until(&fleet, &id, InstanceState::Ready).await;
        let pid = fleet.store.instances("svc").unwrap()[0].pid;
        let started = Instant::now();
        fleet.stop(std::slice::from_ref(&id)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(os::start_ticks(pid).is_none(), "{pid} still runs");
        assert!(fleet.store.instances("svc").unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_log_pattern_makes_a_ready_instance_unhealthy() {
        let (_dir, fleet) = fleet();
        let health = HealthSpec {
            log_pattern: Some("[FATAL]".into()),
            interval: 5,
            ..HealthSpec::default()
        };
        let script = "sleep 0.2; echo '[FATAL] disk full'; sleep 30";
        fleet.register(shell("r1", script, health));
        let id = fleet.start("r1", 1).unwrap().remove(0).id;
        until(&fleet, &id, InstanceState::Ready).await;
        until(&fleet, &id, InstanceState::Unhealthy).await;
        let verdict = fleet.probe(&id).await.unwrap().verdict;
        assert_eq!(
            verdict,
            Verdict::Unhealthy("logged \"[FATAL] disk full\"".into())
        );
        let states: Vec<_> = fleet.backend(Clock::real()).take_observations();
        assert!(
            states.is_empty(),
            "observations are cleared for a new rollout"
        );
        fleet.stop(&[id]).await.unwrap();
    }

    #[tokio::test]
    async fn logs_are_rotated_past_their_cap() {
        let (dir, fleet) = fleet();
        let script = "i=0; while [ $i -lt 3000 ]; do echo line-$i-padding-padding-padding-padding; i=$((i+1)); done; sleep 30";
        fleet.register(shell("r1", script, HealthSpec::default()));
        let id = fleet.start("r1", 1).unwrap().remove(0).id;
        let rotated = dir.path().join("logs").join(format!("{id}.log.1"));
        for _ in 0..600 {
            if rotated.is_file() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(rotated.is_file(), "no rotation");
        let live = std::fs::metadata(dir.path().join("logs").join(format!("{id}.log"))).unwrap();
        assert!(live.len() <= 64 * 1024, "{}", live.len());
        fleet.stop(&[id]).await.unwrap();
    }

    #[tokio::test]
    async fn a_new_fleet_re_adopts_running_instances_and_forgets_gone_ones() {
        let (dir, fleet) = fleet();
        fleet.register(shell("r1", "echo up; sleep 30", HealthSpec::default()));
        let ids: Vec<_> = fleet
            .start("r1", 2)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        let gone = fleet.store.instances("svc").unwrap()[1].pid;
        os::signal_group(gone, libc::SIGKILL);
        let store = fleet.store.clone();
        drop(fleet);
        // Reap the killed child so its pid no longer looks alive.
        for _ in 0..200 {
            if os::start_ticks(gone).is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let again = ProcessFleet::new("svc", dir.path().join("logs"), store).unwrap();
        again.register(shell("r1", "echo up; sleep 30", HealthSpec::default()));
        let (adopted, forgotten) = again.adopt().unwrap();
        assert_eq!(
            (adopted, forgotten),
            (vec![ids[0].clone()], vec![ids[1].clone()])
        );
        let next = again.start("r1", 1).unwrap().remove(0).id;
        assert_eq!(next, "svc-r1-3", "ids continue after the adopted ones");
        again.stop(&[ids[0].clone(), next]).await.unwrap();
    }
}
