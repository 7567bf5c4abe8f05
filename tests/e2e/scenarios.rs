//! The rolling policy against every scenario in `tests/scenarios/`.

use crate::util::{assert_contains, rollout, rollout_test, scenario};

/// Run the built-in rolling policy on a scenario and insist every assertion holds.
fn passes(name: &str) -> serde_json::Value {
    let run = rollout_test("rolling", name, &[]);
    let json = run.json();
    assert_eq!(run.code, 0, "{name}: {:#}", json["assertions"]);
    assert_eq!(json["passed"], true);
    json
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
fn first_deploy() {
    passes("first-deploy");
}

#[test]
fn thirty_minute_rollout_on_virtual_time() {
    let json = passes("thirty-minutes");
    assert!(json["virtual_ms"].as_u64().unwrap() >= 30 * 60 * 1000);
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
