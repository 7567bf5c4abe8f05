//! What only the swarm backend does: instances are one-replica Swarm
//! services found again by label. The rest of its suite is shared
//! (`on_each_backend!`).

use crate::docker_util::{DEMO_IMAGE, docker, swarm_ready};
use crate::proxy::free_port;
use crate::util::{Agent, On, assert_contains};

#[test]
fn a_missing_image_is_refused_before_any_change() {
    if !swarm_ready() {
        return;
    }
    let agent = Agent::start_on(On::Swarm);
    let spec = agent.spec("web", "no-such-tag", "");
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(
        &run.stderr,
        &format!("image {DEMO_IMAGE}:no-such-tag is not on the Docker host"),
    );
    assert!(agent.handles("web").is_empty());
}

#[test]
fn task_logs_are_read_and_unrecorded_services_removed_on_restart() {
    if !swarm_ready() {
        return;
    }
    let mut agent = Agent::start_on(On::Swarm);
    let v1 = agent.spec("web", "v1", "");
    assert_eq!(
        agent.rollout(&["run", "--spec", v1.to_str().unwrap()]).code,
        0
    );
    let logs = agent.rollout(&["logs", "web-r1-2"]);
    assert_contains(&logs.stdout, "demo-app v1 listening on 127.0.0.1:");
    assert_contains(&logs.stdout, "(instance web-r1-2)");

    // A service of this agent's, created by an agent that died before
    // recording it.
    agent.kill();
    let ours = format!("rollout.agent={}", agent.id());
    let home = format!("rollout.home={}", agent.home.path().display());
    let port = format!("PORT={}", free_port());
    let image = format!("{DEMO_IMAGE}:v1");
    let orphan = docker(&[
        "service",
        "create",
        "-d",
        "-q",
        "--network",
        "host",
        "--restart-condition",
        "none",
        "--label",
        &ours,
        "--label",
        &home,
        "--label",
        "rollout.service=web",
        "--label",
        "rollout.instance=web-r1-99",
        "--env",
        &port,
        &image,
    ]);
    assert_eq!(agent.handles("web").len(), 4);
    agent.restart();
    let left = agent.handles("web");
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(
        !agent.runs(&orphan),
        "the unrecorded service is still there"
    );
    let ls = agent.rollout(&["ls", "web"]).stdout;
    assert!(!ls.contains("web-r1-99"), "{ls}");
}
