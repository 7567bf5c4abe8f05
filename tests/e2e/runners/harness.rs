//! Where a case of the runner contract runs ([`Bed`]), the runner wrapper
//! that notes what the fleet asks of an instance ([`Noting`]), and the
//! waits and requests the cases share.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rollout::backend::docker::{Connection, DockerRunner, Owner};
use rollout::backend::process::ProcessRunner;
use rollout::backend::swarm::SwarmRunner;
use rollout::backend::{BackendError, Launch, Runner, Running, StartRequest};
use rollout::door::{Doors, FrontDoor, Opened};
use rollout::fleet::{Fleet, free_port};
use rollout::health::{HealthSpec, HttpCheck};
use rollout::model::{Instance, InstanceId, InstanceState};
use rollout::proxy::Door;
use rollout::store::{InstanceRow, Store};

use super::{MARK, On, PATIENCE, SERVICE, Subject};
use crate::docker_util::{DEMO_IMAGE, docker};
use crate::util::http_get;

/// Where one case runs: a home of its own (store, logs, agent id), and
/// the runner under test. Whatever the case leaves running is removed
/// when it drops, also when the case fails.
pub(super) struct Bed {
    /// The runner under test.
    pub(super) subject: &'static Subject,
    home: tempfile::TempDir,
    /// Its store.
    pub(super) store: Arc<Store>,
    /// demo-app, for the process runner.
    pub(super) program: PathBuf,
}

impl Bed {
    pub(super) fn new(subject: &'static Subject, program: PathBuf) -> Bed {
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
    pub(super) fn runner(&self) -> Arc<dyn Runner> {
        let owner = || Owner::of_home(self.home.path()).expect("an agent id");
        match self.subject.on {
            On::Processes => Arc::new(ProcessRunner),
            On::Containers => Arc::new(DockerRunner::new(Arc::default(), owner())),
            On::Services => Arc::new(SwarmRunner::new(Arc::<Connection>::default(), owner())),
        }
    }

    /// A new fleet over `runner`, on this bed's store and logs.
    pub(super) fn fleet(&self, runner: Arc<dyn Runner>) -> Arc<Fleet> {
        Fleet::new(SERVICE, runner, self.logs(), self.store.clone()).expect("a fleet")
    }

    fn logs(&self) -> PathBuf {
        self.home.path().join("logs")
    }

    /// A front door process on a free loopback port, as the agent starts
    /// one; closed when dropped.
    pub(super) fn front_door(&self) -> OpenDoor {
        let doors = Doors {
            dir: self.home.path().join("doors"),
            program: env!("CARGO_BIN_EXE_rollout").into(),
        };
        let opened = Opened {
            service: SERVICE.into(),
            addr: ([127, 0, 0, 1], free_port().expect("a free port")).into(),
            door: Door::default(),
        };
        OpenDoor(doors.open(opened).expect("a front door"))
    }

    /// Revision `revision` of demo-app with `env` (as `NAME=value`), its
    /// `/healthz` checked every 50 ms.
    pub(super) fn launch(&self, revision: &str, env: &[&str]) -> Launch {
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
    pub(super) fn units(&self) -> Vec<String> {
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
    pub(super) fn assert_nothing_left(&self, fleet: &Fleet) {
        assert_eq!(fleet.list(), [], "the fleet still lists instances");
        let rows = self.store.instances(SERVICE).expect("the records");
        assert!(rows.is_empty(), "still recorded: {rows:?}");
        assert_eq!(self.units(), Vec::<String>::new(), "still running");
    }

    /// Start instance `id` of `launch` with the runner alone, as an agent
    /// that dies before recording it would have: nothing is in the store.
    pub(super) async fn stray(
        &self,
        runner: &dyn Runner,
        launch: &Launch,
        id: &str,
    ) -> Arc<dyn Running> {
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
pub(super) async fn until<T>(what: &str, mut found: impl FnMut() -> Option<T>) -> T {
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
pub(super) async fn until_in(fleet: &Fleet, id: &str, state: InstanceState) {
    until(&format!("{id} {state:?}"), || {
        let list = fleet.list();
        list.iter()
            .any(|i| i.id == id && i.state == state)
            .then_some(())
    })
    .await;
}

/// `GET path` of `addr`, off the runtime's threads.
pub(super) async fn get(addr: &str, path: &str) -> String {
    let (addr, path) = (addr.to_string(), path.to_string());
    tokio::task::spawn_blocking(move || http_get(&addr, &path))
        .await
        .expect("the request thread")
}

/// The ids of `instances`.
pub(super) fn ids(instances: &[Instance]) -> Vec<InstanceId> {
    instances.iter().map(|i| i.id.clone()).collect()
}

/// The runner under test, noting what the fleet asks of each instance
/// it started: `terminate`, `kill`, and `remove` (`removed, ended` once it
/// had ended, `removed, running` if not).
pub(super) struct Noting {
    runner: Arc<dyn Runner>,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Noting {
    pub(super) fn new(runner: Arc<dyn Runner>) -> Arc<Noting> {
        Arc::new(Noting {
            runner,
            calls: Arc::default(),
        })
    }

    /// What the fleet asked, in order.
    pub(super) fn calls(&self) -> Vec<&'static str> {
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

/// A front door process a case opened: closed when dropped, also when the
/// case fails.
pub(super) struct OpenDoor(pub(super) Arc<FrontDoor>);

impl Drop for OpenDoor {
    fn drop(&mut self) {
        self.0.close();
    }
}
