//! The executor on the sim backend: the test plays the policy, calling the
//! session's imports directly on the virtual clock.

use std::collections::BTreeMap;

use super::Session;
use crate::backend::sim::{Behaviour, SimBackend};
use crate::clock::Clock;
use crate::executor::guardrails::{Count, GuardrailSpec};
use crate::executor::operator::{Action, Operator};
use crate::journal::Kind;
use crate::model::{Command, EffectError, InstanceState, Level, Outcome, RolloutInfo, Verdict};
use crate::runtime::{Halt, PolicyHost};

/// Four ready instances of r1; r2 becomes ready 3 s after it starts, r3
/// never does.
fn session(guardrails: GuardrailSpec, commands: Vec<(u64, Action)>) -> Session {
    let r2 = Behaviour {
        ready_after: 3_000,
        ..Behaviour::default()
    };
    session_with(guardrails, commands, r2)
}

/// As [`session`], with `r2` behaving as told.
fn session_with(guardrails: GuardrailSpec, commands: Vec<(u64, Action)>, r2: Behaviour) -> Session {
    let clock = Clock::virtual_at_zero();
    let behaviours = BTreeMap::from([
        ("r1".to_string(), (&Behaviour::default()).into()),
        ("r2".to_string(), (&r2).into()),
        (
            "r3".to_string(),
            (&Behaviour {
                never_ready: true,
                ..Behaviour::default()
            })
                .into(),
        ),
    ]);
    let mut sim = SimBackend::new(clock.clone(), "web", behaviours, 1, 100);
    sim.serve("r1", 4);
    let info = RolloutInfo {
        service: "web".into(),
        from_revision: Some("r1".into()),
        to_revision: "r2".into(),
        replicas: 4,
        params: Vec::new(),
    };
    Session::new(
        info,
        Box::new(sim),
        clock,
        &guardrails,
        Operator::scripted(commands),
    )
}

/// Guardrails of one surge instance and three ready of four.
fn one_at_a_time() -> GuardrailSpec {
    GuardrailSpec {
        max_surge: Count::Absolute(1),
        min_available: Count::Absolute(3),
        ..GuardrailSpec::default()
    }
}

fn journal_has(session: &Session, kind: Kind, text: &str) -> bool {
    session
        .journal()
        .entries()
        .iter()
        .any(|e| e.kind == kind && e.text.contains(text))
}

fn ready_ids(instances: &[crate::model::Instance], revision: &str) -> Vec<String> {
    instances
        .iter()
        .filter(|i| i.revision == revision && i.state == InstanceState::Ready)
        .map(|i| i.id.clone())
        .collect()
}

#[tokio::test]
async fn a_start_past_max_surge_is_refused_and_journaled() {
    let mut s = session(one_at_a_time(), vec![]);
    let started = s.start("r2", 1).await.unwrap().unwrap();
    assert_eq!(started.len(), 1);
    let refused = s.start("r2", 1).await.unwrap().unwrap_err();
    assert!(
        matches!(&refused, EffectError::Guardrail(m) if m.contains("max-surge")),
        "{refused:?}"
    );
    assert!(journal_has(
        &s,
        Kind::Refused,
        "start r2 x1: guardrail: max-surge"
    ));
    assert_eq!(s.list().await.unwrap().len(), 5);
}

#[tokio::test]
async fn a_failed_instance_does_not_count_against_max_surge() {
    let crashing = Behaviour {
        ready_after: 100,
        fails_after: Some(500),
        ..Behaviour::default()
    };
    let mut s = session_with(one_at_a_time(), vec![], crashing);
    let first = s.start("r2", 1).await.unwrap().unwrap();
    s.sleep(1_000).await.unwrap();
    let fleet = s.list().await.unwrap();
    let crashed = fleet.iter().find(|i| i.id == first[0].id).unwrap();
    assert_eq!(crashed.state, InstanceState::Failed);
    // Four of r1 and a failed r2 listed: the failed one occupies nothing.
    let again = s.start("r2", 1).await.unwrap();
    assert!(again.is_ok(), "{again:?}");
}

#[tokio::test]
async fn a_stop_below_min_available_is_refused() {
    let mut s = session(one_at_a_time(), vec![]);
    let fleet = s.list().await.unwrap();
    let r1 = ready_ids(&fleet, "r1");
    s.stop(&r1[..1]).await.unwrap().unwrap();
    let refused = s.stop(&r1[1..2]).await.unwrap().unwrap_err();
    assert!(
        matches!(&refused, EffectError::Guardrail(m) if m.contains("min-available")),
        "{refused:?}"
    );
    let unknown = s
        .stop(&["web-nope".to_string()])
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(unknown, EffectError::Invalid(_)), "{unknown:?}");
}

#[tokio::test]
async fn only_the_rollouts_revisions_may_start() {
    let mut s = session(GuardrailSpec::default(), vec![]);
    let refused = s.start("r9", 1).await.unwrap().unwrap_err();
    assert!(
        matches!(&refused, EffectError::Invalid(m) if m.contains("not part of this rollout")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn wait_ready_jumps_the_virtual_clock_to_readiness() {
    let mut s = session(one_at_a_time(), vec![]);
    let ids: Vec<_> = s
        .start("r2", 1)
        .await
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    let probes = s.wait_ready(&ids, 60_000).await.unwrap();
    assert_eq!(probes[0].verdict, Verdict::Healthy);
    assert_eq!(s.now_ms(), 3_000);
    assert!(journal_has(&s, Kind::Fleet, "(r2) is ready"));
}

#[tokio::test]
async fn wait_ready_gives_up_at_its_timeout() {
    let mut s = session(one_at_a_time(), vec![]);
    let ids = vec![s.start("r2", 1).await.unwrap().unwrap()[0].id.clone()];
    let probes = s.wait_ready(&ids, 500).await.unwrap();
    assert!(
        matches!(&probes[0].verdict, Verdict::Unknown(why) if why.contains("not ready after 500 ms")),
        "{probes:?}"
    );
    assert_eq!(s.now_ms(), 500);
}

#[tokio::test]
async fn an_operator_abort_stops_growth_and_reaches_the_checkpoint() {
    let mut s = session(GuardrailSpec::default(), vec![(1_000, Action::Abort)]);
    assert_eq!(s.checkpoint("before").await.unwrap(), Command::Proceed);
    // The abort ends a long sleep when it arrives.
    s.sleep(60_000).await.unwrap();
    assert_eq!(s.now_ms(), 1_000);
    let refused = s.start("r2", 1).await.unwrap().unwrap_err();
    assert!(matches!(refused, EffectError::Aborted(_)), "{refused:?}");
    let refused = s.set_weights(&[("r2".into(), 10)]).await.unwrap();
    assert!(
        matches!(refused, Err(EffectError::Aborted(_))),
        "{refused:?}"
    );
    // The old revision may still grow: that is how a policy rolls back.
    assert!(s.set_weights(&[("r1".into(), 100)]).await.unwrap().is_ok());
    let command = s.checkpoint("after").await.unwrap();
    assert!(
        matches!(&command, Command::Abort(why) if why.contains("operator")),
        "{command:?}"
    );
}

#[tokio::test]
async fn a_promote_is_seen_by_one_checkpoint() {
    let mut s = session(GuardrailSpec::default(), vec![(0, Action::Promote)]);
    assert_eq!(s.checkpoint("a").await.unwrap(), Command::Promote);
    assert_eq!(s.checkpoint("b").await.unwrap(), Command::Proceed);
}

#[tokio::test]
async fn a_pause_holds_the_policy_until_resumed() {
    let commands = vec![(100, Action::Pause), (5_000, Action::Resume)];
    let mut s = session(GuardrailSpec::default(), commands);
    s.sleep(200).await.unwrap();
    s.list().await.unwrap();
    assert_eq!(s.now_ms(), 5_000);
}

#[tokio::test]
async fn a_pause_never_resumed_halts_on_the_virtual_clock() {
    let mut s = session(GuardrailSpec::default(), vec![(0, Action::Pause)]);
    assert_eq!(s.list().await.unwrap_err(), Halt::PausedForever);
}

#[tokio::test]
async fn the_rollout_deadline_halts_a_sleep() {
    let guardrails = GuardrailSpec {
        deadline: 10_000,
        ..GuardrailSpec::default()
    };
    let mut s = session(guardrails, vec![]);
    assert_eq!(s.sleep(60_000).await.unwrap_err(), Halt::Deadline(10_000));
    assert_eq!(s.now_ms(), 10_001);
}

#[tokio::test]
async fn the_progress_deadline_cuts_a_wait_on_the_new_revision_short() {
    let guardrails = GuardrailSpec {
        progress_deadline: 2_000,
        ..one_at_a_time()
    };
    let mut s = session(guardrails, vec![]);
    s.report(crate::model::Progress {
        step: 1,
        steps: 4,
        message: "one".into(),
    });
    let ids = vec![s.start("r2", 1).await.unwrap().unwrap()[0].id.clone()];
    let probes = s.wait_ready(&ids, 60_000).await.unwrap();
    assert!(
        matches!(&probes[0].verdict, Verdict::Unknown(why) if why.contains("progress deadline of 2000 ms")),
        "{probes:?}"
    );
    let command = s.checkpoint("stalled").await.unwrap();
    assert!(matches!(command, Command::Abort(_)), "{command:?}");
    assert!(journal_has(
        &s,
        Kind::Host,
        "progress deadline of 2000 ms exceeded"
    ));
}

#[tokio::test]
async fn restore_brings_the_old_revision_back_and_stops_the_new() {
    let mut s = session(one_at_a_time(), vec![]);
    // Half a rollout: two r1 replaced by r2.
    for _ in 0..2 {
        let ids = vec![s.start("r2", 1).await.unwrap().unwrap()[0].id.clone()];
        s.wait_ready(&ids, 60_000).await.unwrap();
        let fleet = s.list().await.unwrap();
        s.stop(&ready_ids(&fleet, "r1")[..1])
            .await
            .unwrap()
            .unwrap();
    }
    let said = s.restore().await;
    assert!(said.starts_with("fleet restored"), "{said}");
    let fleet = s.list().await.unwrap();
    assert_eq!(ready_ids(&fleet, "r1").len(), 4);
    assert!(fleet.iter().all(|i| i.revision == "r1"), "{fleet:?}");
}

#[tokio::test]
async fn a_completed_claim_short_of_replicas_fails_and_restores() {
    let mut s = session(one_at_a_time(), vec![]);
    let ids = vec![s.start("r2", 1).await.unwrap().unwrap()[0].id.clone()];
    s.wait_ready(&ids, 60_000).await.unwrap();
    let outcome = s.verify("liar", Outcome::Completed).await;
    assert!(
        matches!(&outcome, Outcome::Failed(why)
            if why.contains("only 1 of 4 instances of r2 are ready") && why.contains("fleet restored")),
        "{outcome:?}"
    );
    let rolled_back = Outcome::RolledBack("bad".into());
    assert_eq!(s.verify("honest", rolled_back.clone()).await, rolled_back);
}

#[tokio::test]
async fn policy_logs_and_steps_are_journaled_by_name() {
    let mut s = session(GuardrailSpec::default(), vec![]);
    s.log(Level::Warn, "careful");
    s.report(crate::model::Progress {
        step: 2,
        steps: 5,
        message: "half".into(),
    });
    assert!(journal_has(&s, Kind::Log, "[warn] careful"));
    assert!(journal_has(&s, Kind::Progress, "step 2/5: half"));
    assert_eq!(s.last_step(), "step 2/5 (half)");
    assert_eq!(s.step_number(), Some(2));
}
