//! Hostile policies: each fails the rollout with a message that says which
//! limit and why, and v1 keeps serving (the scenario asserts final counts
//! and that ready instances never dropped below 3).

use crate::util::{assert_contains, hostile, rollout_test};

/// Run a hostile policy on the hostile scenario: the assertions (outcome
/// failed, v1 = 3, v2 = 0, min ready 3) must hold; returns the reason,
/// which must name the policy.
fn fails_safely(policy: &str) -> String {
    let json = passes_hostile(&hostile(policy), &[]);
    let reason = json["reason"].as_str().unwrap().to_string();
    assert_contains(&reason, &format!("policy {}", hostile(policy)));
    reason
}

/// Run the component at `path` on the hostile scenario with `extra`
/// arguments; every assertion must hold. The JSON report.
fn passes_hostile(path: &str, extra: &[&str]) -> serde_json::Value {
    let run = rollout_test(path, "hostile", extra);
    let json = run.json();
    assert_eq!(run.code, 0, "{path}: {:#}", json["assertions"]);
    json
}

#[test]
fn infinite_loop_hits_the_cpu_limit() {
    let reason = fails_safely("hostile-spin");
    assert_contains(&reason, "exceeded its CPU limit");
    assert_contains(&reason, "100 ms");
    assert_contains(&reason, "at the start (no step reported yet)");
}

#[test]
fn a_loop_of_host_calls_that_never_waits_is_stopped() {
    let reason = fails_safely("hostile-busy");
    assert_contains(
        &reason,
        "made 1000000 host calls without letting virtual time pass",
    );
    assert_contains(&reason, "at step 1/1 (busy)");
    assert_contains(&reason, "fleet restored");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let reason = fails_safely("hostile-membomb");
    assert_contains(&reason, "exceeded its memory limit of 64 MiB");
    assert_contains(&reason, "at the start (no step reported yet)");
}

#[test]
fn panic_after_an_effect_traps_and_the_fleet_is_restored() {
    let reason = fails_safely("hostile-panic");
    assert_contains(&reason, "trapped at step 1/2 (start one)");
    assert_contains(&reason, "policy bug: index out of range");
    assert_contains(&reason, "fleet restored");
}

/// The `name: observation` lines the sandbox probe logged.
fn probe_saw(json: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    json["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str()?.strip_prefix("[info] "))
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_sandbox_has_no_files_env_or_network_and_virtual_time_and_seeded_randomness() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = format!("port={}", listener.local_addr().unwrap().port());
    let probe = hostile("sandbox-probe");
    let first = probe_saw(&passes_hostile(&probe, &["--param", &port]));
    let saw = |k: &str| first.get(k).map(String::as_str).unwrap_or("(not logged)");
    assert!(saw("read-file").starts_with("error: "), "{first:#?}");
    assert!(saw("list-root").starts_with("error: "), "{first:#?}");
    assert_eq!(saw("env-vars"), "0");
    assert!(saw("tcp-connect").starts_with("error: "), "{first:#?}");
    listener.set_nonblocking(true).unwrap();
    let accepted = listener.accept();
    assert!(accepted.is_err(), "the policy reached {accepted:?}");
    // The wall clock is the virtual clock: 90 s after the start, as
    // `clock.now-ms` says after its 90 s sleep.
    assert_eq!(saw("clock-now-ms"), "90000");
    assert_eq!(saw("wall-clock-ms"), "90000");
    assert_eq!(saw("random").len(), 16, "{first:#?}");
    let second = probe_saw(&passes_hostile(&probe, &["--param", &port]));
    assert_eq!(first, second, "a second run saw another sandbox");
}

#[test]
fn stopping_everything_is_refused_and_the_lie_is_caught() {
    let path = hostile("hostile-stop-all");
    let json = passes_hostile(&path, &[]);
    let reason = json["reason"].as_str().unwrap();
    let lie = format!("policy {path} reported completed, but only 0 of 3");
    assert_contains(reason, &lie);
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
    assert_contains(&run.stderr, &format!("policy {}", hostile("policy-v0-2")));
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
    assert_contains(
        &run.stderr,
        &format!("policy {} is not a valid", garbage.display()),
    );
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
    assert_contains(&reason, &format!("policy {}", hostile("hostile-spin")));
}
