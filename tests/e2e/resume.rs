//! A rollout survives its agent: `kill -9` of the agent at a point of a
//! rolling, canary or blue-green rollout under front-door traffic, a
//! restart, and the same rollout goes on to complete, with no instance
//! orphaned or doubled, ready instances never below min-available
//! (watched from outside) and no request failed. On the process backend,
//! ten points per policy drawn from a fixed seed (`ROLLOUT_E2E_KILL_POINTS`
//! for more); on docker and swarm, five chosen points. A policy changed
//! under a running rollout fails it on replay, and the old revision is
//! restored. A pause holds across a restart, and an abort given while the
//! agent is down applies when it resumes.

use std::time::{Duration, Instant};

use crate::proxy::{Load, front_door, get_request};
use crate::util::{Agent, On, assert_contains, http_get, processes};

/// Replicas of the service (see [`front_door`]).
const REPLICAS: usize = 4;

/// The rolling policy, with a short hold after each batch.
const ROLLING: &[&str] = &["--param", "min-ready-ms=300ms"];
/// The canary policy in three short steps; latency is not what is tested.
const CANARY: &[&str] = &[
    "--policy",
    "canary",
    "--param",
    "steps=20,50,100",
    "--param",
    "hold-ms=500ms",
    "--param",
    "min-requests=10",
    "--param",
    "p99-slack-ms=1s",
];
/// The blue-green policy with short holds.
const BLUE_GREEN: &[&str] = &[
    "--policy",
    "blue-green",
    "--param",
    "post-switch-ms=300ms",
    "--param",
    "scale-down-delay-ms=300ms",
];

/// Wait up to a minute for `done`, polling every 10 ms.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes whose standard output is a log file of the agent's services:
/// its instances, whichever agent started them.
fn instance_processes(home: &std::path::Path) -> Vec<u32> {
    let Ok(home) = home.canonicalize() else {
        return Vec::new();
    };
    let home = home.join("services");
    processes(|pid| {
        std::fs::read_link(format!("/proc/{pid}/fd/1"))
            .is_ok_and(|out| out.starts_with(&home) && out.extension().is_some_and(|e| e == "log"))
    })
}

/// The instances of web that run: processes found by their output (not
/// by the agent's records), or containers and Swarm services found by
/// their labels.
fn running(agent: &Agent) -> usize {
    match agent.on {
        On::Process => instance_processes(agent.home.path()).len(),
        On::Docker | On::Swarm => agent.handles("web").len(),
    }
}

/// The fewest ready instances allowed: the default `min-available` (75%
/// of [`REPLICAS`], rounded up).
const MIN_AVAILABLE: usize = 3;
/// The most instances that may run at once: `max-surge=100%`.
const MOST_RUNNING: usize = 2 * REPLICAS;

/// Kill points per policy on the process backend, unless
/// `ROLLOUT_E2E_KILL_POINTS` says how many.
const POINTS: usize = 10;

/// A small seeded generator (a 64-bit LCG's high bits): the same seed
/// gives the same kill points.
struct Points(u64);

impl Points {
    /// Below `n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// What a thread watching the fleet from outside saw: every 50 ms it asks
/// each recorded instance's `/healthz` itself (and, on the process
/// backend, counts the instance processes), at least [`SAMPLES`] times.
struct Watch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize, usize)>,
}

/// The fewest samples a [`Watch`] takes, however short the test.
const SAMPLES: usize = 20;

impl Watch {
    fn start(agent: &Agent) -> Watch {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let store = agent.store();
        let home = agent.home.path().to_path_buf();
        let on = agent.on;
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut fewest_ready, mut most_running, mut samples) = (usize::MAX, 0, 0);
            while samples < SAMPLES || !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                let rows = store.instances("web").unwrap_or_default();
                let ready = rows.iter().filter(|r| healthy(r.port)).count();
                fewest_ready = fewest_ready.min(ready);
                if on == On::Process {
                    most_running = most_running.max(instance_processes(&home).len());
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (fewest_ready, most_running, samples)
        });
        Watch { stop, thread }
    }

    /// Stop watching and check what was seen.
    fn finish(self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (fewest_ready, most_running, samples) = self.thread.join().expect("the watch");
        assert!(
            fewest_ready >= MIN_AVAILABLE,
            "only {fewest_ready} instance(s) ready at one sample of {samples}"
        );
        assert!(
            most_running <= MOST_RUNNING,
            "{most_running} instances ran at once"
        );
    }
}

/// Whether the instance on `port` answers its health check, within 200 ms.
fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b" 200")
}

/// How many effects rollout `id` has journaled.
fn effects_of(store: &rollout::store::Store, id: i64) -> usize {
    let journal = store.journal(id, 0).unwrap_or_default();
    journal
        .iter()
        .filter(|r| r.entry.kind == rollout::journal::Kind::Effect)
        .count()
}

/// How many journal entries of rollout `id` say `text`.
fn said(store: &rollout::store::Store, id: i64, text: &str) -> usize {
    let journal = store.journal(id, 0).unwrap_or_default();
    journal.iter().filter(|r| r.entry.text == text).count()
}

/// `rollout run` of web `version` with `sets` and `policy`, followed by a
/// client that is killed with the agent.
fn follow(agent: &Agent, version: &str, sets: &[String], policy: &[&str]) -> std::process::Child {
    let spec = agent.spec("web", version, "");
    let mut args = vec!["run", "--spec", spec.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(policy);
    agent
        .command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rollout run")
}

/// Kill the agent once rollout `id` has journaled `effects` effects and
/// `then` more has passed, restart it, and check the rollout completes on
/// `version` with every replica answering and nothing else running.
/// `kill -9` the agent, and the client following its rollout.
fn kill_with(agent: &mut Agent, follower: &mut std::process::Child) {
    agent.kill();
    let _ = follower.kill();
    let _ = follower.wait();
}

/// Wait for rollout `id` to end; its row.
fn ended(store: &rollout::store::Store, id: i64) -> rollout::store::RolloutRow {
    wait_until("the rollout to end", || {
        store.rollout(id).is_ok_and(|r| r.state != "running")
    });
    store.rollout(id).expect("the rollout")
}

fn kill_and_check(
    agent: &mut Agent,
    follower: &mut std::process::Child,
    id: i64,
    effects: usize,
    then: Duration,
    version: &str,
) {
    let store = agent.store();
    wait_until("the effects to kill after", || {
        store.rollout(id).is_ok() && effects_of(&store, id) >= effects
    });
    std::thread::sleep(then);
    kill_with(agent, follower);
    agent.restart();
    let rollout = ended(&store, id);
    let journal: Vec<String> = store
        .journal(id, 0)
        .expect("the journal")
        .iter()
        .map(|r| r.entry.to_string())
        .collect();
    let journal = journal.join("\n");
    assert_eq!(rollout.state, "completed", "{}\n{journal}", rollout.reason);
    assert_serving(
        agent,
        &format!("r{}", rollout.to_revision),
        version,
        &journal,
    );
}

/// Every replica of web is of `revision`, ready and answering as
/// `version`, and nothing else runs (`context` shown on failure).
fn assert_serving(agent: &Agent, revision: &str, version: &str, context: &str) {
    let list = agent.rollout(&["ls", "web", "--output", "json"]).json();
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), REPLICAS, "{list:#?}\n{context}");
    for i in &list {
        assert_eq!(
            (i["revision"].as_str(), i["state"].as_str()),
            (Some(revision), Some("ready"))
        );
        let id = i["id"].as_str().unwrap_or_default();
        assert_contains(
            &http_get(i["address"].as_str().unwrap_or_default(), "/"),
            &format!("{version} {id}"),
        );
    }
    wait_until("stopped instances to exit", || running(agent) == REPLICAS);
}

/// On `on` (when its daemon answers), roll web from v1 to v2 with
/// `policy` under traffic, kill the agent once rollout 2 has journaled
/// `effects` effects, restart it, and check the rollout completes.
fn killed_after(on: On, effects: usize, policy: &[&str]) {
    let ready = match on {
        On::Process => true,
        On::Docker => crate::docker_util::docker_ready(),
        On::Swarm => crate::docker_util::swarm_ready(),
    };
    if !ready {
        return;
    }
    let mut agent = Agent::start_on(on);
    let (sets, addr) = front_door(&agent, &[]);
    let load = Load::start(&addr, 2, Duration::from_millis(2), |_| get_request(""));
    let watch = Watch::start(&agent);
    let mut follower = follow(&agent, "v2", &sets, policy);
    kill_and_check(&mut agent, &mut follower, 2, effects, Duration::ZERO, "v2");
    watch.finish();
    finish(load);
}

/// Check that the front door, a process of its own, failed no request
/// while the agent was down, or after it came back.
fn finish(load: Load) {
    let tally = load.finish();
    assert!(tally.ok > 0, "no request was answered");
    tally.assert_no_failure();
}

/// On the process backend, roll web back and forth between v1 and v2 with
/// `policy` under traffic, [`POINTS`] times, killing the agent in each
/// rollout at a point drawn from `seed`: after up to `effects` effects,
/// then up to 300 ms more. Every rollout resumes and completes; watched
/// from outside, ready instances never fall below min-available, and no
/// request through the front door fails.
fn killed_at_random_points(seed: u64, effects: u64, policy: &[&str]) {
    let points = std::env::var("ROLLOUT_E2E_KILL_POINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(POINTS);
    let mut draw = Points(seed);
    let mut agent = Agent::start();
    let (sets, addr) = front_door(&agent, &[]);
    let load = Load::start(&addr, 2, Duration::from_millis(2), |_| get_request(""));
    let watch = Watch::start(&agent);
    for point in 0..points {
        let version = ["v2", "v1"][point % 2];
        let (after, then) = (draw.below(effects + 1), draw.below(300));
        eprintln!(
            "seed {seed}, point {point}: {version}, killed after {after} effect(s) and {then} ms"
        );
        let mut follower = follow(&agent, version, &sets, policy);
        let id = 2 + point as i64;
        kill_and_check(
            &mut agent,
            &mut follower,
            id,
            after as usize,
            Duration::from_millis(then),
            version,
        );
    }
    watch.finish();
    finish(load);
}

#[test]
fn a_rolling_update_killed_at_random_points_completes_every_time() {
    killed_at_random_points(1, 7, ROLLING);
}

#[test]
fn a_canary_killed_at_random_points_completes_every_time() {
    killed_at_random_points(2, 6, CANARY);
}

#[test]
fn a_blue_green_rollout_killed_at_random_points_completes_every_time() {
    killed_at_random_points(3, 3, BLUE_GREEN);
}

/// A policy whose calls depend on its WASI clocks (a hold measured by
/// `Instant`, a checkpoint label with the wall clock) resumes without
/// diverging: replayed, its clocks read as they did when it ran.
#[test]
fn a_policy_reading_wasi_clocks_replays_as_it_ran() {
    let policy = crate::util::hostile("wasi-clock");
    killed_after(On::Process, 3, &["--policy", &policy]);
}

/// The same on the docker and swarm backends, at fewer points.
macro_rules! on_containers {
    ($($backend:ident: $on:expr),*) => {
        $(
            mod $backend {
                use super::*;

                #[test]
                fn a_rolling_update_killed_after_its_first_start_completes_after_a_restart() {
                    killed_after($on, 1, ROLLING);
                }

                #[test]
                fn a_rolling_update_killed_after_three_effects_completes_after_a_restart() {
                    killed_after($on, 3, ROLLING);
                }

                #[test]
                fn a_canary_killed_after_its_first_weights_completes_after_a_restart() {
                    killed_after($on, 1, CANARY);
                }

                #[test]
                fn a_canary_killed_after_three_effects_completes_after_a_restart() {
                    killed_after($on, 3, CANARY);
                }

                #[test]
                fn a_blue_green_rollout_killed_after_two_effects_completes_after_a_restart() {
                    killed_after($on, 2, BLUE_GREEN);
                }
            }
        )*
    };
}

on_containers!(docker: On::Docker, swarm: On::Swarm);

/// A policy changed under a running rollout (its pinned component swapped
/// in state.db while the agent is down) diverges from the recorded calls
/// when the restarted agent replays it: the rollout fails, naming the call
/// and where the policy was, and the old revision is restored and serves throughout.
#[test]
fn a_policy_changed_under_a_running_rollout_fails_safely_on_replay() {
    let mut agent = Agent::start();
    let (sets, addr) = front_door(&agent, &[]);
    let load = Load::start(&addr, 2, Duration::from_millis(2), |_| get_request(""));
    let watch = Watch::start(&agent);
    let mut follower = follow(&agent, "v2", &sets, ROLLING);
    let store = agent.store();
    wait_until("two effects", || effects_of(&store, 2) >= 2);
    kill_with(&mut agent, &mut follower);
    swap_pinned_policy(&agent, 2, &crate::util::hostile("wasi-clock"));
    agent.restart();
    let rollout = ended(&store, 2);
    assert_eq!(rollout.state, "failed", "{}", rollout.reason);
    assert_contains(
        &rollout.reason,
        "the resumed policy diverged from its recorded calls at call ",
    );
    // Where it was (the step, or that none was reported yet), and what the
    // host did.
    assert_contains(&rollout.reason, ", at ");
    assert_contains(
        &rollout.reason,
        &format!("fleet restored: {REPLICAS} instance(s) of r1 ready"),
    );
    // The old revision is back.
    assert_serving(&agent, "r1", "v1", &rollout.reason);
    watch.finish();
    finish(load);
}

/// Pin the component at `path` to rollout `id` in the agent's state.db
/// (the agent is down), as if its policy had changed under it.
fn swap_pinned_policy(agent: &Agent, id: i64, path: &str) {
    let bytes = std::fs::read(path).expect("the component");
    let digest: String = <sha2::Sha256 as sha2::Digest>::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let db = rusqlite::Connection::open(agent.home.path().join("state.db")).expect("state.db");
    db.execute(
        "INSERT OR IGNORE INTO components (digest, bytes) VALUES (?1, ?2)",
        rusqlite::params![digest, bytes],
    )
    .expect("store the component");
    let changed = db
        .execute(
            "UPDATE rollout_policies SET digest = ?1 WHERE rollout = ?2",
            rusqlite::params![digest, id],
        )
        .expect("pin it");
    assert_eq!(changed, 1, "rollout {id} has no pinned policy");
}

/// A pause holds across a kill -9 of the agent: the resumed rollout pauses
/// again at its first live call, and goes on to complete once resumed.
#[test]
fn a_pause_holds_across_a_restart_of_the_agent() {
    let mut agent = Agent::start();
    let (sets, _addr) = front_door(&agent, &[]);
    let mut follower = follow(&agent, "v2", &sets, ROLLING);
    let store = agent.store();
    wait_until("a first effect", || effects_of(&store, 2) >= 1);
    let paused = agent.rollout(&["pause", "web"]);
    assert_eq!(paused.code, 0, "{paused:#?}");
    wait_until("the pause to apply", || {
        said(&store, 2, "operator: pause") == 1
    });
    let before = effects_of(&store, 2);
    kill_with(&mut agent, &mut follower);
    agent.restart();
    wait_until("the pause to apply again", || {
        said(&store, 2, "operator: pause") == 2
    });
    let status = agent.rollout(&["status", "web"]);
    assert_contains(&status.stdout, "rollout 2 in progress (PAUSED)");
    assert_eq!(effects_of(&store, 2), before, "an effect while paused");
    assert_eq!(store.rollout(2).expect("the rollout").state, "running");
    let resumed = agent.rollout(&["resume", "web"]);
    assert_eq!(resumed.code, 0, "{resumed:#?}");
    let rollout = ended(&store, 2);
    assert_eq!(rollout.state, "completed", "{}", rollout.reason);
}

/// An abort given while the agent is down is recorded in its state and
/// applies when the restarted agent resumes the rollout: it rolls back to
/// the old revision. A promote cannot be recorded so, and says why.
#[test]
fn an_abort_given_while_the_agent_is_down_applies_when_it_resumes() {
    let mut agent = Agent::start();
    let (sets, _addr) = front_door(&agent, &[]);
    let mut follower = follow(&agent, "v2", &sets, ROLLING);
    let store = agent.store();
    wait_until("two effects", || effects_of(&store, 2) >= 2);
    kill_with(&mut agent, &mut follower);
    let promote = agent.rollout(&["promote", "web"]);
    assert_eq!(promote.code, 1, "{promote:#?}");
    assert_contains(&promote.stderr, "the agent is not running");
    assert_contains(&promote.stderr, "a promote needs the agent running");
    let abort = agent.rollout(&["abort", "web"]);
    assert_eq!(abort.code, 0, "{abort:#?}");
    assert_contains(
        &abort.stdout,
        "the agent is not running: abort recorded for rollout 2 of web",
    );
    agent.restart();
    let rollout = ended(&store, 2);
    assert_eq!(rollout.state, "rolled-back", "{}", rollout.reason);
    assert_eq!(said(&store, 2, "operator: abort"), 1);
    assert_serving(&agent, "r1", "v1", &rollout.reason);
}
