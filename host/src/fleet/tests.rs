//! The fleet manager's own rules, exercised with the process runner. What
//! every runner must do for it (start, exit, stop, adopt, sweep, logs) is
//! the runner contract of `tests/e2e/runners/`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::probe::{Outcome, startup_gap_cap};
use super::watch::apply;
use super::{Adoption, Fleet};
use crate::backend::process::{ProcessRunner, os};
use crate::backend::{Backend, BackendError, Launch, Runner, Running, StartRequest};
use crate::clock::Clock;
use crate::health::HealthSpec;
use crate::model::{Instance, InstanceId, InstanceState, Verdict};
use crate::store::{InstanceRow, Store};

fn fleet() -> (tempfile::TempDir, Arc<Fleet>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
    let fleet = Fleet::new(
        "svc",
        Arc::new(ProcessRunner),
        dir.path().join("logs"),
        store,
    )
    .unwrap();
    (dir, fleet)
}

fn shell(revision: &str, script: &str, health: HealthSpec) -> Launch {
    Launch {
        revision: revision.into(),
        command: "sh".into(),
        image: None,
        args: vec!["-c".into(), script.into()],
        env: BTreeMap::new(),
        workdir: None,
        health,
        stop_grace_ms: 300,
        log_max_bytes: 64 * 1024,
    }
}

/// Wait (bounded) until `id` is in `state`.
async fn until(fleet: &Fleet, id: &str, state: InstanceState) -> Instance {
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
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
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
async fn an_instance_leads_its_own_process_group_and_is_told_its_revision_and_id() {
    let (_dir, fleet) = fleet();
    let script = "echo \"$ROLLOUT_REVISION $ROLLOUT_INSTANCE\"; sleep 30";
    fleet.register(shell("r1", script, HealthSpec::default()));
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
    let pid = fleet.store.instances("svc").unwrap()[0].pid as libc::pid_t;
    // SAFETY: getpgid only reads the process table.
    let (group, ours) = unsafe { (libc::getpgid(pid), libc::getpgid(0)) };
    assert_eq!(group, pid, "{pid} leads its own process group");
    assert_ne!(group, ours);
    let mut lines = Vec::new();
    for _ in 0..1_000 {
        lines = fleet.logs(&id, 5).unwrap();
        if !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(lines, [format!("r1 {id}")]);
    fleet.stop(&[id]).await.unwrap();
}

/// True while `pid` runs with no signal pending (one sent to it would be
/// pending, or have ended it, as soon as kill(2) returned).
fn untouched(pid: i64) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    os::start_ticks(pid).is_some()
        && status
            .lines()
            .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            .all(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|m| m.trim_start_matches('0').is_empty())
            })
}

#[tokio::test]
async fn a_recorded_pid_reused_by_another_process_is_neither_adopted_nor_signalled() {
    let (_dir, fleet) = fleet();
    fleet.register(shell("r1", "sleep 30", HealthSpec::default()));
    use std::os::unix::process::CommandExt;
    // Another program now has the pid of the recorded instance, leading
    // its own process group as an instance would; the recorded process
    // started earlier.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = i64::from(other.id());
    let ticks = os::start_ticks(pid).unwrap();
    fleet
        .store
        .add_instance(&InstanceRow {
            id: "svc-r1-1".into(),
            service: "svc".into(),
            revision: "r1".into(),
            pid,
            start_ticks: ticks - 1,
            port: 1,
            started_ms: 0,
        })
        .unwrap();
    let found = fleet.adopt().await.unwrap();
    assert_eq!(
        found,
        Adoption {
            adopted: Vec::new(),
            gone: vec!["svc-r1-1".into()],
            swept: Vec::new(),
        }
    );
    assert!(fleet.list().is_empty());
    assert!(fleet.store.instances("svc").unwrap().is_empty());
    drop(fleet);
    assert!(untouched(pid), "the unrelated process {pid} was signalled");
    other.kill().unwrap();
    other.wait().unwrap();
}

#[tokio::test]
async fn a_late_result_of_an_older_probe_is_ignored() {
    let (_dir, fleet) = fleet();
    fleet.register(shell("r1", "sleep 30", HealthSpec::default()));
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
    let (older, newer) = {
        let mut inner = fleet.lock();
        let p = inner.get(&id).unwrap();
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
        apply(&mut inner, outcome(newer, Ok(())));
        apply(&mut inner, outcome(older, Err("connection refused".into())));
        inner.get(&id).unwrap().state
    };
    assert_eq!(state, InstanceState::Ready);
    fleet.stop(&[id]).await.unwrap();
}

#[tokio::test]
async fn an_instance_stopped_before_it_was_ready_is_sent_sigterm_again() {
    // Deaf to SIGTERM for its first moments, as a container's init is
    // until it handles the signal, and never ready (nothing listens).
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
    let noting = Wrapping::default();
    let ends = noting.ends.clone();
    let fleet = Fleet::new("svc", Arc::new(noting), dir.path().join("logs"), store).unwrap();
    let deaf = "trap '' TERM; echo deaf; sleep 0.2; trap - TERM; while true; do sleep 0.05; done";
    let health = HealthSpec {
        tcp: true,
        ..HealthSpec::default()
    };
    let mut launch = shell("r1", deaf, health);
    launch.stop_grace_ms = 3_000;
    fleet.register(launch);
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
    for _ in 0..1_000 {
        if !fleet.logs(&id, 1).unwrap_or_default().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    until(&fleet, &id, InstanceState::Starting).await;
    fleet.stop(std::slice::from_ref(&id)).await.unwrap();
    let ends = ends.lock().unwrap().clone();
    assert_eq!(ends, ["killed by signal 15 (SIGTERM)"]);
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
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
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
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
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

#[test]
fn a_starting_instance_is_probed_every_25_ms_at_most_or_100_with_exec() {
    let http = HealthSpec {
        interval: 60_000,
        ..HealthSpec::default()
    };
    assert_eq!(startup_gap_cap(&http), 25);
    let exec = HealthSpec {
        exec: Some(vec!["true".into()]),
        ..http.clone()
    };
    assert_eq!(startup_gap_cap(&exec), 100);
    let fast = HealthSpec {
        interval: 5,
        ..exec
    };
    assert_eq!(startup_gap_cap(&fast), 5);
}

#[tokio::test]
async fn a_starting_instance_is_seen_ready_long_before_its_interval() {
    let (dir, fleet) = fleet();
    let flag = dir.path().join("up");
    let health = HealthSpec {
        exec: Some(vec!["test".into(), "-f".into(), flag.display().to_string()]),
        interval: 60_000,
        ..HealthSpec::default()
    };
    let script = format!("sleep 0.2; touch {}; sleep 30", flag.display());
    fleet.register(shell("r1", &script, health));
    let started = Instant::now();
    let id = fleet.start("r1", 1).await.unwrap().remove(0).id;
    until(&fleet, &id, InstanceState::Ready).await;
    // Probes at 10, 30, 70, 150, 250 ms... after start: ready at most
    // 100 ms after the 200 ms it takes, not a minute later.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    fleet.stop(&[id]).await.unwrap();
}

/// Processes run by [`ProcessRunner`] that say they run on `host` when
/// told, and note how each ended when the fleet removes it.
#[derive(Default)]
struct Wrapping {
    host: Option<std::net::IpAddr>,
    ends: Arc<Mutex<Vec<String>>>,
}

struct Wrapped(
    Arc<dyn Running>,
    Option<std::net::IpAddr>,
    Arc<Mutex<Vec<String>>>,
);

#[async_trait]
impl Running for Wrapped {
    fn identity(&self) -> (i64, u64) {
        self.0.identity()
    }
    fn host(&self) -> Option<std::net::IpAddr> {
        self.1
    }
    fn exited(&self) -> Option<String> {
        self.0.exited()
    }
    async fn terminate(&self) {
        self.0.terminate().await;
    }
    async fn kill(&self) {
        self.0.kill().await;
    }
    async fn remove(&self) {
        let how = self.0.exited().unwrap_or_default();
        self.2.lock().unwrap().push(how);
        self.0.remove().await;
    }
}

#[async_trait]
impl Runner for Wrapping {
    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let run = ProcessRunner.start(request).await?;
        Ok(Arc::new(Wrapped(run, self.host, self.ends.clone())))
    }
    async fn adopt(
        &self,
        _row: &InstanceRow,
        _log: &std::path::Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        Ok(None)
    }
    async fn sweep(
        &self,
        _service: &str,
        _known: &[InstanceId],
        _logs: &std::path::Path,
    ) -> Vec<InstanceId> {
        Vec::new()
    }
}

#[tokio::test]
async fn an_instance_on_another_machine_is_reached_at_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
    let elsewhere = Wrapping {
        host: Some([10, 9, 8, 7].into()),
        ..Wrapping::default()
    };
    let fleet = Fleet::new("svc", Arc::new(elsewhere), dir.path().join("logs"), store).unwrap();
    fleet.register(shell("r1", "sleep 30", HealthSpec::default()));
    let started = fleet.start("r1", 1).await.unwrap().remove(0);
    let address = started.address.unwrap_or_default();
    assert!(address.starts_with("10.9.8.7:"), "{address}");
    fleet.stop(&[started.id]).await.unwrap();
}

/// A process runner that notes, as each start begins, whether the store
/// already records the instance.
struct RecordedFirst(Arc<Store>, Arc<Mutex<Vec<bool>>>);

#[async_trait]
impl Runner for RecordedFirst {
    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let rows = self.0.instances(request.service).unwrap();
        let recorded = rows.iter().any(|r| r.id == request.id);
        self.1.lock().unwrap().push(recorded);
        ProcessRunner.start(request).await
    }
    async fn adopt(
        &self,
        row: &InstanceRow,
        log: &std::path::Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        ProcessRunner.adopt(row, log).await
    }
    async fn sweep(
        &self,
        service: &str,
        known: &[InstanceId],
        logs: &std::path::Path,
    ) -> Vec<InstanceId> {
        ProcessRunner.sweep(service, known, logs).await
    }
}

#[tokio::test]
async fn an_instance_is_recorded_before_it_is_spawned_and_its_identity_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let runner = RecordedFirst(store.clone(), seen.clone());
    let fleet = Fleet::new(
        "svc",
        Arc::new(runner),
        dir.path().join("logs"),
        store.clone(),
    )
    .unwrap();
    fleet.register(shell("r1", "sleep 30", HealthSpec::default()));
    let started = fleet.start("r1", 2).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![true, true]);
    let rows = store.instances("svc").unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.pid > 0 && r.start_ticks > 0),
        "{rows:?}"
    );
    // An intent whose spawn never happened (the agent died first) is
    // forgotten by the next agent, never adopted.
    let mut intent = rows[0].clone();
    intent.id = "svc-r1-9".into();
    intent.pid = 0;
    intent.start_ticks = 0;
    store.add_instance(&intent).unwrap();
    let ids: Vec<_> = started.into_iter().map(|i| i.id).collect();
    let again = Fleet::new(
        "svc",
        Arc::new(ProcessRunner),
        dir.path().join("logs"),
        store.clone(),
    )
    .unwrap();
    again.register(shell("r1", "sleep 30", HealthSpec::default()));
    let found = again.adopt().await.unwrap();
    assert_eq!(found.gone, vec!["svc-r1-9".to_string()]);
    assert_eq!(found.adopted.len(), 2);
    again.stop(&ids).await.unwrap();
}
