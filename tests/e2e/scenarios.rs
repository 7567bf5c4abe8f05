//! The built-in policies against the scenarios in `tests/scenarios/`: the
//! rolling policy against the rolling ones, canary and blue-green against
//! theirs (`canary-*`, `blue-green-*`).

use crate::util::{assert_contains, rollout, rollout_test, scenario};

/// Run the built-in rolling policy on a scenario and insist every assertion holds.
fn passes(name: &str) -> serde_json::Value {
    passes_with("rolling", name)
}

/// Run built-in `policy` on a scenario and insist every assertion holds.
fn passes_with(policy: &str, name: &str) -> serde_json::Value {
    let run = rollout_test(policy, name, &[]);
    let json = run.json();
    assert_eq!(run.code, 0, "{policy} on {name}: {:#}", json["assertions"]);
    assert_eq!(json["passed"], true);
    json
}

/// The journal lines of a JSON report.
fn timeline(json: &serde_json::Value) -> Vec<String> {
    json["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|e| e["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn all_good() {
    passes("all-good");
}

#[test]
fn surge_one_unavailable_zero_keeps_three_to_four() {
    let json = passes("surge-one-unavailable-zero");
    assert_eq!(json["max_instances"], 4);
    assert_eq!(json["min_ready"], 3);
}

#[test]
fn never_ready_rolls_back() {
    passes("never-ready");
}

#[test]
fn crash_after_two_batches_rolls_back_every_replaced_instance() {
    passes("fails-after-two-batches");
}

#[test]
fn flaky_under_threshold_completes() {
    passes("flaky-under-threshold");
}

#[test]
fn error_in_logs_rolls_back() {
    passes("error-in-logs");
}

#[test]
fn pause_then_resume() {
    passes("pause-resume");
}

#[test]
fn abort_rolls_back() {
    passes("abort");
}

#[test]
fn progress_deadline_aborts() {
    passes("progress-deadline");
}

#[test]
fn the_rollout_deadline_stops_the_policy_and_restores_the_old_revision() {
    let json = passes("rollout-deadline");
    assert_eq!(json["step"], 2);
    let reason = json["reason"].as_str().unwrap();
    assert_contains(
        reason,
        "policy rolling stopped by the host: rollout deadline of 60000 ms exceeded, at step 2/3",
    );
    assert_contains(reason, "fleet restored: 3 instance(s) of v1 ready");
}

#[test]
fn promote_starts_the_rest_at_once_and_skips_the_readiness_delay() {
    let json = passes("rolling-promote");
    assert_eq!(json["virtual_ms"], 40_000);
    // The same scenario without the promote takes three full batches.
    let text = std::fs::read_to_string(scenario("rolling-promote")).unwrap();
    let command = "[[commands]]\nat = \"10s\"\naction = \"promote\"\n";
    assert_contains(&text, command);
    let dir = tempfile::tempdir().unwrap();
    let unpromoted = dir.path().join("unpromoted.toml");
    std::fs::write(&unpromoted, text.replace(command, "")).unwrap();
    let run = rollout(&[
        "test",
        "--policy",
        "rolling",
        "--scenario",
        unpromoted.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let json = run.json();
    assert_eq!(json["outcome"], "completed", "{json:#}");
    assert_eq!(json["virtual_ms"], 105_000);
}

#[test]
fn first_deploy() {
    passes("first-deploy");
}

#[test]
fn thirty_minute_rollout_on_virtual_time() {
    let json = passes("thirty-minutes");
    assert!(json["virtual_ms"].as_u64().unwrap() >= 30 * 60 * 1000);
}

#[test]
fn canary_healthy_passes_every_step() {
    let json = passes_with("canary", "canary-healthy");
    assert_eq!(json["max_instances"], 5);
    assert_eq!(json["min_ready"], 4);
    let lines = timeline(&json);
    for step in 1..=3 {
        let analysis = format!("analysis at step {step} (");
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&analysis) && l.ends_with("=> healthy")),
            "{analysis} in {lines:#?}"
        );
    }
    // The weights move up in order, and traffic returns to nobody else.
    let weights: Vec<_> = lines.iter().filter(|l| l.starts_with("weights ")).collect();
    assert_eq!(
        weights,
        [
            "weights v1=100 v2=0",
            "weights v1=95 v2=5",
            "weights v1=75 v2=25",
            "weights v1=50 v2=50",
            "weights v2=100"
        ]
    );
}

#[test]
fn canary_with_twenty_percent_errors_rolls_back_at_the_first_analysis() {
    let json = passes_with("canary", "canary-error-rate");
    assert_eq!(json["step"], 1);
    assert_eq!(
        json["reason"],
        "analysis at step 1 (5%): canary error rate 0.200 > 0.050 over 150 requests"
    );
    // On rollback, traffic goes back to the old revision first; at 5% the
    // old revision kept all four instances for its 95%, so none restarts.
    let lines = timeline(&json);
    let rolling_back = lines.iter().position(|l| l.contains("rolling back"));
    let after = &lines[rolling_back.expect("a rollback line")..];
    assert_eq!(
        after.get(1).map(String::as_str),
        Some("weights v1=100 v2=0"),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("start v1")),
        "{lines:#?}"
    );
}

#[test]
fn canary_with_a_slow_p99_rolls_back() {
    let json = passes_with("canary", "canary-latency");
    assert_contains(json["reason"].as_str().unwrap(), "5.00 > 1.50");
}

#[test]
fn canary_promote_skips_the_remaining_steps() {
    let json = passes_with("canary", "canary-promote");
    let lines = timeline(&json);
    assert!(!lines.iter().any(|l| l.contains("weights v1=50 v2=50")));
    assert!(!lines.iter().any(|l| l.contains("analysis at step 2")));
}

#[test]
fn blue_green_healthy_keeps_the_old_set_for_the_delay() {
    let json = passes_with("blue-green", "blue-green-healthy");
    assert_eq!(json["max_instances"], 8);
    assert_eq!(json["min_ready"], 4);
    let stop_old = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["text"].as_str().unwrap().starts_with("stop web-v1-"))
        .expect("the old set is stopped");
    // Switch at 5 s, analysis at 35 s, old set kept 30 s more.
    assert_eq!(stop_old["at_ms"], 65_000, "{stop_old}");
}

#[test]
fn blue_green_bad_after_the_switch_switches_back() {
    let json = passes_with("blue-green", "blue-green-bad-after-switch");
    assert_eq!(json["step"], 2);
    let lines = timeline(&json);
    assert!(!lines.iter().any(|l| l.starts_with("stop web-v1-")));
}

#[test]
fn blue_green_that_degrades_during_the_delay_switches_back_without_stopping_the_old_set() {
    let json = passes_with("blue-green", "blue-green-degrades-during-delay");
    let lines = timeline(&json);
    assert!(!lines.iter().any(|l| l.starts_with("stop web-v1-")));
    // Switched back at the first watch that saw the errors: 50-55 s.
    let back = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["text"] == "weights v1=100 v2=0")
        .expect("switched back");
    assert_eq!(back["at_ms"], 55_000, "{back}");
}

#[test]
fn blue_green_without_room_for_two_sets_says_to_raise_max_surge() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tight.toml");
    std::fs::write(
        &file,
        r#"replicas = 4
from = "v1"
to = "v2"

[guardrails]
max-surge = 1

[expect]
outcome = "rolled-back"
reason-contains = "raise max-surge to 100%"
final = { v1 = 4, v2 = 0 }
min-ready = 4
"#,
    )
    .unwrap();
    let run = rollout(&[
        "test",
        "--policy",
        "blue-green",
        "--scenario",
        file.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let json = run.json();
    assert_eq!(run.code, 0, "{:#}", json["assertions"]);
    assert!(!timeline(&json).iter().any(|l| l.contains("weights v2=100")));
}

#[test]
fn a_failed_assertion_exits_1_and_names_it() {
    // all-good expects a completed rollout; a log pattern every line matches
    // turns it into a rollback.
    let run = rollout_test("rolling", "all-good", &["--param", "log-pattern="]);
    assert_eq!(run.code, 0, "an empty pattern disables the log check");
    let run = rollout_test(
        "rolling",
        "error-in-logs",
        &["--param", "log-pattern=[FATAL]"],
    );
    assert_eq!(run.code, 1);
    let failed: Vec<_> = run.json()["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["passed"] == false)
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert!(failed.contains(&"outcome".to_string()), "{failed:?}");
}

#[test]
fn human_output_prints_the_timeline() {
    let file = scenario("error-in-logs");
    let run = rollout(&[
        "test",
        "--policy",
        "rolling",
        "--scenario",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_contains(&run.stdout, "start v2 x1 -> web-v2-4");
    assert_contains(&run.stdout, "rolled back");
    assert_contains(&run.stdout, "all 6 assertion(s) hold");
}

#[test]
fn bad_scenario_is_exit_2_with_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "replicas = 3\nto = \"v2\"\n\n[revisions.v2]\nready-after = \"soonish\"\n",
    )
    .unwrap();
    let run = rollout(&[
        "test",
        "--policy",
        "rolling",
        "--scenario",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert_contains(&run.stderr, "bad.toml");
    assert_contains(&run.stderr, "line 5");
    assert_contains(&run.stderr, "ready-after");
}

#[test]
fn unknown_policy_name_is_exit_2_and_lists_builtins() {
    let run = rollout_test("canary-deluxe", "all-good", &[]);
    assert_eq!(run.code, 2);
    assert_contains(&run.stderr, "built-in: rolling");
}

#[test]
fn policies_lists_rolling() {
    let run = rollout(&["policies"]);
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("rolling"), "{}", run.stdout);
}

#[test]
fn policies_lists_canary_and_blue_green() {
    let run = rollout(&["policies"]);
    assert_eq!(run.code, 0);
    for name in ["canary ", "blue-green "] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(name)),
            "{name}in {}",
            run.stdout
        );
    }
}

#[test]
fn restoring_the_old_revision_after_the_progress_deadline_waits_for_it() {
    let json = passes_with("canary", "canary-idle-past-deadline");
    let lines = timeline(&json);
    let restarts = lines.iter().filter(|l| l.starts_with("start v1")).count();
    let stops = lines.iter().filter(|l| l.starts_with("stop v1")).count();
    assert!(restarts <= 1 && stops <= 1, "churn: {lines:#?}");
}

#[test]
fn an_abort_ends_a_long_canary_hold_at_once() {
    passes_with("canary", "canary-abort-during-hold");
}
