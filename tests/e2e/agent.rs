//! The agent driven through the CLI: real instances of `examples/demo-app`
//! (child processes, and containers for the tests run on each backend),
//! real HTTP health checks.

use std::collections::HashMap;

use serde_json::Value;

use crate::docker_util::{ManagerPaused, nodes_of, swarm_ready, swarm_workers};
use crate::util::{Agent, On, assert_contains, hostile, http_get};

on_each_backend! {
    rolling_v1_to_v2_keeps_three_to_four_ready_and_records_history,
    error_in_logs_rolls_back_and_every_instance_serves_v2_again,
    a_revision_that_exits_at_start_is_rolled_back,
    a_revision_failing_its_check_past_the_start_period_is_rolled_back,
    abort_during_a_rollout_rolls_back,
    a_killed_agent_re_adopts_its_instances_without_duplicates,
}

/// Instances as `rollout ls --output json` lists them: (id, revision, state, address).
fn instances(agent: &Agent, service: &str) -> Vec<(String, String, String, String)> {
    let run = agent.rollout(&["ls", service, "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let list = run.json();
    list.as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            let field = |k: &str| i[k].as_str().unwrap_or_default().to_string();
            (
                field("id"),
                field("revision"),
                field("state"),
                field("address"),
            )
        })
        .collect()
}

/// Every instance of `service` is ready, on `revision`, and answers
/// `version` over HTTP; there are `replicas` of them.
fn assert_serving(agent: &Agent, service: &str, revision: &str, version: &str) {
    let list = instances(agent, service);
    assert_eq!(list.len(), 3, "{list:#?}");
    for (id, rev, state, addr) in list {
        assert_eq!((rev.as_str(), state.as_str()), (revision, "ready"), "{id}");
        assert_contains(&http_get(&addr, "/"), &format!("{version} {id}"));
    }
}

/// Deploy `spec`, expecting exit `code`; the JSON summary.
fn run(agent: &Agent, args: &[&str], code: i32) -> Value {
    let mut all = vec!["run"];
    all.extend(args);
    all.extend(["--output", "json"]);
    let run = agent.rollout(&all);
    assert_eq!(run.code, code, "{run:#?}");
    run.json()
}

/// Replay a rollout's journal from the fleet before it (`before`, all
/// ready): (most instances, fewest ready) at any point.
fn extremes(journal: &Value, before: &[String]) -> (usize, usize) {
    let mut fleet: HashMap<String, bool> = before.iter().map(|id| (id.clone(), true)).collect();
    let (mut most, mut fewest) = (fleet.len(), fleet.len());
    for e in journal.as_array().expect("journal") {
        let (kind, text) = (
            e["kind"].as_str().unwrap_or(""),
            e["text"].as_str().unwrap_or(""),
        );
        match kind {
            "effect" if text.starts_with("start ") => {
                let ids = text.split(" -> ").nth(1).unwrap_or("");
                for id in ids.split_whitespace() {
                    fleet.insert(id.to_string(), false);
                }
            }
            "effect" if text.starts_with("stop ") => {
                for id in text["stop ".len()..].split_whitespace() {
                    assert!(fleet.remove(id).is_some(), "stopped unknown {id}");
                }
            }
            "fleet" => {
                let id = text.split_whitespace().next().unwrap_or("");
                fleet.insert(id.to_string(), text.ends_with(" is ready"));
            }
            _ => {}
        }
        most = most.max(fleet.len());
        fewest = fewest.min(fleet.values().filter(|r| **r).count());
    }
    (most, fewest)
}

fn rolling_v1_to_v2_keeps_three_to_four_ready_and_records_history(agent: Agent) {
    let v1 = agent.spec("web", "v1", "");
    run(&agent, &["--spec", v1.to_str().unwrap()], 0);
    assert_serving(&agent, "web", "r1", "v1");

    let v2 = agent.spec("web", "v2", "");
    let before: Vec<String> = instances(&agent, "web").into_iter().map(|i| i.0).collect();
    let summary = run(&agent, &["--spec", v2.to_str().unwrap()], 0);
    assert_eq!(summary["outcome"], "completed");
    let (most, fewest) = extremes(&summary["journal"], &before);
    assert!(most <= 4, "at most 4 instances, saw {most}");
    assert!(fewest >= 3, "at least 3 ready, saw {fewest}");
    assert_serving(&agent, "web", "r2", "v2");

    let history = agent
        .rollout(&["history", "web", "--output", "json"])
        .json();
    let revisions = history.as_array().unwrap();
    assert_eq!(revisions.len(), 2);
    assert_eq!(revisions[1]["current"], true);
    // The cause names what changed: VERSION, or the image's tag.
    let cause = revisions[1]["cause"].as_str().unwrap_or_default();
    assert_contains(cause, "-> \"");
    assert_contains(cause, "v2\"");
}

fn error_in_logs_rolls_back_and_every_instance_serves_v2_again(agent: Agent) {
    run(
        &agent,
        &["--spec", agent.spec("web", "v2", "").to_str().unwrap()],
        0,
    );
    let v3 = agent.spec("web", "v3", r#", ERROR_AFTER_MS = "100""#);
    let summary = run(&agent, &["--spec", v3.to_str().unwrap()], 2);
    assert_eq!(summary["outcome"], "rolled-back");
    assert_contains(summary["reason"].as_str().unwrap(), "[ERROR]");
    assert_serving(&agent, "web", "r1", "v2");
    let status = agent.rollout(&["status", "web"]);
    assert_contains(&status.stdout, "web: revision 1, 3/3 ready");
    assert_contains(&status.stdout, "rolled-back");
}

fn a_revision_that_exits_at_start_is_rolled_back(agent: Agent) {
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let bad = agent.spec("web", "v2", r#", CRASH_AT_START = "1""#);
    let summary = run(&agent, &["--spec", bad.to_str().unwrap()], 2);
    assert_contains(&summary["reason"].to_string(), "exit");
    assert_serving(&agent, "web", "r1", "v1");
}

/// Without a `start-period` this revision would wait out the progress
/// deadline, as in `a_revision_never_healthy_within_the_progress_deadline_is_rolled_back`.
fn a_revision_failing_its_check_past_the_start_period_is_rolled_back(agent: Agent) {
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let bad = agent.spec("web", "v2", r#", UNHEALTHY_AFTER_MS = "0""#);
    let set = ["--set", "health.start-period=1500ms"];
    let summary = run(
        &agent,
        &[&["--spec", bad.to_str().unwrap()][..], &set].concat(),
        2,
    );
    assert_eq!(summary["outcome"], "rolled-back");
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert_contains(
        reason,
        "never ready, still failing after start-period (1500 ms)",
    );
    assert!(!reason.contains("deadline"), "{reason}");
    assert_serving(&agent, "web", "r1", "v1");
}

/// On a Swarm of more than one node (`scripts/swarm-second-node.sh`,
/// which CI runs): v2 rolls out while the manager takes no new task, so
/// every new instance runs on another node, reached at that node's
/// address, its logs read and its stop made through the manager; then a
/// v3 that logs `[ERROR]` is rolled back to them.
#[test]
fn rolling_and_rolling_back_work_across_swarm_nodes() {
    if !swarm_ready() {
        return;
    }
    if swarm_workers().is_empty() {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: rolling_and_rolling_back_work_across_swarm_nodes needs a second Swarm node \
              (scripts/swarm-second-node.sh prints the ROLLOUT_E2E_SWARM_WORKERS to export)\n",
        );
        return;
    }
    let agent = Agent::start_on(On::Swarm);
    let spec = |version: &str| agent.spec("web", version, "");
    run(&agent, &["--spec", spec("v1").to_str().unwrap()], 0);
    {
        let paused = ManagerPaused::new();
        let summary = run(&agent, &["--spec", spec("v2").to_str().unwrap()], 0);
        assert_eq!(summary["outcome"], "completed");
        let nodes = nodes_of(&agent.handles("web"));
        assert!(
            !nodes.is_empty() && !nodes.iter().any(|n| n == paused.node()),
            "v2 runs on {nodes:?}, the manager is {}",
            paused.node()
        );
    }
    assert_serving(&agent, "web", "r2", "v2");
    for (id, ..) in instances(&agent, "web") {
        assert_contains(&agent.rollout(&["logs", &id]).stdout, "listening on");
    }
    let summary = run(&agent, &["--spec", spec("v3").to_str().unwrap()], 2);
    assert_contains(summary["reason"].as_str().unwrap_or_default(), "[ERROR]");
    assert_serving(&agent, "web", "r2", "v2");
}

#[test]
fn a_revision_never_healthy_within_the_progress_deadline_is_rolled_back() {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let bad = agent.spec("web", "v2", r#", NEVER_READY = "1""#);
    let summary = run(&agent, &["--spec", bad.to_str().unwrap()], 2);
    let journal = summary["journal"].to_string();
    assert_contains(&journal, "progress deadline of 4000 ms exceeded");
    assert_serving(&agent, "web", "r1", "v1");
}

#[test]
fn undo_reverts_the_command_and_the_environment() {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    // Revision 2 runs another binary (a copy) with another VERSION.
    let copy = agent.home.path().join("demo-app-copy");
    std::fs::copy(crate::util::demo_app(), &copy).unwrap();
    let v2 = agent.spec("web", "v2", "");
    let command = format!("revision.command={}", copy.display());
    run(
        &agent,
        &["--spec", v2.to_str().unwrap(), "--set", &command],
        0,
    );
    let exe = |agent: &Agent| -> Vec<String> {
        let pids = agent.pids("web");
        pids.iter()
            .map(|p| {
                std::fs::read_link(format!("/proc/{p}/exe"))
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect()
    };
    assert!(exe(&agent).iter().all(|e| e.ends_with("demo-app-copy")));

    let history = agent.rollout(&["history", "web"]);
    assert_contains(&history.stdout, "revision.command");
    let undo = agent.rollout(&["undo", "web"]);
    assert_eq!(undo.code, 0, "{undo:#?}");
    assert_serving(&agent, "web", "r3", "v1");
    assert!(
        exe(&agent).iter().all(|e| e.ends_with("/demo-app")),
        "{:?}",
        exe(&agent)
    );
    let history = agent.rollout(&["history", "web", "--revision", "3"]);
    assert_contains(&history.stdout, "undo: back to revision 1");
    assert_contains(&history.stdout, r#"VERSION = "v1""#);
}

/// Start rolling `web` to v2 (a batch a second) in the background; returns
/// once the rollout reported its first step.
fn roll_v2_slowly(agent: &Agent) -> std::process::Child {
    let v2 = agent.spec("web", "v2", "");
    let spec = v2.to_str().unwrap();
    let follower = agent
        .command(&["run", "--spec", spec, "--param", "min-ready-ms=1s"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(agent, "web");
    follower
}

/// Wait until the rollout in progress of `service` reported a step.
fn wait_for_step(agent: &Agent, service: &str) {
    for _ in 0..200 {
        let status = agent.rollout(&["status", service]);
        if status.stdout.contains("in progress") && status.stdout.contains("step ") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("no rollout of {service} reported a step");
}

#[test]
fn pause_holds_the_rollout_until_resume() {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let follower = roll_v2_slowly(&agent);
    let pause = agent.rollout(&["pause", "web"]);
    assert_eq!(pause.code, 0, "{pause:#?}");
    // Once the session applied the pause, a full batch (1 s) passes and no
    // new instance starts.
    let journal = || agent.store().journal(2, 0).unwrap();
    let applied = (0..400)
        .find_map(|_| {
            let at = journal()
                .iter()
                .position(|r| r.entry.text == "operator: pause");
            at.is_none()
                .then(|| std::thread::sleep(std::time::Duration::from_millis(10)));
            at
        })
        .expect("the pause was applied");
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let held = journal();
    let starts = held[applied..]
        .iter()
        .filter(|r| r.entry.text.starts_with("start "))
        .count();
    assert_eq!(starts, 0, "started instances while paused: {held:#?}");
    assert_contains(&agent.rollout(&["status", "web"]).stdout, "PAUSED");
    assert_eq!(agent.rollout(&["resume", "web"]).code, 0);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_serving(&agent, "web", "r2", "v2");
}

#[test]
fn promote_during_a_rollout_skips_the_delay_and_status_watch_follows_it_to_the_end() {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    // Batches held 3 s each (under the 4 s progress deadline); room for
    // two new instances at once.
    let v2 = agent.spec("web", "v2", "");
    let spec = v2.to_str().unwrap();
    let args = [
        "run",
        "--spec",
        spec,
        "--set",
        "guardrails.max-surge=2",
        "--param",
        "min-ready-ms=3s",
        "--output",
        "json",
    ];
    let piped = std::process::Stdio::piped;
    let follower = agent.command(&args).stdout(piped()).spawn().unwrap();
    wait_for_step(&agent, "web");
    let watch = ["status", "web", "--watch", "--output", "json"];
    let watcher = agent.command(&watch).stdout(piped()).spawn().unwrap();
    let promote = agent.rollout(&["promote", "web"]);
    assert_eq!(promote.code, 0, "{promote:#?}");
    // The watcher ends with the rollout, with its outcome and journal.
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(watched.status.code(), Some(0), "{watched:#?}");
    let summary: Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(summary["outcome"], "completed", "{summary:#}");
    let journal = summary["journal"].to_string();
    // Promoted during batch 1's hold: batch 2 starts the two missing
    // instances together.
    assert_contains(&journal, r#"checkpoint \"batch 2\": promote"#);
    assert_contains(&journal, "start r2 x2");
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:#?}");
    assert_serving(&agent, "web", "r2", "v2");
    // With no rollout in progress, --watch prints the status and returns.
    let idle = agent.rollout(&["status", "web", "--watch"]);
    assert_eq!(idle.code, 0, "{idle:#?}");
    assert_contains(&idle.stdout, "web: revision 2, 3/3 ready");
}

#[test]
fn status_watch_exits_with_the_outcome_of_a_rolled_back_rollout() {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let follower = roll_v2_slowly(&agent);
    let watcher = agent
        .command(&["status", "web", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(agent.rollout(&["abort", "web"]).code, 0);
    let watched = watcher.wait_with_output().unwrap();
    assert_eq!(watched.status.code(), Some(2), "{watched:#?}");
    assert_contains(
        &String::from_utf8_lossy(&watched.stdout),
        "aborted by the operator",
    );
    assert_eq!(follower.wait_with_output().unwrap().status.code(), Some(2));
}

#[test]
fn undo_to_a_revision_history_causes_and_instance_logs() {
    let agent = Agent::start();
    for (version, cause) in [("v1", "first release"), ("v2", "ship v2"), ("v3", "")] {
        let spec = agent.spec("web", version, "");
        let mut args = vec!["--spec", spec.to_str().unwrap()];
        if !cause.is_empty() {
            args.extend(["--cause", cause]);
        }
        run(&agent, &args, 0);
    }
    let history = agent.rollout(&["history", "web"]);
    assert_eq!(history.code, 0, "{history:#?}");
    assert_contains(&history.stdout, "first release");
    assert_contains(&history.stdout, "ship v2");
    let json = agent
        .rollout(&["history", "web", "--output", "json"])
        .json();
    let causes: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes[..2], ["first release", "ship v2"]);
    assert_contains(causes[2], "v3\"");

    // Back past the previous revision, to the first one.
    let undo = agent.rollout(&["undo", "web", "--to-revision", "1"]);
    assert_eq!(undo.code, 0, "{undo:#?}");
    assert_serving(&agent, "web", "r4", "v1");
    let fourth = agent.rollout(&["history", "web", "--revision", "4"]);
    assert_contains(&fourth.stdout, "undo: back to revision 1");
    assert_contains(&fourth.stdout, r#"VERSION = "v1""#);

    // Each instance's own output, started with its id in the environment.
    for (id, ..) in instances(&agent, "web") {
        let logs = agent.rollout(&["logs", &id]);
        assert_eq!(logs.code, 0, "{logs:#?}");
        assert_contains(&logs.stdout, "demo-app v1 listening on");
        assert_contains(&logs.stdout, &format!("(instance {id})"));
    }
    let unknown = agent.rollout(&["logs", "web-r9-99"]);
    assert_eq!(unknown.code, 1, "{unknown:#?}");
}

fn abort_during_a_rollout_rolls_back(agent: Agent) {
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let follower = roll_v2_slowly(&agent);
    assert_eq!(agent.rollout(&["abort", "web"]).code, 0);
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:#?}");
    assert_contains(
        &String::from_utf8_lossy(&out.stdout),
        "aborted by the operator",
    );
    assert_serving(&agent, "web", "r1", "v1");
}

fn a_killed_agent_re_adopts_its_instances_without_duplicates(mut agent: Agent) {
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let before = instances(&agent, "web");
    let handles = agent.handles("web");
    assert_eq!(handles.len(), 3, "{handles:?}");
    agent.kill();
    agent.restart();
    assert_eq!(agent.handles("web"), handles);
    let after = instances(&agent, "web");
    let ids =
        |l: &[(String, String, String, String)]| l.iter().map(|i| i.0.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    // Re-adopted instances are probed again and serve; a new rollout
    // replaces them.
    let v2 = agent.spec("web", "v2", "");
    run(&agent, &["--spec", v2.to_str().unwrap()], 0);
    assert_serving(&agent, "web", "r2", "v2");
    for handle in handles {
        assert!(!agent.runs(&handle), "{handle} left running");
    }
}

#[test]
fn a_malformed_spec_changes_nothing_and_names_file_line_and_field() {
    let agent = Agent::start();
    let spec = agent.home.path().join("bad.toml");
    std::fs::write(&spec, "name = \"web\"\nreplicas = \"three\"\n").unwrap();
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(&run.stderr, "bad.toml");
    assert_contains(&run.stderr, "line 2");
    assert_contains(&run.stderr, "replicas");
    assert_contains(&agent.rollout(&["status"]).stdout, "no services yet");
}

#[test]
fn a_missing_policy_file_changes_nothing() {
    let agent = Agent::start();
    let spec = agent.spec("web", "v1", "");
    let run = agent.rollout(&[
        "run",
        "--spec",
        spec.to_str().unwrap(),
        "--policy",
        "/nope/p.wasm",
    ]);
    assert_eq!(run.code, 1, "{run:#?}");
    assert_contains(&run.stderr, "/nope/p.wasm");
    assert_contains(&agent.rollout(&["status"]).stdout, "no services yet");
}

/// Deploy `web` v1 with real processes, then roll to v2 with hostile
/// `policy`: the rollout fails (exit 3), the fleet is restored and v1
/// serves. The failure's reason.
fn fails_and_v1_serves(policy: &str) -> String {
    let agent = Agent::start();
    run(
        &agent,
        &["--spec", agent.spec("web", "v1", "").to_str().unwrap()],
        0,
    );
    let v2 = agent.spec("web", "v2", "");
    let policy = hostile(policy);
    let summary = run(
        &agent,
        &["--spec", v2.to_str().unwrap(), "--policy", &policy],
        3,
    );
    let reason = summary["reason"].as_str().unwrap().to_string();
    assert_contains(&reason, "fleet restored");
    assert_serving(&agent, "web", "r1", "v1");
    reason
}

#[test]
fn a_policy_that_traps_fails_the_rollout_and_the_fleet_is_restored() {
    assert_contains(&fails_and_v1_serves("hostile-panic"), "trapped");
}

#[test]
fn a_policy_that_never_waits_on_the_real_clock_is_stopped_and_the_fleet_restored() {
    // It starts one instance, then lists the fleet forever: every host call
    // renews its CPU budget, and nothing but this bound would stop it
    // before the progress deadline (10 minutes by default).
    assert_contains(
        &fails_and_v1_serves("hostile-busy"),
        "made 1000000 host calls without waiting",
    );
}

#[test]
fn no_agent_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args(["status", "--home"])
        .arg(home.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_contains(&stderr, "the agent is not running");
    assert_contains(&stderr, "rollout serve");
}

#[test]
fn demo_deploys_rolls_and_rolls_back_then_cleans_up() {
    let app = crate::util::demo_app();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args(["demo", "--app"])
        .arg(&app)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_contains(&stdout, "rollout 2 completed");
    assert_contains(&stdout, "rollout 3 rolled back");
    assert_contains(&stdout, ": v2 demo-r2-");
    let home = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rollout demo: an agent serves "))
        .expect("the demo names its home");
    assert!(!std::path::Path::new(home).exists(), "{home} left behind");
}

/// Kills the child when dropped (a failed assertion must not leak an agent).
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tcp_listener_requires_the_token() {
    let home = tempfile::tempdir().unwrap();
    let mut agent = Reap(
        std::process::Command::new(env!("CARGO_BIN_EXE_rollout"))
            .args(["serve", "--listen", "127.0.0.1:0", "--home"])
            .arg(home.path())
            .env_remove("ROLLOUT_TOKEN")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(agent.0.stdout.take().unwrap()));
    let addr = lines
        .find_map(|l| {
            let l = l.unwrap();
            l.split("http://")
                .nth(1)
                .map(|a| a.split_whitespace().next().unwrap().to_string())
        })
        .expect("the agent prints its TCP address");
    let status = |token: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rollout"));
        c.args(["status", "--agent", &addr, "--home"])
            .arg(home.path());
        match token {
            Some(t) => c.env("ROLLOUT_TOKEN", t),
            None => c.env_remove("ROLLOUT_TOKEN"),
        };
        c.output().unwrap()
    };
    // The token file in the home is found by itself.
    let ok = status(None);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let token = std::fs::read_to_string(home.path().join("agent.token")).unwrap();
    let same_length = "0".repeat(token.trim().len());
    for wrong in ["wrong", same_length.as_str()] {
        let refused = status(Some(wrong));
        assert_eq!(refused.status.code(), Some(1));
        assert_contains(&String::from_utf8_lossy(&refused.stderr), "bearer token");
    }
    // A second agent on the same home is refused and changes nothing.
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_rollout"))
        .args(["serve", "--listen", "127.0.0.1:0", "--home"])
        .arg(home.path())
        .env_remove("ROLLOUT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert_contains(&String::from_utf8_lossy(&second.stderr), "already running");
    assert_eq!(
        std::fs::read_to_string(home.path().join("agent.token")).unwrap(),
        token
    );
    assert_eq!(status(None).status.code(), Some(0));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(home.path().join("agent.sock"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // SIGTERM: a graceful stop that removes the socket.
    unsafe {
        libc::kill(agent.0.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(agent.0.wait().unwrap().success());
    assert!(!home.path().join("agent.sock").exists());
}
