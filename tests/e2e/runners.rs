//! The runner contract: what the fleet manager needs from whatever runs
//! its instances, written once ([`CASES`]) and kept by each runner
//! ([`SUBJECTS`]: processes, Docker containers, Swarm tasks).
//!
//! Each case drives a [`Fleet`] over the runner under test, with real
//! `examples/demo-app` instances (the binary, or the `rollout-e2e-demo`
//! image), loopback ports the OS chose, and waits on conditions, never on
//! fixed sleeps. The cases of one runner run side by side, each in its own
//! home (store, logs, agent id), and every failing case is named. The
//! Docker and Swarm runners are gated like every Docker test
//! (`docker_util::docker_ready`): without a daemon they fail, saying how
//! to start one, or print `SKIPPED` under `ROLLOUT_SKIP_DOCKER=1`; under
//! `ROLLOUT_REQUIRE_DOCKER=1` they always fail.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rollout::backend::docker::{Connection, DockerRunner, Owner};
use rollout::backend::process::ProcessRunner;
use rollout::backend::swarm::SwarmRunner;
use rollout::backend::{BackendError, Launch, Runner, Running, StartRequest};
use rollout::fleet::{Adoption, Fleet, free_port};
use rollout::health::{HealthSpec, HttpCheck};
use rollout::model::{InstanceId, InstanceState, Verdict};
use rollout::proxy::{Door, Proxy};
use rollout::store::{InstanceRow, Store};

use crate::docker_util::{DEMO_IMAGE, demo_images, docker, docker_ready, swarm_ready};
use crate::util::{demo_app, http_get};

/// The service every case runs.
const SERVICE: &str = "web";
/// How long a case waits for a condition: Swarm schedules a task in a
/// second or two, and stops one on another node in up to 4 s.
const PATIENCE: Duration = Duration::from_secs(60);
/// The environment variable that marks a case's processes, so they can be
/// told from everyone else's (and none is left behind).
const MARK: &str = "ROLLOUT_CONTRACT_HOME";

/// A runner under test.
struct Subject {
    /// Its name in failures.
    name: &'static str,
    /// Whether it can run here (Docker answers, a Swarm is up), checked on
    /// the test's thread: see `docker_util::docker_ready`.
    ready: fn() -> bool,
    /// What platform it runs on.
    on: On,
}

/// What a runner starts instances on, and how a case finds them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    Processes,
    Containers,
    Services,
}

/// Every runner the fleet has.
const SUBJECTS: &[Subject] = &[
    Subject {
        name: "process",
        ready: || true,
        on: On::Processes,
    },
    Subject {
        name: "docker",
        ready: docker_ready,
        on: On::Containers,
    },
    Subject {
        name: "swarm",
        ready: swarm_ready,
        on: On::Services,
    },
];

/// One case of the contract.
type Case = fn(Bed) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// The contract, case by case.
const CASES: &[(&str, Case)] = &[
    ("start", |bed| Box::pin(start(bed))),
    ("exit", |bed| Box::pin(exit(bed))),
    ("stop", |bed| Box::pin(stop(bed))),
    ("stop_forces", |bed| Box::pin(stop_forces(bed))),
    ("adopt", |bed| Box::pin(adopt(bed))),
    ("adopt_unready", |bed| Box::pin(adopt_unready(bed))),
    ("sweep", |bed| Box::pin(sweep(bed))),
    ("logs", |bed| Box::pin(logs(bed))),
];

#[test]
fn the_process_runner_keeps_the_contract() {
    keeps_the_contract(&SUBJECTS[0]);
}

#[test]
fn the_docker_runner_keeps_the_contract() {
    keeps_the_contract(&SUBJECTS[1]);
}

#[test]
fn the_swarm_runner_keeps_the_contract() {
    keeps_the_contract(&SUBJECTS[2]);
}

/// Run every case against `subject`, side by side; fail naming each case
/// that failed, with its message.
fn keeps_the_contract(subject: &'static Subject) {
    if !(subject.ready)() {
        return;
    }
    if subject.on != On::Processes {
        demo_images();
    }
    let program = demo_app();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("a runtime");
    let failed: Vec<String> = runtime.block_on(async {
        let cases = CASES.iter().map(|(name, case)| {
            let bed = Bed::new(subject, program.clone());
            (name, tokio::spawn(case(bed)))
        });
        let mut failed = Vec::new();
        for (name, task) in cases.collect::<Vec<_>>() {
            if let Err(e) = task.await {
                let why = match e.try_into_panic() {
                    Ok(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                failed.push(format!("{name}: {why}"));
            }
        }
        failed
    });
    assert!(
        failed.is_empty(),
        "the {} runner breaks the contract:\n  {}",
        subject.name,
        failed.join("\n  ")
    );
}

/// Where one case runs: a home of its own (store, logs, agent id), and
/// the runner under test. Whatever the case leaves running is removed
/// when it drops, also when the case fails.
struct Bed {
    subject: &'static Subject,
    home: tempfile::TempDir,
    store: Arc<Store>,
    program: PathBuf,
}

impl Bed {
    fn new(subject: &'static Subject, program: PathBuf) -> Bed {
        let home = tempfile::tempdir().expect("a temporary home");
        let store = Arc::new(Store::open(&home.path().join("state.db")).expect("a store"));
        Bed {
            subject,
            home,
            store,
            program,
        }
    }

    /// A new runner of the kind under test, as a new agent makes it.
    fn runner(&self) -> Arc<dyn Runner> {
        let owner = || Owner::of_home(self.home.path()).expect("an agent id");
        match self.subject.on {
            On::Processes => Arc::new(ProcessRunner),
            On::Containers => Arc::new(DockerRunner::new(Arc::default(), owner())),
            On::Services => Arc::new(SwarmRunner::new(Arc::<Connection>::default(), owner())),
        }
    }

    /// A new fleet over `runner`, on this bed's store and logs.
    fn fleet(&self, runner: Arc<dyn Runner>) -> Arc<Fleet> {
        Fleet::new(SERVICE, runner, self.logs(), self.store.clone()).expect("a fleet")
    }

    fn logs(&self) -> PathBuf {
        self.home.path().join("logs")
    }

    /// Revision `revision` of demo-app with `env` (as `NAME=value`), its
    /// `/healthz` checked every 50 ms.
    fn launch(&self, revision: &str, env: &[&str]) -> Launch {
        let mut env: std::collections::BTreeMap<String, String> = env
            .iter()
            .map(|kv| kv.split_once('=').expect("NAME=value"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.insert(MARK.into(), self.home.path().display().to_string());
        let (command, image) = match self.subject.on {
            On::Processes => (self.program.display().to_string(), None),
            On::Containers | On::Services => (String::new(), Some(format!("{DEMO_IMAGE}:v1"))),
        };
        Launch {
            revision: revision.into(),
            command,
            image,
            args: Vec::new(),
            env,
            workdir: None,
            health: HealthSpec {
                http: Some(HttpCheck {
                    path: "/healthz".into(),
                    status: 200,
                }),
                interval: 50,
                ..HealthSpec::default()
            },
            stop_grace_ms: 3_000,
            log_max_bytes: 1 << 20,
        }
    }

    /// The instances the platform holds for this bed, whatever any fleet
    /// knows: live processes marked with its home, its containers (running
    /// or not), its Swarm services. Sorted instance ids.
    fn units(&self) -> Vec<String> {
        let home = self.home.path();
        let mut ids = match self.subject.on {
            On::Processes => marked_processes(home)
                .into_iter()
                .map(|(_, id)| id)
                .collect(),
            On::Containers => {
                let filter = format!("label=rollout.home={}", home.display());
                let format = "{{.Label \"rollout.instance\"}}";
                let out = docker(&["ps", "-a", "--filter", &filter, "--format", format]);
                out.lines().map(str::to_string).collect()
            }
            On::Services => {
                let filter = format!("label=rollout.home={}", home.display());
                let names = docker(&["service", "ls", "-q", "--filter", &filter]);
                let names: Vec<&str> = names.split_whitespace().collect();
                if names.is_empty() {
                    Vec::new()
                } else {
                    let format = "{{index .Spec.Labels \"rollout.instance\"}}";
                    let args = [&["service", "inspect", "--format", format][..], &names].concat();
                    docker(&args).lines().map(str::to_string).collect()
                }
            }
        };
        ids.sort();
        ids
    }

    /// Nothing left of the instances `fleet` stopped: it lists none, the
    /// store holds none, the platform runs none.
    fn assert_nothing_left(&self, fleet: &Fleet) {
        assert_eq!(fleet.list(), [], "the fleet still lists instances");
        let rows = self.store.instances(SERVICE).expect("the records");
        assert!(rows.is_empty(), "still recorded: {rows:?}");
        assert_eq!(self.units(), Vec::<String>::new(), "still running");
    }

    /// Start instance `id` of `launch` with the runner alone, as an agent
    /// that dies before recording it would have: nothing is in the store.
    async fn stray(&self, runner: &dyn Runner, launch: &Launch, id: &str) -> Arc<dyn Running> {
        let mut env: Vec<(String, String)> = launch
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let port = free_port().expect("a free port");
        env.extend([
            ("PORT".into(), port.to_string()),
            ("ROLLOUT_SERVICE".into(), SERVICE.into()),
            ("ROLLOUT_REVISION".into(), launch.revision.clone()),
            ("ROLLOUT_INSTANCE".into(), id.into()),
        ]);
        std::fs::create_dir_all(self.logs()).expect("the log directory");
        let log = self.logs().join(format!("{id}.log"));
        let request = StartRequest {
            service: SERVICE,
            id,
            launch,
            env: &env,
            log: &log,
        };
        runner.start(request).await.expect("the stray starts")
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for (pid, _) in marked_processes(self.home.path()) {
            // SAFETY: kill(2) of a process group this bed started.
            unsafe {
                libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
            }
        }
        crate::docker_util::remove_containers_of(self.home.path());
    }
}

/// Live processes whose environment holds [`MARK`]`=home`: (pid, instance).
fn marked_processes(home: &Path) -> Vec<(i64, String)> {
    let mark = format!("{MARK}={}", home.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let vars: Vec<String> = environ
            .split(|&b| b == 0)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect();
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .unwrap_or_default()
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(true);
        if zombie || !vars.contains(&mark) {
            continue;
        }
        let id = vars
            .iter()
            .find_map(|v| v.strip_prefix("ROLLOUT_INSTANCE="))
            .unwrap_or_default();
        found.push((pid, id.to_string()));
    }
    found
}

/// Wait until `found` gives something, at most [`PATIENCE`]; panic naming
/// `what` after that.
async fn until<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(t) = found() {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until instance `id` of `fleet` is in `state`.
async fn until_in(fleet: &Fleet, id: &str, state: InstanceState) {
    until(&format!("{id} {state:?}"), || {
        let list = fleet.list();
        list.iter()
            .any(|i| i.id == id && i.state == state)
            .then_some(())
    })
    .await;
}

/// `GET path` of `addr`, off the runtime's threads.
async fn get(addr: &str, path: &str) -> String {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .expect("the request thread")
}

/// The ids of `instances`.
fn ids(instances: &[rollout::model::Instance]) -> Vec<InstanceId> {
    instances.iter().map(|i| i.id.clone()).collect()
}

/// Start: each instance of a batch runs with its own port and the
/// environment the fleet gives it, and is recorded.
async fn start(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["VERSION=c1"]));
    let started = fleet.start("r1", 3).await.expect("three instances start");
    let ids = ids(&started);
    assert_eq!(ids, ["web-r1-1", "web-r1-2", "web-r1-3"]);
    let mut ports: Vec<u16> = bed
        .store
        .instances(SERVICE)
        .expect("the records")
        .iter()
        .map(|r| r.port)
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "one port each: {ports:?}");
    for id in &ids {
        until_in(&fleet, id, InstanceState::Ready).await;
    }
    assert_eq!(bed.units(), ids, "what runs is what was started");
    for instance in fleet.list() {
        let addr = instance.address.expect("an address");
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap();
        assert!(ports.contains(&port), "{addr} is not on a recorded port");
        // demo-app answers `VERSION ROLLOUT_INSTANCE` on `$PORT`.
        assert_eq!(get(&addr, "/").await, format!("c1 {}\n", instance.id));
    }
    fleet.stop(&ids).await.expect("they stop");
    bed.assert_nothing_left(&fleet);
}

/// Exit: an instance that ends on its own is failed, with its exit status.
async fn exit(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["EXIT_AFTER_MS=300"]));
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Failed).await;
    let probe = fleet.probe(&id).await.expect("a probe");
    let Verdict::Unhealthy(why) = probe.verdict else {
        panic!("a failed instance probed {probe:?}");
    };
    assert!(why.starts_with("exited (exit status: 1)"), "{why}");
    // Its last words are in its log, as it wrote them.
    until("its last line in its log", || {
        let lines = fleet.logs(&id, 1).ok()?;
        (lines == ["[ERROR] exiting (EXIT_AFTER_MS)"]).then_some(())
    })
    .await;
    fleet
        .stop(&[id])
        .await
        .expect("a failed instance is removed");
    bed.assert_nothing_left(&fleet);
}

/// Stop: the front door drains the instance (a request in flight is
/// answered), then it is asked to stop (SIGTERM) and ends, unforced; it
/// is removed and forgotten.
async fn stop(bed: Bed) {
    let noted = Noting::new(bed.runner());
    let fleet = bed.fleet(noted.clone());
    let door =
        Proxy::bind(SERVICE, ([127, 0, 0, 1], 0).into(), Door::default()).expect("a front door");
    fleet.attach(door.clone());
    let env = ["VERSION=c1", "LATENCY_MS=700", "LOG_REQUESTS=1"];
    let mut launch = bed.launch("r1", &env);
    // Longer than Swarm takes to stop a task on another node: the stop
    // must end on SIGTERM alone.
    launch.stop_grace_ms = 10_000;
    fleet.register(launch);
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let addr = door.local_addr().to_string();
    let request = tokio::spawn(async move { get(&addr, "/").await });
    until("the request at the instance", || {
        let lines = fleet.logs(&id, 5).ok()?;
        lines
            .iter()
            .any(|l| l.contains("request for /"))
            .then_some(())
    })
    .await;
    fleet
        .stop(std::slice::from_ref(&id))
        .await
        .expect("it stops");
    let answer = request.await.expect("the request");
    assert_eq!(
        answer,
        format!("c1 {id}\n"),
        "the request in flight was cut"
    );
    assert_eq!(noted.calls(), ["terminate", "removed, ended"]);
    bed.assert_nothing_left(&fleet);
}

/// Stop, forced: an instance deaf to SIGTERM is killed after the grace
/// period.
async fn stop_forces(bed: Bed) {
    let noted = Noting::new(bed.runner());
    let fleet = bed.fleet(noted.clone());
    let mut deaf = bed.launch("r1", &["IGNORE_SIGTERM=1"]);
    deaf.stop_grace_ms = 500;
    fleet.register(deaf);
    let id = fleet.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let asked = Instant::now();
    fleet.stop(&[id]).await.expect("it stops");
    assert!(asked.elapsed() >= Duration::from_millis(500), "no grace");
    assert_eq!(noted.calls(), ["terminate", "kill", "removed, ended"]);
    bed.assert_nothing_left(&fleet);
}

/// Adopt: a new runner (as after an agent restart) takes back the recorded
/// instances that still run, forgets the one that ended, starts nothing
/// twice, and new instances' numbers follow the adopted ones.
async fn adopt(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let (good, bad) = (
        bed.launch("r1", &["VERSION=c1"]),
        bed.launch("r2", &["EXIT_AFTER_MS=100"]),
    );
    first.register(good.clone());
    first.register(bad.clone());
    let kept = ids(&first.start("r1", 2).await.expect("two start"));
    let ended = first.start("r2", 1).await.expect("one starts").remove(0).id;
    for id in &kept {
        until_in(&first, id, InstanceState::Ready).await;
    }
    until_in(&first, &ended, InstanceState::Failed).await;
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(good);
    again.register(bad);
    let mut found = again.adopt().await.expect("adoption");
    found.adopted.sort();
    assert_eq!(
        found,
        Adoption {
            adopted: kept.clone(),
            gone: vec![ended],
            swept: Vec::new(),
        }
    );
    assert_eq!(
        bed.units(),
        kept,
        "nothing started twice, nothing ended left"
    );
    for id in &kept {
        until_in(&again, id, InstanceState::Ready).await;
        let addr = again.list().into_iter().find(|i| &i.id == id).unwrap();
        assert_eq!(get(&addr.address.unwrap(), "/").await, format!("c1 {id}\n"));
    }
    let next = again.start("r1", 1).await.expect("one more").remove(0).id;
    assert_eq!(next, "web-r1-4", "numbers follow the adopted ones");
    let all = ids(&again.list());
    again.stop(&all).await.expect("they stop");
    bed.assert_nothing_left(&again);
}

/// Adopt, unready: an instance recorded but not ready yet when its agent
/// restarts (on Swarm, its task maybe not even running) is taken back and
/// becomes ready, not forgotten.
async fn adopt_unready(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let slow = bed.launch("r1", &["VERSION=c1", "READY_AFTER_MS=1000"]);
    first.register(slow.clone());
    let id = first.start("r1", 1).await.expect("it starts").remove(0).id;
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(slow);
    let found = again.adopt().await.expect("adoption");
    let adopted = vec![id.clone()];
    assert_eq!(
        found,
        Adoption {
            adopted,
            ..Adoption::default()
        }
    );
    until_in(&again, &id, InstanceState::Ready).await;
    assert_eq!(bed.units(), std::slice::from_ref(&id));
    again.stop(&[id]).await.expect("it stops");
    bed.assert_nothing_left(&again);
}

/// Sweep: an instance of ours nobody recorded (its agent died before it
/// could) is removed by the next agent; another agent's is left alone.
async fn sweep(bed: Bed) {
    let first = bed.fleet(bed.runner());
    let launch = bed.launch("r1", &[]);
    first.register(launch.clone());
    let recorded = first.start("r1", 1).await.expect("it starts").remove(0).id;
    until_in(&first, &recorded, InstanceState::Ready).await;
    let stray = bed.stray(bed.runner().as_ref(), &launch, "web-r1-99").await;
    let other = Bed::new(bed.subject, bed.program.clone());
    let theirs = other.launch("r1", &[]);
    let theirs = other
        .stray(other.runner().as_ref(), &theirs, "web-r1-98")
        .await;
    for (bed, id) in [(&bed, "web-r1-99"), (&other, "web-r1-98")] {
        let running = || bed.units().contains(&id.to_string()).then_some(());
        until(&format!("{id} running"), running).await;
    }
    drop(first);

    let again = bed.fleet(bed.runner());
    again.register(launch);
    let found = again.adopt().await.expect("adoption");
    assert_eq!(
        found,
        Adoption {
            adopted: vec![recorded.clone()],
            gone: Vec::new(),
            swept: vec!["web-r1-99".into()],
        }
    );
    until("the stray removed", || {
        (bed.units() == std::slice::from_ref(&recorded)).then_some(())
    })
    .await;
    assert_eq!(other.units(), ["web-r1-98"], "another agent's was touched");
    for run in [stray, theirs] {
        run.kill().await;
        run.remove().await;
    }
    again.stop(&[recorded]).await.expect("it stops");
    bed.assert_nothing_left(&again);
}

/// Logs: the lines an instance wrote, in order, as it wrote them, the last
/// `n` of them; still there once it stopped.
async fn logs(bed: Bed) {
    let fleet = bed.fleet(bed.runner());
    fleet.register(bed.launch("r1", &["VERSION=c1", "LOG_REQUESTS=1"]));
    let instance = fleet.start("r1", 1).await.expect("it starts").remove(0);
    let id = instance.id;
    until_in(&fleet, &id, InstanceState::Ready).await;
    let addr = instance.address.expect("an address");
    for _ in 0..2 {
        get(&addr, "/").await;
    }
    let port = addr.rsplit(':').next().unwrap_or_default();
    let request = "[INFO] request for / (LOG_REQUESTS), answered in 0 ms";
    let lines = until("three lines", || {
        let lines = fleet.logs(&id, 10).ok()?;
        (lines.len() >= 3).then_some(lines)
    })
    .await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let listening = format!(":{port} (instance {id})");
    assert!(
        lines[0].starts_with("[INFO] demo-app c1 listening on ") && lines[0].ends_with(&listening),
        "{lines:?}"
    );
    assert_eq!(lines[1..], [request, request]);
    assert_eq!(fleet.logs(&id, 1).unwrap(), [request]);
    fleet
        .stop(std::slice::from_ref(&id))
        .await
        .expect("it stops");
    bed.assert_nothing_left(&fleet);
    assert_eq!(fleet.logs(&id, 10).unwrap(), lines, "kept after the stop");
    assert!(matches!(
        fleet.logs("web-r1-9", 1),
        Err(BackendError::UnknownInstance(_))
    ));
}

/// The runner under test, noting what the fleet asks of each instance
/// it started: `terminate`, `kill`, and `remove` (`removed, ended` once it
/// had ended, `removed, running` if not).
struct Noting {
    runner: Arc<dyn Runner>,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Noting {
    fn new(runner: Arc<dyn Runner>) -> Arc<Noting> {
        Arc::new(Noting {
            runner,
            calls: Arc::default(),
        })
    }

    /// What the fleet asked, in order.
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Runner for Noting {
    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let run = self.runner.start(request).await?;
        Ok(Arc::new(Noted(run, self.calls.clone())))
    }
    async fn adopt(
        &self,
        row: &InstanceRow,
        log: &Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        self.runner.adopt(row, log).await
    }
    async fn sweep(&self, service: &str, known: &[InstanceId], logs: &Path) -> Vec<InstanceId> {
        self.runner.sweep(service, known, logs).await
    }
}

/// An instance of [`Noting`].
struct Noted(Arc<dyn Running>, Arc<Mutex<Vec<&'static str>>>);

impl Noted {
    fn note(&self, call: &'static str) {
        self.1.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Running for Noted {
    fn identity(&self) -> (i64, u64) {
        self.0.identity()
    }
    fn host(&self) -> Option<std::net::IpAddr> {
        self.0.host()
    }
    fn exited(&self) -> Option<String> {
        self.0.exited()
    }
    fn stop_delay(&self) -> Duration {
        self.0.stop_delay()
    }
    async fn terminate(&self) {
        self.note("terminate");
        self.0.terminate().await;
    }
    async fn kill(&self) {
        self.note("kill");
        self.0.kill().await;
    }
    async fn remove(&self) {
        match self.0.exited() {
            Some(_) => self.note("removed, ended"),
            None => self.note("removed, running"),
        }
        self.0.remove().await;
    }
}
