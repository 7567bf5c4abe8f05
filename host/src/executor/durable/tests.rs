//! Durable sessions on the sim backend: the test plays the policy; a
//! "restart" is a new session over the same fleet, resumed from the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Durable;
use crate::backend::Backend;
use crate::backend::sim::{Behaviour, SimBackend};
use crate::clock::Clock;
use crate::executor::Session;
use crate::executor::guardrails::{Count, GuardrailSpec};
use crate::executor::operator::Operator;
use crate::model::{InstanceState, RolloutInfo};
use crate::runtime::{Halt, PolicyHost};
use crate::store::{CallRecord, PinnedPolicy, Store};

/// A store with rollout 1 of web open.
fn store() -> (tempfile::TempDir, Arc<Store>, i64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("state.db")).unwrap());
    store.add_revision("web", "x", "first").unwrap();
    let pinned = PinnedPolicy {
        name: "by hand".into(),
        digest: "d".into(),
        wit: "0.1.0".into(),
        params: Vec::new(),
        bytes: Vec::new(),
    };
    let id = store.start_rollout("web", Some(1), 2, &pinned).unwrap();
    (dir, store, id)
}

/// Two ready r1 instances; r2 is ready 2 s after it starts.
fn fleet(clock: &Clock) -> Box<dyn Backend> {
    let behaviours = BTreeMap::from([
        ("r1".to_string(), (&Behaviour::default()).into()),
        (
            "r2".to_string(),
            (&Behaviour {
                ready_after: 2_000,
                ..Behaviour::default()
            })
                .into(),
        ),
    ]);
    let mut sim = SimBackend::new(clock.clone(), "web", behaviours, 1, 100);
    sim.serve("r1", 2);
    Box::new(sim)
}

fn session(clock: Clock, backend: Box<dyn Backend>) -> Session {
    let info = RolloutInfo {
        service: "web".into(),
        from_revision: Some("r1".into()),
        to_revision: "r2".into(),
        replicas: 2,
        params: Vec::new(),
    };
    let guardrails = GuardrailSpec {
        max_surge: Count::Absolute(1),
        min_available: Count::Absolute(2),
        ..GuardrailSpec::default()
    };
    Session::new(
        info,
        backend,
        clock,
        &guardrails,
        Operator::scripted(Vec::new()),
    )
}

/// The fleet a durable session ran on, after it ended.
fn backend_of(durable: Durable) -> Box<dyn Backend> {
    durable.into_session().into_parts().1
}

#[tokio::test]
async fn a_resumed_session_answers_from_the_log_then_goes_on_live() {
    let (_dir, store, id) = store();
    let clock = Clock::virtual_at_zero();
    let mut first = Durable::start(session(clock.clone(), fleet(&clock)), store.clone(), id)
        .await
        .unwrap();
    let started = first.start("r2", 1).await.unwrap().unwrap();
    let ids = vec![started[0].id.clone()];
    let probes = first.wait_ready(&ids, 60_000).await.unwrap();
    let at = first.now_ms();
    let backend = backend_of(first);
    let calls = store.calls(id).unwrap();
    let funcs: Vec<&str> = calls.iter().map(|c| c.func.as_str()).collect();
    assert_eq!(
        funcs,
        [
            "host.fleet",
            "fleet.start",
            "health.wait-ready",
            "clock.now-ms"
        ]
    );
    assert!(calls.iter().all(|c| c.result.is_some()), "{calls:?}");

    // The restart: the same fleet, a fresh session and policy.
    let mut again = Durable::resume(session(clock.clone(), backend), store.clone(), id, calls);
    assert_eq!(again.start("r2", 1).await.unwrap().unwrap(), started);
    assert_eq!(again.wait_ready(&ids, 60_000).await.unwrap(), probes);
    assert_eq!(again.now_ms(), at);
    // Replayed, not done again: one r2 instance only.
    let fleet = again.list().await.unwrap();
    assert_eq!(
        fleet.iter().filter(|i| i.revision == "r2").count(),
        1,
        "{fleet:?}"
    );
    // Live from here: a stop happens and is logged.
    let r1 = fleet
        .iter()
        .find(|i| i.revision == "r1")
        .unwrap()
        .id
        .clone();
    again
        .stop(std::slice::from_ref(&r1))
        .await
        .unwrap()
        .unwrap();
    let journal = again.as_mut().journal().entries().to_vec();
    assert!(
        journal.iter().any(|e| e.text.contains("goes on live")),
        "{journal:?}"
    );
    drop(backend_of(again));
    let funcs: Vec<String> = store
        .calls(id)
        .unwrap()
        .into_iter()
        .map(|c| c.func)
        .collect();
    assert_eq!(&funcs[4..], ["fleet.list", "fleet.stop"]);
}

#[tokio::test]
async fn another_call_than_the_logged_one_is_a_divergence() {
    let (_dir, store, id) = store();
    let clock = Clock::virtual_at_zero();
    let mut first = Durable::start(session(clock.clone(), fleet(&clock)), store.clone(), id)
        .await
        .unwrap();
    first.start("r2", 1).await.unwrap().unwrap();
    first.sleep(100).await.unwrap();
    let backend = backend_of(first);
    let calls = store.calls(id).unwrap();
    let mut other = Durable::resume(
        session(clock.clone(), backend),
        store.clone(),
        id,
        calls.clone(),
    );
    let halt = other.start("r2", 2).await.unwrap_err();
    assert!(
        matches!(&halt, Halt::Diverged(why) if why.contains("fleet.start with other arguments")),
        "{halt:?}"
    );
    let backend = backend_of(other);
    let mut other = Durable::resume(session(clock.clone(), backend), store, id, calls);
    let halt = other.list().await.unwrap_err();
    assert!(
        matches!(&halt, Halt::Diverged(why) if why.contains("fleet.list where the log has fleet.start")),
        "{halt:?}"
    );
}

#[tokio::test]
async fn a_start_in_flight_at_the_crash_is_not_made_twice() {
    let (_dir, store, id) = store();
    let clock = Clock::virtual_at_zero();
    let first = Durable::start(session(clock.clone(), fleet(&clock)), store.clone(), id)
        .await
        .unwrap();
    let mut backend = backend_of(first);
    // The agent logged the intent, started the instance, and died.
    let mut calls = store.calls(id).unwrap();
    let args = super::digest("fleet.start", &("r2", 1u32));
    calls.push(CallRecord {
        seq: 1,
        func: "fleet.start".into(),
        digest: args,
        at_ms: 0,
        result: None,
    });
    store.write_calls(id, &calls[1..]).unwrap();
    let made = backend.start("r2", 1).await.unwrap();

    let mut again = Durable::resume(session(clock.clone(), backend), store.clone(), id, calls);
    let started = again.start("r2", 1).await.unwrap().unwrap();
    assert_eq!(started, made);
    let fleet = again.list().await.unwrap();
    assert_eq!(
        fleet.iter().filter(|i| i.revision == "r2").count(),
        1,
        "{fleet:?}"
    );
    // Its result is logged now, under the intent's position.
    drop(backend_of(again));
    let logged = store.calls(id).unwrap();
    assert_eq!(logged[1].func, "fleet.start");
    assert!(logged[1].result.is_some(), "{logged:?}");
}

#[tokio::test]
async fn a_sleep_in_flight_resumes_with_the_time_it_had_left() {
    let (_dir, store, id) = store();
    let clock = Clock::virtual_at_zero();
    let first = Durable::start(session(clock.clone(), fleet(&clock)), store.clone(), id)
        .await
        .unwrap();
    let backend = backend_of(first);
    let mut calls = store.calls(id).unwrap();
    calls.push(CallRecord {
        seq: 1,
        func: "clock.sleep".into(),
        digest: super::digest("clock.sleep", &10_000u64),
        at_ms: 0,
        result: None,
    });
    // The agent was down for 4 s of the 10 s sleep.
    clock.sleep_until(4_000).await;
    let mut again = Durable::resume(session(clock.clone(), backend), store, id, calls);
    again.sleep(10_000).await.unwrap();
    assert_eq!(again.now_ms(), 10_000);
    let probes = again.wait_ready(&[], 0).await.unwrap();
    assert!(probes.is_empty());
    let fleet = again.list().await.unwrap();
    assert!(
        fleet
            .iter()
            .all(|i| i.revision == "r1" && i.state == InstanceState::Ready),
        "{fleet:?}"
    );
}
