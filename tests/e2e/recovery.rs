//! Recovery after interruptions (issue 15): an agent killed or stopped
//! mid-rollout (the restarted agent resumes the rollout, see resume.rs),
//! instances killed by hand. The commands an operator reaches for
//! (`rollout run`, `rollout undo`, `rollout status`) must work from
//! whatever is left, and the client must say the rollout was interrupted
//! (exit 4), not that nothing changed.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Agent, assert_contains};

/// Poll `cond` every 25 ms for up to `secs` seconds.
fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}");
}

/// (revision, state) of each instance of `service`, from `rollout ls`.
fn fleet(agent: &Agent, service: &str) -> Vec<(String, String)> {
    let run = agent.rollout(&["ls", service, "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let list = run.json();
    let field = |i: &serde_json::Value, k: &str| i[k].as_str().unwrap_or_default().to_string();
    list.as_array()
        .expect("a list")
        .iter()
        .map(|i| (field(i, "revision"), field(i, "state")))
        .collect()
}

/// How many instances of `revision` are ready.
fn ready(agent: &Agent, service: &str, revision: &str) -> usize {
    let fleet = fleet(agent, service);
    fleet
        .iter()
        .filter(|(r, s)| r == revision && s == "ready")
        .count()
}

/// Every instance of `service` is a ready one of `revision`, `replicas` of them.
fn assert_only(agent: &Agent, service: &str, revision: &str, replicas: usize) {
    let fleet = fleet(agent, service);
    let on = fleet
        .iter()
        .filter(|(r, s)| r == revision && s == "ready")
        .count();
    assert_eq!((on, fleet.len()), (replicas, replicas), "{fleet:?}");
}

fn deploy(agent: &Agent, version: &str) {
    let spec = agent.spec("web", version, "");
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
}

/// Roll `web` to `version` a batch a second, followed by a client in the
/// background.
fn roll_slowly(agent: &Agent, version: &str) -> Child {
    let spec = agent.spec("web", version, "");
    agent
        .command(&[
            "run",
            "--spec",
            spec.to_str().unwrap(),
            "--param",
            "min-ready-ms=1s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Deploy v1, then roll to v2 slowly, followed by a client; returns the
/// client once an instance of r2 is ready (the fleet a mix).
fn mid_rollout(agent: &Agent) -> Child {
    deploy(agent, "v1");
    let follower = roll_slowly(agent, "v2");
    wait_until(30, "an instance of r2 ready", || {
        ready(agent, "web", "r2") >= 1
    });
    follower
}

fn output(mut child: Child) -> (Option<i32>, String) {
    // A client that never returns is the bug: give up after 2 minutes.
    wait_until(120, "the client to return", || {
        child.try_wait().expect("wait").is_some()
    });
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Follow the rollout in progress of `service` to its end; `rollout status
/// --watch` exits 0 when it completed.
fn watch_to_completion(agent: &Agent, service: &str) {
    let watch = agent.rollout(&["status", service, "--watch"]);
    assert_eq!(watch.code, 0, "{watch:#?}");
}

#[test]
fn an_agent_killed_mid_rollout_is_reported_interrupted_and_the_rollout_resumes() {
    let mut agent = Agent::start();
    let follower = mid_rollout(&agent);
    agent.kill();
    let (code, text) = output(follower);
    assert_eq!(code, Some(4), "{text}");
    assert_contains(&text, "interrupted");
    assert_contains(&text, "rollout status web");

    agent.restart();
    let status = agent.rollout(&["status", "web"]);
    assert_contains(&status.stdout, "rollout 2 in progress");
    watch_to_completion(&agent, "web");
    assert_only(&agent, "web", "r2", 3);
    // Back to the previous revision that completed (r1's spec, as r3).
    let undo = agent.rollout(&["undo", "web"]);
    assert_eq!(undo.code, 0, "{undo:#?}");
    assert_only(&agent, "web", "r3", 3);
    // And forward again from there.
    deploy(&agent, "v2");
    assert_only(&agent, "web", "r4", 3);
}

#[test]
fn a_run_while_the_resumed_rollout_runs_is_refused_then_converges() {
    let mut agent = Agent::start();
    let follower = mid_rollout(&agent);
    agent.kill();
    assert_eq!(output(follower).0, Some(4));
    agent.restart();
    let spec = agent.spec("web", "v3", "");
    let refused = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert_contains(&refused.stderr, "rollout 2 of web is in progress");
    watch_to_completion(&agent, "web");
    deploy(&agent, "v3");
    assert_only(&agent, "web", "r3", 3);
}

#[test]
fn sigterm_mid_rollout_stops_at_a_safe_point_and_the_restart_resumes_it() {
    let mut agent = Agent::start();
    let follower = mid_rollout(&agent);
    let status = agent.terminate();
    assert!(status.success(), "{status:?}");
    let (code, text) = output(follower);
    assert_eq!(code, Some(4), "{text}");
    let store = agent.store();
    let rollout = store.rollouts("web").unwrap().pop().unwrap();
    assert_eq!(rollout.state, "interrupted", "{rollout:?}");
    let journal = store.journal(rollout.id, 0).unwrap();
    assert!(
        journal
            .iter()
            .any(|r| r.entry.text.contains("agent stopping")),
        "{journal:#?}"
    );
    // The restarted agent resumes it, and it completes.
    agent.restart();
    watch_to_completion(&agent, "web");
    assert_eq!(
        agent.store().rollout(rollout.id).unwrap().state,
        "completed"
    );
    assert_only(&agent, "web", "r2", 3);
}

#[test]
fn instances_killed_by_hand_do_not_block_the_next_rollout() {
    let agent = Agent::start();
    deploy(&agent, "v1");
    for pid in agent.pids("web").into_iter().take(2) {
        // SAFETY: signals the instance's process group only.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    wait_until(30, "two failed instances", || {
        fleet(&agent, "web")
            .iter()
            .filter(|(_, s)| s == "failed")
            .count()
            == 2
    });
    let v2 = agent.spec("web", "v2", "");
    let run = agent.rollout(&["run", "--spec", v2.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_only(&agent, "web", "r2", 3);
}

/// Remove the agent's state (as a lost disk or a wrong restore would).
fn lose_state(agent: &Agent) {
    for file in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(agent.home.path().join(file));
    }
}

on_each_backend!(a_lost_state_with_instances_still_running_is_refused_and_names_them);

fn a_lost_state_with_instances_still_running_is_refused_and_names_them(mut agent: Agent) {
    deploy(&agent, "v1");
    let handles = agent.handles("web");
    assert_eq!(handles.len(), 3, "{handles:?}");
    agent.kill();
    lose_state(&agent);
    let refused = agent.start_refused();
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert_contains(&refused.stderr, "3 instance(s) of this home still run");
    assert_contains(&refused.stderr, "web-r1-1");
    assert_contains(&refused.stderr, "--stop-unknown");
    // An empty file is the same lost state.
    std::fs::write(agent.home.path().join("state.db"), b"").unwrap();
    assert_eq!(agent.start_refused().code, 1);
    // Told to, the agent stops them and starts.
    agent.restart_with(&["--stop-unknown"]);
    for handle in &handles {
        wait_until(30, "the unknown instance to stop", || !agent.runs(handle));
    }
    deploy(&agent, "v1");
    assert_eq!(agent.handles("web").len(), 3);
}

#[test]
fn a_damaged_state_says_what_to_do_and_that_instances_may_still_run() {
    let mut agent = Agent::start();
    deploy(&agent, "v1");
    let pids = agent.pids("web");
    agent.kill();
    lose_state(&agent);
    std::fs::write(agent.home.path().join("state.db"), vec![0x5a; 8192]).unwrap();
    let refused = agent.start_refused();
    // The harness cleans up through the state: stop the instances here.
    for pid in pids {
        // SAFETY: signals the instance's process group only.
        unsafe {
            libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
        }
    }
    lose_state(&agent);
    assert_eq!(refused.code, 1, "{refused:#?}");
    assert_contains(&refused.stderr, "may still be running");
    assert_contains(&refused.stderr, ".damaged");
}

/// Fill the file system of `dir` with a file until a write fails; the file.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 20, 4096, 1] {
        let bytes = vec![0u8; chunk];
        while file.write_all(&bytes).is_ok() {}
    }
    let _ = file.sync_all();
    path
}

#[test]
fn a_full_disk_during_a_rollout_fails_it_with_a_message_and_the_agent_still_answers() {
    let Some(agent) = Agent::start_on_tmpfs(32) else {
        eprintln!("skipped: this machine does not let the test mount a tmpfs");
        return;
    };
    let follower = mid_rollout(&agent);
    let filler = fill(agent.home.path());
    let (code, text) = output(follower);
    assert_eq!(code, Some(3), "{text}");
    assert_contains(&text, "could not write its state");
    // The agent still answers, and works again once there is room.
    std::fs::remove_file(filler).unwrap();
    let status = agent.rollout(&["status", "web"]);
    assert_eq!(status.code, 0, "{status:#?}");
    deploy(&agent, "v3");
    assert_only(&agent, "web", "r3", 3);
}
