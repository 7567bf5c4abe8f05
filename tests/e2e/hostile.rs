//! Hostile policies: each fails the rollout with a message that says which
//! limit and why, and v1 keeps serving (the scenario asserts final counts
//! and that ready instances never dropped below 3).

use crate::util::{assert_contains, hostile, rollout_test};

/// Run a hostile policy on the hostile scenario: the assertions (outcome
/// failed, v1 = 3, v2 = 0, min ready 3) must hold; returns the reason.
fn fails_safely(policy: &str) -> String {
    let path = hostile(policy);
    let run = rollout_test(&path, "hostile", &[]);
    let json = run.json();
    assert_eq!(run.code, 0, "{policy}: {:#}", json["assertions"]);
    json["reason"].as_str().unwrap().to_string()
}

#[test]
fn infinite_loop_hits_the_cpu_limit() {
    let reason = fails_safely("hostile-spin");
    assert_contains(&reason, "exceeded its CPU limit");
    assert_contains(&reason, "100 ms");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let reason = fails_safely("hostile-membomb");
    assert_contains(&reason, "exceeded its memory limit of 64 MiB");
}

#[test]
fn panic_after_an_effect_traps_and_the_fleet_is_restored() {
    let reason = fails_safely("hostile-panic");
    assert_contains(&reason, "trapped");
    assert_contains(&reason, "policy bug: index out of range");
    assert_contains(&reason, "fleet restored");
}

#[test]
fn stopping_everything_is_refused_and_the_lie_is_caught() {
    let path = hostile("hostile-stop-all");
    let run = rollout_test(&path, "hostile", &[]);
    let json = run.json();
    assert_eq!(run.code, 0, "{:#}", json["assertions"]);
    let reason = json["reason"].as_str().unwrap();
    assert_contains(reason, "policy reported completed, but only 0 of 3");
    let refused = json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refused")
        .count();
    assert!(
        refused >= 4,
        "the batch stop and each single stop are refused: {refused}"
    );
}

#[test]
fn newer_wit_version_is_refused_before_running() {
    let run = rollout_test(&hostile("policy-v0-2"), "hostile", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_contains(&run.stderr, "rollout:policy@0.2.0");
    assert_contains(&run.stderr, "supports rollout:policy@0.1.0");
    assert_contains(&run.stderr, "no instance was touched");
}

#[test]
fn garbage_bytes_are_refused_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\x00asm\x0d\x00\x01\x00 this is not a component").unwrap();
    let run = rollout_test(garbage.to_str().unwrap(), "hostile", &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_contains(&run.stderr, "is not a valid WebAssembly component");
}

#[test]
fn a_tighter_cpu_limit_is_configurable() {
    let run = rollout_test(
        &hostile("hostile-spin"),
        "hostile",
        &["--policy-cpu-ms", "20"],
    );
    let reason = run.json()["reason"].as_str().unwrap().to_string();
    assert_contains(&reason, "more than 20 ms");
}
