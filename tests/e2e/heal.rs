//! A service keeps its replicas (issue 15): while no rollout runs, an
//! instance killed behind the agent's back is replaced with one of the
//! serving revision, a crash loop backs off, `rollout scale` drains or
//! starts instances with no new revision (and a spec that only changes
//! `replicas` does the same), `rollout restart` replaces every instance
//! through the policy, and `rollout rm` stops every instance and forgets
//! the service, keeping its history unless `--purge`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Agent, On, assert_contains, http_get};

on_each_backend! {
    an_instance_killed_by_hand_is_replaced_and_counted,
    scale_down_and_up_with_no_new_revision,
    rm_stops_every_instance_and_keeps_the_history_unless_purged,
}

/// Swarm tasks take seconds to start and stop: every wait is longer there.
fn patience(agent: &Agent) -> Duration {
    match agent.on {
        On::Swarm => Duration::from_secs(90),
        On::Process | On::Docker => Duration::from_secs(30),
    }
}

/// Wait until `f` gives a value, for at most `timeout`; panics with
/// `what` and the last status otherwise.
fn wait_for<T>(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            let status = agent.rollout(&["status"]);
            panic!("timed out waiting for {what}: {status:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `rollout status SERVICE --output json`: the service's status.
fn status(agent: &Agent, service: &str) -> Value {
    let run = agent.rollout(&["status", service, "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    run.json()[0].clone()
}

/// Ids of the instances of `service` that are ready on `revision`, when
/// they are all its instances and there are `n` of them.
fn serving(agent: &Agent, service: &str, revision: &str, n: usize) -> Option<Vec<String>> {
    let s = status(agent, service);
    let list = s["instances"].as_array()?;
    let ready = list
        .iter()
        .all(|i| i["revision"] == revision && i["state"] == "ready");
    (ready && list.len() == n).then(|| {
        list.iter()
            .map(|i| i["id"].as_str().unwrap_or_default().to_string())
            .collect()
    })
}

/// Deploy `spec` (with `extra` arguments), expecting it to complete.
fn deploy(agent: &Agent, spec: &Path, extra: &[&str]) {
    let mut args = vec!["run", "--spec", spec.to_str().unwrap()];
    args.extend(extra);
    let run = agent.rollout(&args);
    assert_eq!(run.code, 0, "{run:#?}");
}

/// `rollout args` exits 1 (an error before any change) saying `why`.
fn refused(agent: &Agent, args: &[&str], why: &str) {
    let run = agent.rollout(args);
    assert_eq!(run.code, 1, "{args:?}: {run:#?}");
    assert_contains(&run.stderr, why);
}

/// How many revisions `rollout history` lists.
fn revisions(agent: &Agent, service: &str) -> usize {
    let run = agent.rollout(&["history", service, "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    run.json().as_array().map_or(0, Vec::len)
}

fn an_instance_killed_by_hand_is_replaced_and_counted(agent: Agent) {
    let port = rollout::fleet::free_port().unwrap().to_string();
    let set_port = format!("port={port}");
    deploy(&agent, &agent.spec("web", "v1", ""), &["--set", &set_port]);
    let before = serving(&agent, "web", "r1", 3).expect("3 ready");
    let handles = agent.handles("web");
    assert_eq!(handles.len(), 3, "{handles:?}");
    agent.kill_handle(&handles[0]);

    // Replaced by a new instance of the serving revision, counted once,
    // with no rollout and never more than 3 instances.
    let after = wait_for(
        &agent,
        "the killed instance replaced",
        patience(&agent),
        || {
            let s = status(&agent, "web");
            let live = s["instances"].as_array().map_or(0, Vec::len);
            assert!(live <= 3, "more than 3 instances: {s:#}");
            let ids = serving(&agent, "web", "r1", 3)?;
            (s["healing"]["restarts"] == 1 && ids != before).then_some(ids)
        },
    );
    let new: Vec<&String> = after.iter().filter(|id| !before.contains(id)).collect();
    assert_eq!(new.len(), 1, "before {before:?}, after {after:?}");
    assert!(!agent.runs(&handles[0]), "the killed instance still runs");
    assert_eq!(revisions(&agent, "web"), 1, "healing is no new revision");

    let s = status(&agent, "web");
    assert_contains(s["healing"]["last_reason"].as_str().unwrap_or(""), "exit");
    let human = agent.rollout(&["status", "web"]);
    assert_contains(&human.stdout, "web: revision 1, 3/3 ready");
    assert_contains(&human.stdout, "restarts 1; last: ");
    assert!(!human.stdout.contains("crash loop"), "{human:#?}");
    let events = agent.rollout(&["history", "web", "--events", "--output", "json"]);
    assert_eq!(events.code, 0, "{events:#?}");
    let replaced: Vec<Value> = events
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "replace")
        .cloned()
        .collect();
    assert_eq!(replaced.len(), 1, "{events:#?}");
    assert_contains(
        replaced[0]["text"].as_str().unwrap(),
        &format!("with {}", new[0]),
    );
    let human = agent.rollout(&["history", "web", "--events"]);
    assert_contains(&human.stdout, "replace");
    assert_contains(
        &agent.get("/metrics"),
        "rollout_instance_restarts_total{service=\"web\"} 1",
    );

    // The new instance joined the front door.
    let door = format!("127.0.0.1:{port}");
    wait_for(
        &agent,
        "the new instance behind the front door",
        patience(&agent),
        || http_get(&door, "/").contains(new[0].as_str()).then_some(()),
    );
}

#[test]
fn a_crash_looping_instance_backs_off_then_recovers() {
    let agent = Agent::start();
    let flag = agent.home.path().join("crash");
    let script = agent.home.path().join("app.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ -e {} ] && exit 7\nexec {}\n",
            flag.display(),
            crate::util::demo_app().display()
        ),
    )
    .unwrap();
    let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&script, executable).unwrap();
    deploy(
        &agent,
        &agent.command_spec("loop", &script, r#"VERSION = "v1""#),
        &[],
    );
    serving(&agent, "loop", "r1", 3).expect("3 ready");

    // From now on every new instance exits at once.
    std::fs::write(&flag, "").unwrap();
    let pid = agent.handles("loop")[0].clone();
    agent.kill_handle(&pid);

    // Over a window of 6 s, replacements wait 0, 1, 2 then 4 s: at most 4
    // restarts (without a backoff, one every pass of the fleet manager:
    // dozens).
    let window = Instant::now();
    let mut restarts = 0;
    let mut backing_off = false;
    while window.elapsed() < Duration::from_secs(6) {
        let s = status(&agent, "loop");
        restarts = s["healing"]["restarts"].as_u64().unwrap_or(0);
        let now = rollout::store::unix_ms();
        backing_off |= s["healing"]["next_attempt_ms"].as_u64().unwrap_or(0) > now + 1_000;
        assert!(
            restarts <= 4,
            "no backoff: {restarts} restarts in 6 s: {s:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(restarts >= 2, "only {restarts} restart(s) in 6 s");
    assert!(
        backing_off,
        "no replacement was held back for more than 1 s"
    );
    let human = agent.rollout(&["status", "loop"]);
    assert_contains(
        &human.stdout,
        "crash loop: 1 replacement(s) held back, next in",
    );
    assert_contains(&human.stdout, "exited");

    // Once the revision starts again, the next replacement stays.
    std::fs::remove_file(&flag).unwrap();
    wait_for(
        &agent,
        "recovery after the backoff",
        Duration::from_secs(30),
        || serving(&agent, "loop", "r1", 3),
    );
    let events = agent.store().service_events("loop").unwrap();
    assert!(
        events.iter().filter(|e| e.kind == "replace").count() as u64 > restarts,
        "{events:#?}"
    );
}

fn scale_down_and_up_with_no_new_revision(mut agent: Agent) {
    let spec = agent.spec("web", "v1", "");
    deploy(&agent, &spec, &[]);
    let wait = patience(&agent);
    let three = serving(&agent, "web", "r1", 3).expect("3 ready");

    let down = agent.rollout(&["scale", "web", "2"]);
    assert_eq!(down.code, 0, "{down:#?}");
    assert_contains(&down.stdout, "web: 2/2 ready");
    let two = serving(&agent, "web", "r1", 2).expect("2 ready, nothing else");
    assert!(
        two.iter().all(|id| three.contains(id)),
        "{two:?} not of {three:?}"
    );

    // The scale is recorded: a restarted agent keeps 2.
    agent.kill();
    agent.restart();
    assert_eq!(status(&agent, "web")["replicas"], 2);
    assert_eq!(serving(&agent, "web", "r1", 2), Some(two.clone()));

    let up = agent.rollout(&["scale", "web", "4", "--output", "json"]);
    assert_eq!(up.code, 0, "{up:#?}");
    assert_eq!(up.json()["converged"], true);
    let four = serving(&agent, "web", "r1", 4).expect("4 ready");
    assert!(two.iter().all(|id| four.contains(id)));

    // A spec changing nothing but replicas is a scale too: 4 to 3 drains
    // one, with no new revision and no refused surge.
    let run = agent.rollout(&["run", "--spec", spec.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.json()["outcome"], "unchanged");
    assert_contains(
        run.json()["message"].as_str().unwrap(),
        "scaling web from 4 to 3",
    );
    let three = wait_for(&agent, "3 replicas again", wait, || {
        serving(&agent, "web", "r1", 3)
    });
    assert!(three.iter().all(|id| four.contains(id)));
    let five = ["--set", "replicas=5"];
    deploy(&agent, &spec, &five);
    wait_for(&agent, "5 replicas", wait, || {
        serving(&agent, "web", "r1", 5)
    });
    assert_eq!(revisions(&agent, "web"), 1, "a scale is no new revision");
    assert_eq!(status(&agent, "web")["replicas"], 5);

    refused(&agent, &["scale", "web", "0"], "rollout rm web");
    refused(&agent, &["scale", "nope", "2"], "no service nope");
}

#[test]
fn restart_replaces_every_instance_through_the_policy() {
    let agent = Agent::start();
    deploy(&agent, &agent.spec("web", "v1", ""), &[]);
    let before = serving(&agent, "web", "r1", 3).expect("3 ready");
    assert_eq!(agent.rollout(&["scale", "web", "2"]).code, 0);

    let run = agent.rollout(&["restart", "web", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let summary = run.json();
    assert_eq!(summary["outcome"], "completed");
    assert_eq!(summary["to_revision"], 2);
    // The scaled replicas are the new revision's.
    let after = serving(&agent, "web", "r2", 2).expect("2 ready on r2");
    assert!(after.iter().all(|id| !before.contains(id)), "{after:?}");
    let history = agent
        .rollout(&["history", "web", "--output", "json"])
        .json();
    assert_eq!(history[1]["cause"], "restart of revision 1");
    assert_eq!(status(&agent, "web")["replicas"], 2);

    refused(&agent, &["restart", "nope"], "no service nope");
}

#[test]
fn service_commands_refuse_while_a_rollout_runs() {
    let agent = Agent::start();
    deploy(&agent, &agent.spec("web", "v1", ""), &[]);
    let v2 = agent.spec("web", "v2", "");
    let mut run = agent
        .command(&["run", "--spec", v2.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        &agent,
        "the rollout to start",
        Duration::from_secs(30),
        || (!status(&agent, "web")["active"].is_null()).then_some(()),
    );
    for args in [
        &["scale", "web", "2"][..],
        &["restart", "web"],
        &["rm", "web"],
    ] {
        refused(&agent, args, "in progress");
        refused(&agent, args, "rollout abort web");
    }
    assert!(run.wait().unwrap().success());
    serving(&agent, "web", "r2", 3).expect("the rollout went on");
}

fn rm_stops_every_instance_and_keeps_the_history_unless_purged(agent: Agent) {
    let port = rollout::fleet::free_port().unwrap().to_string();
    let set_port = format!("port={port}");
    let spec = agent.spec("web", "v1", "");
    deploy(&agent, &spec, &["--set", &set_port]);
    deploy(&agent, &agent.spec("other", "v1", ""), &[]);
    let handles = agent.handles("web");
    assert_eq!(handles.len(), 3);

    let rm = agent.rollout(&["rm", "web"]);
    assert_eq!(rm.code, 0, "{rm:#?}");
    assert_contains(&rm.stdout, "3 instance(s) drained and stopped");
    for h in &handles {
        assert!(!agent.runs(h), "{h} still runs");
    }
    assert!(agent.handles("web").is_empty());
    assert!(
        std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err(),
        "the front door still listens"
    );
    let all = agent.rollout(&["status", "--output", "json"]).json();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["other"]);
    refused(&agent, &["status", "web"], "no service web");
    assert_eq!(revisions(&agent, "web"), 1, "the history stays");
    let events = agent.rollout(&["history", "web", "--events"]);
    assert_contains(&events.stdout, "removed: 3 instance(s) drained and stopped");
    refused(&agent, &["rm", "web"], "no service web");

    // Deployed again, it starts afresh (no revision serves).
    deploy(&agent, &spec, &["--set", &set_port]);
    serving(&agent, "web", "r2", 3).expect("3 ready on r2");
    assert_eq!(revisions(&agent, "web"), 2);

    let purge = agent.rollout(&["rm", "web", "--purge"]);
    assert_eq!(purge.code, 0, "{purge:#?}");
    assert_contains(&purge.stdout, "purged");
    assert!(agent.handles("web").is_empty());
    refused(&agent, &["history", "web"], "no service web");
    assert!(agent.store().revisions("web").unwrap().is_empty());
    serving(&agent, "other", "r1", 3).expect("the other service is untouched");
}

/// Lowering `replicas` with a new revision: the extra instances of the old
/// one are drained before the policy starts, so its first surge is not
/// refused by max-surge (`starting 1 with 4 running would exceed 4`).
#[test]
fn a_new_revision_with_fewer_replicas_is_no_refused_surge() {
    let agent = Agent::start();
    deploy(
        &agent,
        &agent.spec("web", "v1", ""),
        &["--set", "replicas=4"],
    );
    serving(&agent, "web", "r1", 4).expect("4 ready");
    let v2 = agent.spec("web", "v2", "");
    let run = agent.rollout(&["run", "--spec", v2.to_str().unwrap(), "--output", "json"]);
    assert_eq!(run.code, 0, "{run:#?}");
    let summary = run.json();
    assert_eq!(summary["outcome"], "completed");
    let journal = summary["journal"].to_string();
    assert_contains(&journal, "replicas lowered from 4 to 3");
    assert!(!journal.contains("max-surge"), "{journal}");
    serving(&agent, "web", "r2", 3).expect("3 ready on r2");
}

/// An instance that stays unhealthy (its check fails for 10 s) is replaced
/// as a dead one is; one that fails for less is left alone.
#[test]
fn an_instance_unhealthy_for_ten_seconds_is_replaced() {
    let agent = Agent::start();
    let spec = agent.spec("sick", "v1", r#", UNHEALTHY_AFTER_MS = "3000""#);
    deploy(&agent, &spec, &["--set", "replicas=1"]);
    let first = serving(&agent, "sick", "r1", 1).expect("1 ready");
    let became_unhealthy = wait_for(
        &agent,
        "the instance unhealthy",
        Duration::from_secs(20),
        || {
            let s = status(&agent, "sick");
            (s["instances"][0]["state"] == "unhealthy").then(Instant::now)
        },
    );
    let second = wait_for(
        &agent,
        "the unhealthy instance replaced",
        Duration::from_secs(30),
        || {
            let ids = serving(&agent, "sick", "r1", 1)?;
            (ids != first).then_some(ids)
        },
    );
    assert!(
        became_unhealthy.elapsed() >= Duration::from_secs(9),
        "replaced after {:?} unhealthy",
        became_unhealthy.elapsed()
    );
    let s = status(&agent, "sick");
    assert_eq!(s["healing"]["restarts"], 1, "{s:#}");
    let why = s["healing"]["last_reason"].as_str().unwrap_or_default();
    assert_contains(why, &format!("{} unhealthy for 10 s", first[0]));
    assert_ne!(second, first);
}
