//! The live fleet: real instances on this machine, started and stopped by
//! a [`Runner`] (child processes, or Docker containers), and everything the
//! backends share above it.
//!
//! Each instance gets `$PORT` (a free loopback port), `$ROLLOUT_SERVICE`,
//! `$ROLLOUT_REVISION` and `$ROLLOUT_INSTANCE`; its output lands in a
//! per-instance log file, capped by rotation. A monitor task probes instances
//! (the spec's health checks, every `interval` after the readiness delay) and
//! notices exits; every state change is an observation the session journals,
//! and wakes any `wait-ready`. Stopping drains the instance through the front
//! door, asks it to stop, and forces it after the grace period.
//!
//! Instances outlive the agent: each is recorded in the store, and a
//! restarted agent asks the runner to re-adopt those that still run, so
//! nothing is started twice or left behind.

pub mod exit;
mod logs;
mod runner;

pub use logs::free_port;
pub use runner::{Runner, Running, StartRequest};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use tokio::sync::Notify;

use super::{Backend, BackendError, Observation};
use crate::clock::Clock;
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
/// How often an instance stopped before it was ever ready is sent SIGTERM
/// again while it runs. A process may not handle SIGTERM yet so early,
/// and a container's init then never sees it (the kernel drops a signal
/// sent to a PID namespace's init that has no handler for it), which
/// would hold the stop for the whole grace period; an instance that never
/// served loses nothing to a second signal.
const RESIGNAL_UNREADY: Duration = Duration::from_millis(250);
/// Logs of stopped instances kept per service (the newest), so `rollout
/// logs` can still say why a rolled-back revision failed.
const KEPT_LOGS: usize = 50;
/// Most log lines one `logs` call returns.
pub const MAX_LOG_LINES: usize = 10_000;
/// How often the monitor checks log sizes.
const ROTATE_EVERY_MS: u64 = 1_000;
/// The first gap between probes of a starting instance; it doubles after
/// each probe up to [`STARTUP_GAP_MAX_MS`] (or the spec's `interval`).
const STARTUP_GAP_MS: u64 = 10;
/// The longest gap between probes of a starting instance: its readiness is
/// seen at most this late. A connection refused on the instance's port is
/// all such a probe costs while it starts.
const STARTUP_GAP_MAX_MS: u64 = 25;
/// The same with an `exec` check, which starts a process per probe.
const STARTUP_GAP_MAX_EXEC_MS: u64 = 100;
/// How long a stop waits after SIGKILL before giving up on an instance.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How to run instances of one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Revision id.
    pub revision: RevisionId,
    /// Program to run (process backend), or the image's entrypoint
    /// override (containers; empty keeps the image's).
    pub command: String,
    /// Image to run (container backends).
    pub image: Option<String>,
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

/// The longest gap between probes of an instance starting with `health`.
fn startup_gap_cap(health: &HealthSpec) -> u64 {
    let most = match health.exec {
        Some(_) => STARTUP_GAP_MAX_EXEC_MS,
        None => STARTUP_GAP_MAX_MS,
    };
    health.interval.max(1).min(most)
}

/// One instance as the fleet tracks it.
struct Proc {
    row: InstanceRow,
    launch: Arc<Launch>,
    env: Vec<(String, String)>,
    /// The process or container.
    run: Arc<dyn Running>,
    state: InstanceState,
    /// It has been ready at least once.
    was_ready: bool,
    /// Why it is not healthy, when it is not.
    reason: Option<String>,
    scanner: Option<LogScanner>,
    next_probe: u64,
    /// The gap before the next probe while it is starting.
    startup_gap: u64,
    next_rotate_check: u64,
    /// Probes started so far; each result carries its number.
    probes_started: u64,
    /// Number of the newest probe whose result was applied: an older result
    /// that arrives late (a refused connect that lost the race against a
    /// later success) must not overwrite a newer one.
    probe_applied: u64,
}

impl Proc {
    fn new(
        row: InstanceRow,
        env: Vec<(String, String)>,
        launch: Arc<Launch>,
        run: Arc<dyn Running>,
        log: PathBuf,
    ) -> Proc {
        Proc {
            next_probe: row.started_ms + launch.health.readiness_delay,
            startup_gap: STARTUP_GAP_MS,
            next_rotate_check: 0,
            probes_started: 0,
            probe_applied: 0,
            scanner: scanner(&launch, log),
            env,
            run,
            state: InstanceState::Starting,
            was_ready: false,
            reason: None,
            launch,
            row,
        }
    }

    fn instance(&self, now_ms: u64) -> Instance {
        Instance {
            id: self.row.id.clone(),
            revision: self.row.revision.clone(),
            state: self.state,
            address: Some(self.addr().to_string()),
            age_ms: now_ms.saturating_sub(self.row.started_ms),
        }
    }

    /// Whether it started longer ago than its `start-period`: a starting
    /// instance that fails a check then is unhealthy.
    fn past_start_period(&self) -> bool {
        let period = self.launch.health.start_period;
        period.is_some_and(|ms| unix_ms() >= self.row.started_ms.saturating_add(ms))
    }

    /// Time until its next probe: the spec's `interval`, but a starting
    /// instance is probed sooner (after 10 ms, then twice as long each time
    /// up to 25 ms, 100 ms with an `exec` check, or `interval`), so its
    /// readiness is seen at most that late rather than up to an interval
    /// late (Docker 25's `--health-start-interval` does the same).
    fn probe_gap(&mut self) -> u64 {
        let interval = self.launch.health.interval.max(1);
        if self.state != InstanceState::Starting {
            return interval;
        }
        let cap = startup_gap_cap(&self.launch.health);
        let gap = self.startup_gap.min(cap);
        self.startup_gap = (self.startup_gap * 2).min(cap);
        gap
    }

    /// Where it listens: its port, on loopback unless its runner says it
    /// runs on another machine (a Swarm task on another node).
    fn addr(&self) -> std::net::SocketAddr {
        let host = self
            .run
            .host()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        std::net::SocketAddr::new(host, self.row.port)
    }

    /// Its health checks, ready to run without the fleet's lock.
    fn check(&mut self) -> Check {
        self.probes_started += 1;
        Check {
            id: self.row.id.clone(),
            seq: self.probes_started,
            launch: self.launch.clone(),
            addr: self.addr(),
            env: self.env.clone(),
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
        p.was_ready |= state == InstanceState::Ready;
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
            (InstanceState::Starting | InstanceState::Unhealthy, Err(why))
                if !p.was_ready && p.past_start_period() =>
            {
                let period = p.launch.health.start_period.unwrap_or_default();
                let why =
                    format!("never ready, still failing after start-period ({period} ms): {why}");
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

/// What [`Fleet::adopt`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Recorded instances still running, taken back.
    pub adopted: Vec<InstanceId>,
    /// Recorded instances no longer running, forgotten.
    pub gone: Vec<InstanceId>,
    /// Running instances nobody recorded (an agent died between starting
    /// and recording them), removed.
    pub swept: Vec<InstanceId>,
}

/// The instances of one service, shared by the agent and every rollout.
pub struct Fleet {
    service: String,
    logs: PathBuf,
    store: Arc<Store>,
    runner: Arc<dyn Runner>,
    inner: Mutex<Inner>,
    changed: Arc<Notify>,
    front_door: Mutex<Option<Arc<Proxy>>>,
    preview: Mutex<Option<Arc<Proxy>>>,
}

impl Fleet {
    /// The fleet of `service`, run by `runner`, logging under `dir`,
    /// remembering instances in `store`; its monitor runs until the fleet is
    /// dropped.
    pub fn new(
        service: &str,
        runner: Arc<dyn Runner>,
        dir: PathBuf,
        store: Arc<Store>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let fleet = Arc::new(Fleet {
            service: service.to_string(),
            logs: dir,
            store,
            runner,
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
                addr: p.addr(),
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

    /// Take back the instances an earlier agent started, and remove those
    /// the runner finds that nobody recorded.
    pub async fn adopt(&self) -> Result<Adoption, BackendError> {
        let rows = self.store.instances(&self.service).map_err(failed)?;
        let (mut adopted, mut gone) = (Vec::new(), Vec::new());
        for row in rows {
            let index = row.id.rsplit('-').next().and_then(|n| n.parse().ok());
            let launch = {
                let mut inner = self.lock();
                inner.next_index = inner.next_index.max(index.unwrap_or(0));
                inner.launches.get(&row.revision).cloned()
            };
            let log = self.log_path(&row.id);
            let run = match &launch {
                Some(_) => self.runner.adopt(&row, &log).await?,
                None => None,
            };
            let (Some(launch), Some(run)) = (launch, run) else {
                self.store.remove_instance(&row.id).map_err(failed)?;
                gone.push(row.id);
                continue;
            };
            adopted.push(row.id.clone());
            let env = instance_env(&self.service, &launch, &row.id, row.port);
            let proc = Proc::new(row, env, launch, run, log);
            self.lock().procs.insert(proc.row.id.clone(), proc);
        }
        let swept = self.runner.sweep(&self.service, &adopted).await;
        Ok(Adoption {
            adopted,
            gone,
            swept,
        })
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

    /// Start `count` instances of `revision`, side by side. Those that
    /// started stay (recorded) even when another failed to.
    pub async fn start(&self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        let (launch, first) = {
            let mut inner = self.lock();
            let launch = inner
                .launches
                .get(revision)
                .cloned()
                .ok_or_else(|| BackendError::UnknownRevision(revision.to_string()))?;
            let first = inner.next_index + 1;
            inner.next_index += u64::from(count);
            (launch, first)
        };
        let starts = (first..first + u64::from(count))
            .map(|n| self.start_one(&launch, format!("{}-{revision}-{n}", self.service)));
        let mut started = Vec::new();
        let mut error = None;
        for result in futures_util::future::join_all(starts).await {
            match result {
                Ok(instance) => started.push(instance),
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    async fn start_one(&self, launch: &Arc<Launch>, id: String) -> Result<Instance, BackendError> {
        let cannot = |e: std::io::Error| BackendError::Failed(format!("cannot start {id}: {e}"));
        let port = free_port().map_err(cannot)?;
        let log = self.log_path(&id);
        let env = instance_env(&self.service, launch, &id, port);
        let run = self
            .runner
            .start(StartRequest {
                service: &self.service,
                id: &id,
                launch,
                env: &env,
                log: &log,
            })
            .await?;
        let (pid, start_ticks) = run.identity();
        let row = InstanceRow {
            id: id.clone(),
            service: self.service.clone(),
            revision: launch.revision.clone(),
            pid,
            start_ticks,
            port,
            started_ms: unix_ms(),
        };
        // An instance nobody remembers would outlive the agent untracked.
        if let Err(e) = self.store.add_instance(&row) {
            run.kill().await;
            run.remove().await;
            return Err(failed(format!("{id} stopped: cannot record it: {e}")));
        }
        let proc = Proc::new(row, env, launch.clone(), run, log);
        let instance = proc.instance(unix_ms());
        self.lock().procs.insert(id, proc);
        Ok(instance)
    }

    /// Drain each instance through the front door, ask it to stop, force it
    /// after the grace period, and forget it once gone.
    pub async fn stop(&self, ids: &[InstanceId]) -> Result<(), BackendError> {
        let mut grace = Duration::ZERO;
        let mut live = Vec::new();
        let mut unready = Vec::new();
        let mut all = Vec::new();
        {
            let mut inner = self.lock();
            for id in ids {
                inner.proc(id)?;
            }
            for id in ids {
                let p = inner.proc(id)?;
                grace = grace.max(Duration::from_millis(p.launch.stop_grace_ms));
                all.push(p.run.clone());
                if p.state != InstanceState::Failed {
                    p.state = InstanceState::Draining;
                    live.push(p.run.clone());
                    if !p.was_ready {
                        unready.push(p.run.clone());
                    }
                }
            }
        }
        // No new requests, and those in flight finish, before the signal;
        // the grace period after it is the instance's own.
        for door in self.doors() {
            door.drain(ids, grace).await;
        }
        let give_up =
            grace + KILL_WAIT + all.iter().map(|r| r.stop_delay()).max().unwrap_or_default();
        let started = Instant::now();
        join_all(live.iter().map(|r| r.terminate())).await;
        let mut killed = false;
        let mut signalled = started;
        loop {
            let running: Vec<&Arc<dyn Running>> =
                all.iter().filter(|r| r.exited().is_none()).collect();
            if running.is_empty() {
                break;
            }
            let waited = started.elapsed();
            if !killed && waited >= grace {
                join_all(running.iter().map(|r| r.kill())).await;
                killed = true;
            } else if !killed && signalled.elapsed() >= RESIGNAL_UNREADY {
                signalled = Instant::now();
                let unready = unready.iter().filter(|r| r.exited().is_none());
                join_all(unready.map(|r| r.terminate())).await;
            } else if waited >= give_up {
                return Err(BackendError::Failed(format!(
                    "{} instance(s) still running after a forced stop",
                    running.len()
                )));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        join_all(all.iter().map(|r| r.remove())).await;
        let running: Vec<PathBuf> = {
            let mut inner = self.lock();
            for id in ids {
                inner.procs.remove(id);
                self.store.remove_instance(id).map_err(failed)?;
            }
            inner.procs.keys().map(|id| self.log_path(id)).collect()
        };
        logs::prune_logs(&self.logs, &running, KEPT_LOGS);
        Ok(())
    }

    /// The last `lines` lines (at most [`MAX_LOG_LINES`]) an instance wrote,
    /// running or stopped (its log file stays).
    pub fn logs(&self, id: &str, lines: u32) -> Result<Vec<String>, BackendError> {
        let path = self.log_path(id);
        if !self.lock().procs.contains_key(id) && !path.is_file() {
            return Err(BackendError::UnknownInstance(id.to_string()));
        }
        logs::tail(&path, (lines as usize).min(MAX_LOG_LINES)).map_err(failed)
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
                if let Some(status) = p.run.exited() {
                    let last = logs::tail(&self.log_path(&id), 1).unwrap_or_default();
                    let why = match last.first() {
                        Some(line) => format!("exited ({status}); last log line: {line}"),
                        None => format!("exited ({status})"),
                    };
                    changed |= inner.set(&id, InstanceState::Failed, Some(why));
                    continue;
                }
                if now >= p.next_rotate_check {
                    p.next_rotate_check = now + ROTATE_EVERY_MS;
                    rotate_if_large(p, &self.log_path(&id));
                }
                if now >= p.next_probe {
                    p.next_probe = now + p.probe_gap();
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
    pub fn backend(self: &Arc<Self>, clock: Clock) -> LiveBackend {
        self.lock().events.clear();
        // Each rollout starts with traffic spread over every ready instance;
        // a policy that weighs traffic sets its weights first.
        if let Some(proxy) = self.front_door() {
            proxy.set_weights(None);
        }
        LiveBackend {
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
        if let Err(e) = logs::rotate(log) {
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
async fn monitor(fleet: Weak<Fleet>) {
    loop {
        tokio::time::sleep(TICK).await;
        let Some(fleet) = fleet.upgrade() else {
            return;
        };
        fleet.tick().await;
    }
}

/// The live fleet as one rollout sees it.
pub struct LiveBackend {
    fleet: Arc<Fleet>,
    clock: Clock,
}

#[async_trait]
impl Backend for LiveBackend {
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError> {
        Ok(self.fleet.list())
    }

    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        self.fleet.start(revision, count).await
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
mod tests;
