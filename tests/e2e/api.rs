//! The control API against hostile requests: each is refused with a clear
//! error, soon and with a small answer, and changes nothing.

use crate::util::{Agent, assert_contains};

/// The status line of a raw answer.
fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The agent answers a request and still has no service.
fn unchanged(agent: &Agent) {
    assert_contains(&agent.rollout(&["status"]).stdout, "no services yet");
}

#[test]
fn a_body_that_stops_arriving_is_answered_408() {
    let agent = Agent::start();
    let answer = agent.request(
        b"POST /v1/rollouts HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\nConnection: close\r\n\r\n{\"spec\": \"name",
    );
    assert!(status(&answer).contains(" 408 "), "{answer}");
    assert_contains(&answer, "the request body stopped arriving");
    unchanged(&agent);
}

#[test]
fn a_spec_with_a_huge_line_is_refused_with_a_small_answer() {
    let agent = Agent::start();
    let spec = format!("name = \"web\"\nreplicas = 2 {}\n", "x".repeat(5 << 20));
    let answer = agent.post(
        "/v1/rollouts",
        &serde_json::json!({ "spec": spec, "origin": "big.toml", "params": [] }),
    );
    assert!(status(&answer).contains(" 400 "), "{}", &answer[..500]);
    assert!(answer.len() < 4_096, "a {} byte answer", answer.len());
    assert_contains(&answer, "big.toml");
    unchanged(&agent);
}

#[test]
fn a_bad_policy_is_refused_even_when_the_spec_is_unchanged() {
    let agent = Agent::start();
    let spec = agent.spec("web", "v1", "");
    let spec = spec.to_str().expect("a UTF-8 path");
    let run = agent.rollout(&["run", "--spec", spec]);
    assert_eq!(run.code, 0, "{run:#?}");
    let text = std::fs::read_to_string(spec).expect("read the spec");
    let with = |policy: serde_json::Value| {
        agent.post(
            "/v1/rollouts",
            &serde_json::json!({ "spec": text, "origin": spec, "policy": policy, "params": [] }),
        )
    };
    let answer = with(serde_json::json!({ "kind": "wasm", "name": "p.wasm", "base64": "!!" }));
    assert!(status(&answer).contains(" 400 "), "{answer}");
    assert_contains(&answer, "policy p.wasm: bad upload");
    let answer =
        with(serde_json::json!({ "kind": "wasm", "name": "p.wasm", "base64": "aGVsbG8=" }));
    assert!(status(&answer).contains(" 400 "), "{answer}");
    assert_contains(&answer, "not a valid WebAssembly component");
    let answer = with(serde_json::json!({ "kind": "builtin", "name": "rollng" }));
    assert!(status(&answer).contains(" 400 "), "{answer}");
    // Through the CLI: a garbage file is refused, not "no change".
    let garbage = agent.home.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not wasm").expect("write");
    let run = agent.rollout(&["run", "--spec", spec, "--policy", garbage.to_str().unwrap()]);
    assert_ne!(run.code, 0, "{run:#?}");
    assert_contains(&run.stderr, "not a valid WebAssembly component");
    // The service still has its one revision.
    let revisions = agent.store().revisions("web").expect("read the store");
    assert_eq!(revisions.len(), 1, "{revisions:?}");
}

#[test]
fn a_policy_path_that_is_not_a_regular_file_is_refused_at_once() {
    let agent = Agent::start();
    let fifo = agent.home.path().join("fifo.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let spec = agent.spec("web", "v1", "");
    let spec = spec.to_str().expect("a UTF-8 path");
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        // Read by the client, which uploads it...
        let run = agent.rollout(&["run", "--spec", spec, "--policy", path]);
        assert_eq!(run.code, 1, "{run:#?}");
        assert_contains(&run.stderr, "not a regular file");
        // ... or by the agent, when a request names it.
        let text = std::fs::read_to_string(spec).expect("read the spec");
        let answer = agent.post(
            "/v1/rollouts",
            &serde_json::json!({
                "spec": text,
                "origin": spec,
                "policy": { "kind": "builtin", "name": path },
                "params": [],
            }),
        );
        assert!(status(&answer).contains(" 400 "), "{answer}");
        assert_contains(&answer, "not a regular file");
    }
    unchanged(&agent);
}
