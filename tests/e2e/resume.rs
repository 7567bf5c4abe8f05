//! A rollout survives its agent: `kill -9` of the agent at a point of a
//! rolling, canary or blue-green rollout under front-door traffic, a
//! restart, and the same rollout goes on to complete, with no instance
//! orphaned or doubled.

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
fn instance_processes(agent: &Agent) -> Vec<u32> {
    let home = agent.home.path().canonicalize().expect("the home");
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
        On::Process => instance_processes(agent).len(),
        On::Docker | On::Swarm => agent.handles("web").len(),
    }
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
    let v2 = agent.spec("web", "v2", "");
    let mut args = vec!["run", "--spec", v2.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.extend(policy);
    let mut follower = agent
        .command(&args)
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
    // The front door is a process of its own: no request fails while the
    // agent is down, or after it comes back.
    let tally = load.finish();
    assert!(tally.ok > 0, "no request was answered");
    tally.assert_no_failure();
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
    // Every replica of v2, each answering, and nothing else runs.
    let list = agent.rollout(&["ls", "web", "--output", "json"]).json();
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), REPLICAS, "{list:#?}\n{journal}");
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
    wait_until("stopped instances to exit", || running(&agent) == REPLICAS);
}

#[test]
fn a_rolling_update_killed_before_its_first_effect_completes_after_a_restart() {
    killed_after(On::Process, 0, ROLLING);
}

#[test]
fn a_rolling_update_killed_after_its_first_start_completes_after_a_restart() {
    killed_after(On::Process, 1, ROLLING);
}

#[test]
fn a_rolling_update_killed_after_two_effects_completes_after_a_restart() {
    killed_after(On::Process, 2, ROLLING);
}

#[test]
fn a_rolling_update_killed_after_three_effects_completes_after_a_restart() {
    killed_after(On::Process, 3, ROLLING);
}

#[test]
fn a_rolling_update_killed_after_four_effects_completes_after_a_restart() {
    killed_after(On::Process, 4, ROLLING);
}

#[test]
fn a_canary_killed_after_its_first_weights_completes_after_a_restart() {
    killed_after(On::Process, 1, CANARY);
}

#[test]
fn a_canary_killed_after_three_effects_completes_after_a_restart() {
    killed_after(On::Process, 3, CANARY);
}

#[test]
fn a_canary_killed_after_five_effects_completes_after_a_restart() {
    killed_after(On::Process, 5, CANARY);
}

#[test]
fn a_blue_green_rollout_killed_after_its_first_start_completes_after_a_restart() {
    killed_after(On::Process, 1, BLUE_GREEN);
}

#[test]
fn a_blue_green_rollout_killed_after_two_effects_completes_after_a_restart() {
    killed_after(On::Process, 2, BLUE_GREEN);
}

#[test]
fn a_blue_green_rollout_killed_after_three_effects_completes_after_a_restart() {
    killed_after(On::Process, 3, BLUE_GREEN);
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
