//! A rollout survives its agent: `kill -9` of the agent at a point of a
//! rolling update, a restart, and the same rollout goes on to complete,
//! with no instance orphaned or doubled.

use std::time::{Duration, Instant};

use crate::util::{Agent, assert_contains, http_get};

/// Wait up to a minute for `done`, polling every 10 ms.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes whose standard output is a log file in the agent's home: its
/// instances, whichever agent started them.
fn instance_processes(agent: &Agent) -> Vec<u32> {
    let home = agent.home.path().canonicalize().expect("the home");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|p| p.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/fd/1")).is_ok_and(|out| {
                out.starts_with(&home) && out.extension().is_some_and(|e| e == "log")
            })
        })
        .collect()
}

/// Roll web from v1 to v2, kill the agent once rollout 2 has journaled
/// `effects` effects, restart it, and check the rollout completes.
fn killed_after(effects: usize) {
    let mut agent = Agent::start();
    let v1 = agent.spec("web", "v1", "");
    let run = agent.rollout(&["run", "--spec", v1.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:#?}");
    let v2 = agent.spec("web", "v2", "");
    let mut follower = agent
        .command(&[
            "run",
            "--spec",
            v2.to_str().unwrap(),
            "--param",
            "min-ready-ms=300ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rollout run");
    let store = agent.store();
    wait_until("the effects to kill after", || {
        if store.rollout(2).is_err() {
            return false;
        }
        let journal = store.journal(2, 0).unwrap_or_default();
        journal
            .iter()
            .filter(|r| r.entry.kind == rollout::journal::Kind::Effect)
            .count()
            >= effects
    });
    agent.kill();
    let _ = follower.kill();
    let _ = follower.wait();
    agent.restart();
    wait_until("the resumed rollout to end", || {
        store.rollout(2).is_ok_and(|r| r.state != "running")
    });
    let rollout = store.rollout(2).expect("rollout 2");
    let journal: Vec<String> = store
        .journal(2, 0)
        .expect("the journal")
        .iter()
        .map(|r| r.entry.to_string())
        .collect();
    let journal = journal.join("\n");
    assert_eq!(rollout.state, "completed", "{}\n{journal}", rollout.reason);
    assert_contains(&journal, "the agent restarted: resuming the rollout");
    // Three instances, all of v2, each answering, and nothing else runs.
    let list = agent.rollout(&["ls", "web", "--output", "json"]).json();
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), 3, "{list:#?}\n{journal}");
    for i in &list {
        assert_eq!(
            (i["revision"].as_str(), i["state"].as_str()),
            (Some("r2"), Some("ready"))
        );
        let id = i["id"].as_str().unwrap_or_default();
        assert_contains(
            &http_get(i["address"].as_str().unwrap_or_default(), "/"),
            &format!("v2 {id}"),
        );
    }
    wait_until("stopped instances to exit", || {
        instance_processes(&agent).len() == 3
    });
}

#[test]
fn a_rolling_update_killed_before_its_first_effect_completes_after_a_restart() {
    killed_after(0);
}

#[test]
fn a_rolling_update_killed_after_its_first_start_completes_after_a_restart() {
    killed_after(1);
}

#[test]
fn a_rolling_update_killed_after_two_effects_completes_after_a_restart() {
    killed_after(2);
}

#[test]
fn a_rolling_update_killed_after_three_effects_completes_after_a_restart() {
    killed_after(3);
}

#[test]
fn a_rolling_update_killed_after_four_effects_completes_after_a_restart() {
    killed_after(4);
}
