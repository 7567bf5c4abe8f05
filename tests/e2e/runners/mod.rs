//! The runner contract: what the fleet manager needs from whatever runs
//! its instances, written once ([`CASES`]) and kept by each runner
//! ([`SUBJECTS`]: processes, Docker containers, Swarm tasks).
//!
//! Each case drives a [`Fleet`](rollout::fleet::Fleet) over the runner
//! under test, with real `examples/demo-app` instances (the binary, or the
//! `rollout-e2e-demo` image), loopback ports the OS chose, and waits on
//! conditions, never on fixed sleeps. The cases of one runner run side by side, each in its own
//! home (store, logs, agent id), and every failing case is named. The
//! Docker and Swarm runners are gated like every Docker test
//! (`docker_util::docker_ready`): without a daemon they fail, saying how
//! to start one, or print `SKIPPED` under `ROLLOUT_SKIP_DOCKER=1`; under
//! `ROLLOUT_REQUIRE_DOCKER=1` they always fail.
//!
//! `cases.rs` holds the cases; `harness.rs` the bed a case runs in, the
//! waits it uses and the runner wrapper that notes the fleet's calls.

mod cases;
mod harness;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use self::harness::Bed;
use crate::docker_util::{demo_images, docker_ready, swarm_ready};
use crate::util::demo_app;

/// The service every case runs.
pub(super) const SERVICE: &str = "web";
/// How long a case waits for a condition: Swarm schedules a task in a
/// second or two, and stops one on another node in up to 4 s.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);
/// The environment variable that marks a case's processes, so they can be
/// told from everyone else's (and none is left behind).
pub(super) const MARK: &str = "ROLLOUT_CONTRACT_HOME";

/// A runner under test.
pub(super) struct Subject {
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
pub(super) enum On {
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
    ("start", |bed| Box::pin(cases::start(bed))),
    ("exit", |bed| Box::pin(cases::exit(bed))),
    ("stop", |bed| Box::pin(cases::stop(bed))),
    ("stop_forces", |bed| Box::pin(cases::stop_forces(bed))),
    ("adopt", |bed| Box::pin(cases::adopt(bed))),
    ("adopt_unready", |bed| Box::pin(cases::adopt_unready(bed))),
    ("sweep", |bed| Box::pin(cases::sweep(bed))),
    ("logs", |bed| Box::pin(cases::logs(bed))),
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
