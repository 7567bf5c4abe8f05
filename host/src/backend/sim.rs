//! The `sim` backend: a scripted fleet on the virtual clock.
//!
//! Each revision has a [`Behaviour`] (start delay, never ready, crash after a
//! time, flaky starts with a seeded generator, log lines, traffic error rate
//! and latency). Instances change state at known times, kept in an event
//! queue; every query first replays the events up to the clock's time in
//! order, so the fleet's extremes ([`Extremes`]) are exact even between
//! effects. Nothing real runs: this is for `rollout test`, not a stand-in
//! for backend tests.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

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

/// How instances of one revision behave.
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
            flaky: 0.0,
            logs: Vec::new(),
            error_rate: 0.0,
            errors_after: None,
            latency: 10,
            p99_latency: None,
        }
    }
}

/// Extremes of the fleet over the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Extremes {
    /// Most instances not stopped at once.
    pub max_instances: u32,
    /// Fewest ready instances at once.
    pub min_ready: u32,
}

#[derive(Debug)]
struct SimInstance {
    id: InstanceId,
    revision: RevisionId,
    started_ms: u64,
    ready_at: Option<u64>,
    fails_at: Option<u64>,
    state: InstanceState,
}

/// A scripted fleet on the virtual clock.
pub struct SimBackend {
    clock: Clock,
    service: String,
    behaviours: BTreeMap<RevisionId, Behaviour>,
    instances: Vec<SimInstance>,
    by_id: HashMap<InstanceId, usize>,
    events: BinaryHeap<Reverse<(u64, usize)>>,
    rng: StdRng,
    running: u32,
    ready: u32,
    extremes: Extremes,
    observations: Vec<Observation>,
    weights: Vec<(RevisionId, u32)>,
    requests_per_second: u64,
}

impl SimBackend {
    /// A fleet of `service` whose revisions behave as given; `seed` drives
    /// the flaky starts; traffic arrives at `requests_per_second`.
    pub fn new(
        clock: Clock,
        service: &str,
        behaviours: BTreeMap<RevisionId, Behaviour>,
        seed: u64,
        requests_per_second: u64,
    ) -> Self {
        SimBackend {
            clock,
            service: service.to_string(),
            behaviours,
            instances: Vec::new(),
            by_id: HashMap::new(),
            events: BinaryHeap::new(),
            rng: StdRng::seed_from_u64(seed),
            running: 0,
            ready: 0,
            extremes: Extremes::default(),
            observations: Vec::new(),
            weights: Vec::new(),
            requests_per_second,
        }
    }

    /// Add `count` ready instances of `revision` at time 0: the fleet the
    /// rollout starts from.
    pub fn serve(&mut self, revision: &str, count: u32) {
        for _ in 0..count {
            let i = self.spawn(revision, Some(0), None);
            self.set_state(i, InstanceState::Ready, false);
        }
        self.extremes = Extremes {
            max_instances: self.running,
            min_ready: self.ready,
        };
    }

    /// Extremes so far.
    pub fn extremes(&mut self) -> Extremes {
        self.sync();
        self.extremes
    }

    /// Ready instances per revision now.
    pub fn ready_counts(&mut self) -> BTreeMap<RevisionId, u32> {
        self.sync();
        let mut counts: BTreeMap<RevisionId, u32> =
            self.behaviours.keys().map(|r| (r.clone(), 0)).collect();
        for i in &self.instances {
            if i.state == InstanceState::Ready {
                *counts.entry(i.revision.clone()).or_default() += 1;
            }
        }
        counts
    }

    fn spawn(&mut self, revision: &str, ready_at: Option<u64>, fails_at: Option<u64>) -> usize {
        let index = self.instances.len();
        let id = format!("{}-{revision}-{}", self.service, index + 1);
        self.instances.push(SimInstance {
            id: id.clone(),
            revision: revision.to_string(),
            started_ms: self.clock.now_ms(),
            ready_at,
            fails_at,
            state: InstanceState::Starting,
        });
        self.by_id.insert(id, index);
        self.running += 1;
        for at in [ready_at, fails_at].into_iter().flatten() {
            self.events.push(Reverse((at, index)));
        }
        index
    }

    /// Move instance `i` to `state`, keeping the counts and extremes.
    fn set_state(&mut self, i: usize, state: InstanceState, observe: bool) {
        let old = self.instances[i].state;
        if old == state {
            return;
        }
        let was_ready = old == InstanceState::Ready;
        let is_ready = state == InstanceState::Ready;
        self.ready = self.ready + u32::from(is_ready) - u32::from(was_ready);
        if old.counts() && !state.counts() {
            self.running -= 1;
        }
        self.instances[i].state = state;
        self.extremes.max_instances = self.extremes.max_instances.max(self.running);
        self.extremes.min_ready = self.extremes.min_ready.min(self.ready);
        if observe {
            let inst = &self.instances[i];
            let at = match state {
                InstanceState::Failed => inst.fails_at,
                _ => inst.ready_at,
            };
            self.observations.push(Observation {
                at_ms: at.unwrap_or_else(|| self.clock.now_ms()),
                instance: inst.id.clone(),
                revision: inst.revision.clone(),
                state,
            });
        }
    }

    /// Replay every scripted state change up to now, in time order.
    fn sync(&mut self) {
        let now = self.clock.now_ms();
        while let Some(&Reverse((at, i))) = self.events.peek() {
            if at > now {
                break;
            }
            self.events.pop();
            let inst = &self.instances[i];
            if inst.state == InstanceState::Stopped {
                continue;
            }
            let next = if inst.fails_at.is_some_and(|f| f <= at) {
                InstanceState::Failed
            } else if inst.ready_at.is_some_and(|r| r <= at) {
                InstanceState::Ready
            } else {
                continue;
            };
            self.set_state(i, next, true);
        }
    }

    fn find(&self, id: &str) -> Result<usize, BackendError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| BackendError::UnknownInstance(id.to_string()))
    }

    fn view(&self, i: &SimInstance, now: u64) -> Instance {
        Instance {
            id: i.id.clone(),
            revision: i.revision.clone(),
            state: i.state,
            address: Some(format!("sim://{}", i.id)),
            age_ms: now.saturating_sub(i.started_ms),
        }
    }

    fn behaviour(&self, revision: &str) -> Result<&Behaviour, BackendError> {
        self.behaviours
            .get(revision)
            .ok_or_else(|| BackendError::UnknownRevision(revision.to_string()))
    }
}

#[async_trait]
impl Backend for SimBackend {
    async fn list(&mut self) -> Result<Vec<Instance>, BackendError> {
        self.sync();
        let now = self.clock.now_ms();
        Ok(self
            .instances
            .iter()
            .filter(|i| i.state.counts())
            .map(|i| self.view(i, now))
            .collect())
    }

    async fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        self.sync();
        let b = self.behaviour(revision)?.clone();
        let now = self.clock.now_ms();
        let mut started = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let becomes_ready = now + b.ready_after;
            let crashes = b.flaky > 0.0 && self.rng.random_bool(b.flaky.clamp(0.0, 1.0));
            let fails_at = match (crashes, b.fails_after) {
                (true, _) => Some(becomes_ready),
                (false, after) => after.map(|a| now + a),
            };
            let ready_at = (!b.never_ready).then_some(becomes_ready);
            let i = self.spawn(revision, ready_at, fails_at);
            started.push(self.view(&self.instances[i], now));
        }
        self.extremes.max_instances = self.extremes.max_instances.max(self.running);
        self.sync();
        Ok(started)
    }

    async fn stop(&mut self, ids: &[InstanceId]) -> Result<(), BackendError> {
        self.sync();
        let indices = ids
            .iter()
            .map(|id| self.find(id))
            .collect::<Result<Vec<_>, _>>()?;
        for i in indices {
            self.set_state(i, InstanceState::Stopped, false);
        }
        Ok(())
    }

    async fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, BackendError> {
        self.sync();
        let inst = &self.instances[self.find(id)?];
        let now = self.clock.now_ms();
        let lines: Vec<String> = self
            .behaviour(&inst.revision)?
            .logs
            .iter()
            .filter(|l| inst.started_ms + l.after <= now)
            .map(|l| l.line.clone())
            .collect();
        let skip = lines.len().saturating_sub(max_lines as usize);
        Ok(lines[skip..].to_vec())
    }

    async fn probe(&mut self, id: &str) -> Result<Probe, BackendError> {
        self.sync();
        let inst = &self.instances[self.find(id)?];
        let verdict = match inst.state {
            InstanceState::Ready => Verdict::Healthy,
            InstanceState::Starting => Verdict::Unknown("starting".into()),
            InstanceState::Failed => Verdict::Unhealthy("exited".into()),
            other => Verdict::Unhealthy(other.name().into()),
        };
        let latency_us = self.behaviour(&inst.revision)?.latency * 1_000;
        Ok(Probe {
            instance: id.to_string(),
            verdict,
            latency_us,
        })
    }

    async fn set_weights(&mut self, weights: &[(RevisionId, u32)]) -> Result<(), BackendError> {
        for (revision, _) in weights {
            self.behaviour(revision)?;
        }
        self.weights = weights.to_vec();
        Ok(())
    }

    async fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        self.sync();
        let ready = |rev: &str| {
            let same = |i: &&SimInstance| i.revision == rev && i.state == InstanceState::Ready;
            self.instances.iter().filter(same).count() as u64
        };
        // Share of traffic: by weight when weights are set, else by ready instances.
        let (part, whole) = if self.weights.is_empty() {
            (ready(revision), u64::from(self.ready))
        } else {
            let weight = |(r, w): &(RevisionId, u32)| if r == revision { *w } else { 0 };
            let part = self.weights.iter().map(weight).sum::<u32>();
            let whole = self.weights.iter().map(|(_, w)| *w).sum::<u32>();
            (
                u64::from(part) * u64::from(ready(revision) > 0),
                u64::from(whole),
            )
        };
        let requests = match whole {
            0 => 0,
            _ => self.requests_per_second * window_ms / 1_000 * part / whole,
        };
        let Ok(b) = self.behaviour(revision) else {
            return RevisionStats {
                revision: revision.to_string(),
                ..RevisionStats::default()
            };
        };
        let now = self.clock.now_ms();
        let first = self
            .instances
            .iter()
            .filter(|i| i.revision == revision)
            .map(|i| i.started_ms)
            .min();
        let onset = b.errors_after.map(|ms| first.unwrap_or(now) + ms);
        let erring = requests as f64 * share_after(onset, now, window_ms);
        RevisionStats {
            revision: revision.to_string(),
            requests,
            errors: (erring * b.error_rate).round() as u64,
            p50_us: b.latency * 1_000,
            p99_us: b.p99_latency.unwrap_or(b.latency * 2) * 1_000,
        }
    }

    fn next_change_ms(&mut self) -> Option<u64> {
        self.sync();
        while let Some(&Reverse((at, i))) = self.events.peek() {
            if self.instances[i].state == InstanceState::Stopped {
                self.events.pop();
                continue;
            }
            return Some(at);
        }
        None
    }

    fn take_observations(&mut self) -> Vec<Observation> {
        self.sync();
        std::mem::take(&mut self.observations)
    }
}

/// The share of the window of `window_ms` ending at `now` that lies after
/// `onset` (all of it without one): the part of its requests that err.
fn share_after(onset: Option<u64>, now: u64, window_ms: u64) -> f64 {
    let Some(onset) = onset else { return 1.0 };
    let start = now.saturating_sub(window_ms);
    match window_ms {
        0 => 0.0,
        _ => now.saturating_sub(onset.max(start)) as f64 / window_ms as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(behaviour: Behaviour) -> (Clock, SimBackend) {
        let clock = Clock::virtual_at_zero();
        let revisions = BTreeMap::from([
            ("v1".into(), Behaviour::default()),
            ("v2".into(), behaviour),
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
}
