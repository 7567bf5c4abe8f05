//! The `sim` backend: a scripted fleet on the virtual clock.
//!
//! The fleet itself is [`rollout_fleet_sim`], the one model the policy
//! SDK's `FakeFleet` shares: each revision has a behaviour (start delay,
//! never ready, crash or turn unhealthy after a time, crash the first
//! starts or at random from a seed, log lines, traffic error rate and
//! latency), instances change state at known times, and every query first
//! replays the changes up to the clock's time in order, so the fleet's
//! extremes ([`Extremes`]) are exact even between effects. This module is
//! the host's side of it: the scenario's [`Behaviour`] (serde), the
//! [`Backend`] impl on the host's clock, and the changes as
//! [`Observation`]s. Nothing real runs: this is for `rollout test`, not a
//! stand-in for backend tests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rollout_fleet_sim::{Fleet, SimError, State};
use serde::Deserialize;

pub use rollout_fleet_sim::Extremes;

use super::{Backend, BackendError, Observation};
use crate::clock::Clock;
use crate::model::{
    Instance, InstanceId, InstanceState, Probe, RevisionId, RevisionStats, Verdict,
};

/// A log line an instance writes some time after it starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogLine {
    /// Time after start.
    #[serde(with = "crate::duration")]
    pub after: u64,
    /// The line.
    pub line: String,
}

/// How instances of one revision behave, as a scenario writes it
/// (`[revisions.NAME]`); the fleet's own [`rollout_fleet_sim::Behaviour`]
/// is made from it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Behaviour {
    /// Time from start to ready.
    #[serde(with = "crate::duration")]
    pub ready_after: u64,
    /// Never becomes ready.
    pub never_ready: bool,
    /// Crashes this long after start.
    #[serde(with = "crate::duration::option")]
    pub fails_after: Option<u64>,
    /// Fails its health check from this long after start (still running).
    #[serde(with = "crate::duration::option")]
    pub unhealthy_after: Option<u64>,
    /// The first this many instances of the revision crash when they would
    /// become ready.
    pub crash_first: u32,
    /// Probability (0..=1) that an instance crashes when it would become ready.
    pub flaky: f64,
    /// Lines each instance logs.
    pub logs: Vec<LogLine>,
    /// Share of requests that fail (0..=1).
    pub error_rate: f64,
    /// The errors begin this long after the revision's first instance
    /// started (a revision that degrades); default: from the start.
    #[serde(with = "crate::duration::option")]
    pub errors_after: Option<u64>,
    /// Median latency of a request.
    #[serde(with = "crate::duration")]
    pub latency: u64,
    /// 99th percentile latency (default: twice the median).
    #[serde(with = "crate::duration::option")]
    pub p99_latency: Option<u64>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            ready_after: 1_000,
            never_ready: false,
            fails_after: None,
            unhealthy_after: None,
            crash_first: 0,
            flaky: 0.0,
            logs: Vec::new(),
            error_rate: 0.0,
            errors_after: None,
            latency: 10,
            p99_latency: None,
        }
    }
}

impl From<&Behaviour> for rollout_fleet_sim::Behaviour {
    fn from(b: &Behaviour) -> Self {
        rollout_fleet_sim::Behaviour {
            ready_after_ms: (!b.never_ready).then_some(b.ready_after),
            fails_after_ms: b.fails_after,
            unhealthy_after_ms: b.unhealthy_after,
            logs: b.logs.iter().map(|l| (l.after, l.line.clone())).collect(),
            crash_first: b.crash_first,
            flaky: b.flaky,
            error_rate: b.error_rate,
            errors_after_ms: b.errors_after,
            latency_ms: b.latency,
            p99_latency_ms: b.p99_latency,
        }
    }
}

impl From<State> for InstanceState {
    fn from(state: State) -> Self {
        match state {
            State::Starting => InstanceState::Starting,
            State::Ready => InstanceState::Ready,
            State::Unhealthy => InstanceState::Unhealthy,
            State::Stopped => InstanceState::Stopped,
            State::Failed => InstanceState::Failed,
        }
    }
}

impl From<SimError> for BackendError {
    fn from(e: SimError) -> Self {
        match e {
            SimError::UnknownInstance(id) => BackendError::UnknownInstance(id),
            SimError::UnknownRevision(revision) => BackendError::UnknownRevision(revision),
        }
    }
}

/// A scripted fleet on the virtual clock.
pub struct SimBackend {
    clock: Clock,
    fleet: Fleet,
}

impl SimBackend {
    /// A fleet of `service` whose revisions behave as given; `seed` drives
    /// the flaky starts; traffic arrives at `requests_per_second`.
    pub fn new(
        clock: Clock,
        service: &str,
        behaviours: BTreeMap<RevisionId, rollout_fleet_sim::Behaviour>,
        seed: u64,
        requests_per_second: u64,
    ) -> Self {
        let fleet = Fleet::new(behaviours)
            .id_prefix(&format!("{service}-"))
            .seed(seed)
            .requests_per_second(requests_per_second);
        SimBackend { clock, fleet }
    }

    /// Add `count` ready instances of `revision` now: the fleet the
    /// rollout starts from.
    pub fn serve(&mut self, revision: &str, count: u32) {
        self.sync();
        self.fleet.serve(revision, count);
    }

    /// Extremes so far.
    pub fn extremes(&mut self) -> Extremes {
        self.sync();
        self.fleet.extremes()
    }

    /// Ready instances per revision now.
    pub fn ready_counts(&mut self) -> BTreeMap<RevisionId, u32> {
        self.sync();
        self.fleet.ready_counts()
    }

    /// Replay every scripted state change up to now, in time order.
    fn sync(&mut self) {
        self.fleet.advance_to(self.clock.now_ms());
    }

    fn view(&self, i: &rollout_fleet_sim::Instance) -> Instance {
        Instance {
            id: i.id.clone(),
            revision: i.revision.clone(),
            state: i.state().into(),
            address: Some(format!("sim://{}", i.id)),
            age_ms: self.fleet.now_ms().saturating_sub(i.started_ms),
        }
    }
}

#[async_trait]
impl Backend for SimBackend {
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError> {
        self.sync();
        Ok(self.fleet.list().map(|i| self.view(i)).collect())
    }

    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        self.sync();
        let started = self.fleet.start(revision, count)?;
        Ok(started.iter().map(|i| self.view(i)).collect())
    }

    async fn stop(&mut self, ids: &[InstanceId]) -> Result<(), BackendError> {
        self.sync();
        Ok(self.fleet.stop(ids)?)
    }

    async fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, BackendError> {
        self.sync();
        Ok(self.fleet.logs(id, max_lines)?)
    }

    async fn probe(&mut self, id: &str) -> Result<Probe, BackendError> {
        self.sync();
        let probe = self.fleet.probe(id)?;
        let verdict = match probe.state {
            State::Ready => Verdict::Healthy,
            State::Starting => Verdict::Unknown("starting".into()),
            State::Failed => Verdict::Unhealthy("exited".into()),
            other => Verdict::Unhealthy(other.name().into()),
        };
        Ok(Probe {
            instance: id.to_string(),
            verdict,
            latency_us: probe.latency_us,
        })
    }

    async fn set_weights(&mut self, weights: &[(RevisionId, u32)]) -> Result<(), BackendError> {
        Ok(self.fleet.set_weights(weights)?)
    }

    async fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        self.sync();
        let s = self.fleet.stats(revision, window_ms).unwrap_or_default();
        RevisionStats {
            revision: revision.to_string(),
            requests: s.requests,
            errors: s.errors,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        }
    }

    fn next_change_ms(&mut self) -> Option<u64> {
        self.sync();
        self.fleet.next_change_ms()
    }

    fn take_observations(&mut self) -> Vec<Observation> {
        self.sync();
        let observe = |c: rollout_fleet_sim::Change| Observation {
            at_ms: c.at_ms,
            instance: c.instance,
            revision: c.revision,
            state: c.state.into(),
        };
        self.fleet.take_changes().into_iter().map(observe).collect()
    }
}

#[cfg(test)]
mod tests {
    use rollout_fleet_sim::agreement::{self, Case, Subject};

    use super::*;
    use crate::executor::Session;
    use crate::executor::guardrails::{Count, GuardrailSpec};
    use crate::executor::operator::Operator;
    use crate::model::RolloutInfo;
    use crate::runtime::{Call, PolicyHost};

    fn sim(behaviour: Behaviour) -> (Clock, SimBackend) {
        let clock = Clock::virtual_at_zero();
        let revisions = BTreeMap::from([
            ("v1".into(), (&Behaviour::default()).into()),
            ("v2".into(), (&behaviour).into()),
        ]);
        let mut sim = SimBackend::new(clock.clone(), "web", revisions, 7, 100);
        sim.serve("v1", 2);
        (clock, sim)
    }

    #[tokio::test]
    async fn instances_follow_their_script_and_extremes_are_exact() {
        let b = Behaviour {
            ready_after: 5_000,
            fails_after: Some(8_000),
            ..Behaviour::default()
        };
        let (clock, mut sim) = sim(b);
        let started = sim.start("v2", 1).await.unwrap();
        sim.stop(&["web-v1-1".to_string()]).await.unwrap();
        assert_eq!(sim.next_change_ms(), Some(5_000));
        // Jump past both the ready and the crash without looking in between.
        clock.sleep_until(20_000).await;
        let probe = sim.probe(&started[0].id).await.unwrap();
        assert_eq!(probe.verdict, Verdict::Unhealthy("exited".into()));
        let e = sim.extremes();
        assert_eq!((e.max_instances, e.min_ready), (3, 1));
        let seen: Vec<_> = sim
            .take_observations()
            .into_iter()
            .map(|o| (o.at_ms, o.instance, o.state))
            .collect();
        assert_eq!(
            seen,
            vec![
                (5_000, "web-v2-3".into(), InstanceState::Ready),
                (8_000, "web-v2-3".into(), InstanceState::Failed)
            ]
        );
    }

    #[tokio::test]
    async fn flaky_starts_are_seeded() {
        let b = Behaviour {
            flaky: 0.5,
            ..Behaviour::default()
        };
        let run = || async {
            let (clock, mut sim) = sim(b.clone());
            sim.start("v2", 20).await.unwrap();
            clock.sleep_until(2_000).await;
            sim.ready_counts()["v2"]
        };
        let first = run().await;
        assert_eq!(first, run().await);
        assert!(first > 0 && first < 20, "{first} of 20 ready");
    }

    #[tokio::test]
    async fn logs_appear_on_time_and_unknown_ids_are_errors() {
        let b = Behaviour {
            logs: vec![LogLine {
                after: 3_000,
                line: "[ERROR] boom".into(),
            }],
            ..Behaviour::default()
        };
        let (clock, mut sim) = sim(b);
        let id = sim.start("v2", 1).await.unwrap()[0].id.clone();
        assert!(sim.logs(&id, 10).await.unwrap().is_empty());
        clock.sleep_until(3_000).await;
        assert_eq!(sim.logs(&id, 10).await.unwrap(), vec!["[ERROR] boom"]);
        assert_eq!(
            sim.probe("nope").await,
            Err(BackendError::UnknownInstance("nope".into()))
        );
        assert!(sim.start("v9", 1).await.is_err());
    }

    #[tokio::test]
    async fn traffic_splits_by_weight() {
        let b = Behaviour {
            error_rate: 0.2,
            ..Behaviour::default()
        };
        let (clock, mut sim) = sim(b);
        sim.start("v2", 1).await.unwrap();
        clock.sleep_until(1_000).await;
        sim.set_weights(&[("v1".into(), 75), ("v2".into(), 25)])
            .await
            .unwrap();
        let s = sim.stats("v2", 10_000).await;
        assert_eq!((s.requests, s.errors), (250, 50));
    }

    #[tokio::test]
    async fn a_degrading_revision_errs_only_after_its_onset() {
        let b = Behaviour {
            error_rate: 0.5,
            errors_after: Some(20_000),
            ..Behaviour::default()
        };
        let (clock, mut sim) = sim(b);
        sim.start("v2", 1).await.unwrap();
        sim.set_weights(&[("v2".into(), 100)]).await.unwrap();
        clock.sleep_until(20_000).await;
        let s = sim.stats("v2", 10_000).await;
        assert_eq!((s.requests, s.errors), (1_000, 0));
        // Half of the window lies after the onset, at half errors.
        clock.sleep_until(25_000).await;
        let s = sim.stats("v2", 10_000).await;
        assert_eq!((s.requests, s.errors), (1_000, 250));
        clock.sleep_until(40_000).await;
        let s = sim.stats("v2", 10_000).await;
        assert_eq!((s.requests, s.errors), (1_000, 500));
    }

    /// The sim backend as `rollout test` drives it, through the host's
    /// session (guardrails that refuse nothing), as one front of the
    /// shared agreement cases; the SDK's `FakeFleet` is the other.
    struct Host {
        runtime: tokio::runtime::Runtime,
        session: Option<Session>,
    }

    impl Host {
        fn new(case: &Case) -> Self {
            let clock = Clock::virtual_at_zero();
            let behaviours = case
                .revisions
                .iter()
                .map(|(revision, b)| (revision.to_string(), b.clone()))
                .collect();
            let mut sim = SimBackend::new(clock.clone(), "web", behaviours, 0, 100);
            sim.serve(case.from, case.serving);
            let info = RolloutInfo {
                service: "web".into(),
                from_revision: Some(case.from.into()),
                to_revision: case.to.into(),
                replicas: case.serving,
                params: Vec::new(),
            };
            let guardrails = GuardrailSpec {
                max_surge: Count::Absolute(100),
                min_available: Count::Absolute(0),
                ..GuardrailSpec::default()
            };
            let session =
                Session::new(info, Box::new(sim), clock, &guardrails, Operator::default());
            Host {
                runtime: tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("a runtime"),
                session: Some(session),
            }
        }

        /// Run one session call to its end; the cases never halt a rollout.
        fn call<T>(&mut self, call: impl AsyncFnOnce(&mut Session) -> Call<T>) -> T {
            let session = self.session.as_mut().expect("extremes come last");
            self.runtime.block_on(call(session)).expect("no halt")
        }
    }

    /// The cases name instances without the service: `web-v2-3` is `v2-3`.
    fn unprefixed(id: &str) -> String {
        id.strip_prefix("web-").unwrap_or(id).to_string()
    }

    fn prefixed(ids: &[String]) -> Vec<String> {
        ids.iter().map(|id| format!("web-{id}")).collect()
    }

    /// `healthy`, `unhealthy` or `unknown`, as the verdict's wire form
    /// names it.
    fn kind(verdict: &Verdict) -> String {
        let wire = serde_json::to_value(verdict).expect("a verdict serializes");
        wire["verdict"].as_str().unwrap_or_default().to_string()
    }

    impl Subject for Host {
        fn now_ms(&mut self) -> u64 {
            self.session.as_ref().expect("extremes come last").now_ms()
        }

        fn start(&mut self, revision: &str, count: u32) -> Vec<(String, String)> {
            let started = self
                .call(async |s| s.start(revision, count).await)
                .expect("started");
            let named = |i: Instance| (unprefixed(&i.id), i.state.name().to_string());
            started.into_iter().map(named).collect()
        }

        fn stop(&mut self, ids: &[String]) {
            let ids = prefixed(ids);
            self.call(async |s| s.stop(&ids).await).expect("stopped");
        }

        fn sleep(&mut self, ms: u64) {
            self.call(async |s| s.sleep(ms).await);
        }

        fn wait_ready(&mut self, ids: &[String], timeout_ms: u64) -> Vec<(String, String)> {
            let ids = prefixed(ids);
            let probes = self.call(async |s| s.wait_ready(&ids, timeout_ms).await);
            let judged = |p: Probe| (unprefixed(&p.instance), kind(&p.verdict));
            probes.into_iter().map(judged).collect()
        }

        fn list(&mut self) -> Vec<(String, String, u64)> {
            let listed = self.call(async |s| s.list().await);
            let shown = |i: Instance| (unprefixed(&i.id), i.state.name().to_string(), i.age_ms);
            listed.into_iter().map(shown).collect()
        }

        fn probe(&mut self, id: &str) -> (String, u64) {
            let id = format!("web-{id}");
            let probe = self.call(async |s| s.probe(&id).await);
            (kind(&probe.verdict), probe.latency_us)
        }

        fn logs(&mut self, id: &str, max_lines: u32) -> Vec<String> {
            let id = format!("web-{id}");
            self.call(async |s| s.logs(&id, max_lines).await)
                .expect("logs")
        }

        fn set_weights(&mut self, weights: &[(String, u32)]) {
            self.call(async |s| s.set_weights(weights).await)
                .expect("weights set");
        }

        fn stats(&mut self, revision: &str, window_ms: u64) -> [u64; 4] {
            let s = self.call(async |s| s.stats(revision, window_ms).await);
            [s.requests, s.errors, s.p50_us, s.p99_us]
        }

        /// Ends the session: the extremes are the backend's, read after.
        fn extremes(&mut self) -> Extremes {
            let session = self.session.take().expect("extremes come last");
            let (_, backend) = session.into_parts();
            let any: Box<dyn std::any::Any> = backend;
            let mut sim = any.downcast::<SimBackend>().expect("a SimBackend");
            sim.extremes()
        }
    }

    #[test]
    fn the_session_over_the_sim_gives_the_answers_the_sdk_fake_gives() {
        for case in agreement::cases() {
            let got = agreement::run(&case, &mut Host::new(&case));
            assert_eq!(got, case.expect, "{}", case.name);
        }
    }
}
