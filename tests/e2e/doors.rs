//! Front doors are processes of their own (`rollout door`): they serve
//! while the agent is down, a restarted agent takes them over, a killed
//! one is started again with what it knew, and `rollout rm` closes it.

use std::time::{Duration, Instant};

use crate::proxy::{Load, front_door, get_request};
use crate::util::{Agent, assert_contains, http_get};

/// Wait up to a minute for `done`, polling every 10 ms.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The one front door process of `agent`'s home.
fn the_door(agent: &Agent) -> u32 {
    let doors = agent.door_processes();
    assert_eq!(doors.len(), 1, "one front door process: {doors:?}");
    doors[0]
}

#[test]
fn the_front_door_serves_while_the_agent_is_down_and_the_next_agent_takes_it_over() {
    let mut agent = Agent::start();
    let (_, addr) = front_door(&agent, &[]);
    let door = the_door(&agent);
    let load = Load::start(&addr, 2, Duration::from_millis(2), |_| get_request(""));
    agent.kill();
    // No agent: the door still answers from the ready instances.
    for _ in 0..20 {
        assert_contains(&http_get(&addr, "/"), "v1 ");
    }
    agent.restart();
    assert_eq!(
        the_door(&agent),
        door,
        "the door was taken over, not replaced"
    );
    let status = agent.rollout(&["status", "web", "--output", "json"]).json();
    assert_eq!(
        status[0]["front_door"].as_str(),
        Some(addr.as_str()),
        "{status:#}"
    );
    // The traffic it counted while the agent was down is still counted.
    let served = status[0]["traffic"][0]["stats"]["requests"].as_u64();
    assert!(served.is_some_and(|n| n >= 20), "{status:#}");
    assert_contains(&http_get(&addr, "/"), "v1 ");
    let tally = load.finish();
    assert!(tally.ok > 0, "no request was answered");
    tally.assert_no_failure();
}

#[test]
fn a_killed_front_door_is_started_again_with_the_ready_set_it_had() {
    let agent = Agent::start();
    let (_, addr) = front_door(&agent, &[]);
    let door = the_door(&agent);
    // SAFETY: signals the front door's process only.
    assert_eq!(unsafe { libc::kill(door as libc::pid_t, libc::SIGKILL) }, 0);
    wait_until("a new front door", || {
        agent.door_processes().iter().any(|&p| p != door)
    });
    wait_until("the new door to answer from the instances", || {
        std::net::TcpStream::connect(&addr).is_ok() && http_get(&addr, "/").contains("v1 ")
    });
    // It knows every ready instance, not only some.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let answer = http_get(&addr, "/");
        if let Some(id) = answer.split_whitespace().nth(1) {
            seen.insert(id.to_string());
        }
    }
    assert_eq!(seen.len(), 4, "answered by {seen:?}");
}

#[test]
fn removing_a_service_closes_its_front_door() {
    let agent = Agent::start();
    let (_, addr) = front_door(&agent, &[]);
    let door = the_door(&agent);
    let rm = agent.rollout(&["rm", "web"]);
    assert_eq!(rm.code, 0, "{rm:#?}");
    wait_until("the door process to exit", || {
        !std::path::Path::new(&format!("/proc/{door}/exe")).exists()
    });
    assert!(
        agent.door_processes().is_empty(),
        "no door is started again"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "nothing listens on {addr}"
    );
}
