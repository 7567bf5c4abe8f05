//! A native test double of the host: an in-memory fleet on a virtual clock.
//!
//! [`FakeFleet`] implements [`crate::Host`], so `cargo test` runs a policy's
//! logic on the build machine without Wasm. Each revision gets a
//! [`Behaviour`] (ready after a delay or never, fails or turns unhealthy
//! after a time, crashes the first starts or at random from a seed, log
//! lines at times, the error rate and latency of the traffic it serves);
//! `sleep` and `wait-ready` advance the virtual clock at once. The fake
//! records every effect and the extremes of the fleet over time, which
//! tests assert on.
//!
//! The fleet is [`rollout_fleet_sim`], the model the host's `sim` backend
//! runs too, so instances change state at the same times and traffic
//! splits the same way: requests arrive at
//! [`FakeFleet::requests_per_second`] (default 100) and are split by the
//! weights last set with `set-weights` (a revision with no ready instance
//! gets none of its share), or by ready instances while no weights are set.
//! `stats(revision, window)` counts the requests of that split over the
//! window, with the revision's error rate and latency. Both are tested
//! against the same cases ([`rollout_fleet_sim::agreement`]).
//!
//! This is for unit tests of policy logic. `rollout test` runs the built
//! component in the real host against its `sim` backend, with guardrails.

use std::collections::{BTreeMap, BTreeSet};

use rollout_fleet_sim::State;

pub use rollout_fleet_sim::Behaviour;

use crate::{
    Clock, Command, Control, EffectError, Fleet, Health, Instance, InstanceId, InstanceState,
    Level, Outcome, ProbeResult, Progress, RevisionStats, RolloutInfo, Traffic, Verdict,
};

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

/// An in-memory fleet on a virtual clock, implementing [`crate::Host`].
#[derive(Debug, Clone)]
pub struct FakeFleet {
    sim: rollout_fleet_sim::Fleet,
    commands: Vec<(u64, Command)>,
    max_total: Option<u32>,
    journal: Vec<String>,
    check_ms: Option<u64>,
    /// Instances a probe saw unhealthy: the listing shows it from then on.
    probed_unhealthy: BTreeSet<InstanceId>,
}

impl Default for FakeFleet {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeFleet {
    /// An empty fleet at virtual time 0; a revision without a behaviour of
    /// its own never becomes ready ([`Behaviour::default`]).
    pub fn new() -> Self {
        FakeFleet {
            sim: rollout_fleet_sim::Fleet::new(BTreeMap::new()).fallback(Behaviour::default()),
            commands: Vec::new(),
            max_total: None,
            journal: Vec::new(),
            check_ms: None,
            probed_unhealthy: BTreeSet::new(),
        }
    }

    /// Add `count` instances of `revision`, ready at time 0 (and later
    /// starts of it ready at once, unless [`FakeFleet::behaviour`] says
    /// otherwise).
    pub fn serving(mut self, revision: &str, count: u32) -> Self {
        if !self.sim.behaviours().contains_key(revision) {
            self.sim.set_behaviour(revision, Behaviour::ready_after(0));
        }
        self.sim.serve(revision, count);
        self
    }

    /// What an interruption can leave: a ready stray of `v0` (an earlier
    /// rollout cut short), then `replicas` ready instances of `v1`, the
    /// first of which (`v1-2`) was killed by hand and is listed failed.
    pub fn after_an_interruption(replicas: u32) -> Self {
        FakeFleet::new()
            .serving("v0", 1)
            .serving("v1", replicas)
            .killed("v1-2")
    }

    /// Kill the instance `id` by hand before the rollout: it is listed
    /// failed from then on.
    pub fn killed(mut self, id: &str) -> Self {
        self.sim.kill(id).expect("a known instance");
        self
    }

    /// Set how new instances of `revision` behave.
    pub fn behaviour(mut self, revision: &str, behaviour: Behaviour) -> Self {
        self.sim.set_behaviour(revision, behaviour);
        self
    }

    /// The operator issues `command` at virtual time `at_ms` (seen at the
    /// next checkpoint).
    pub fn command_at(mut self, at_ms: u64, command: Command) -> Self {
        self.commands.push((at_ms, command));
        self
    }

    /// Refuse starts that would exceed `total` instances, like the host's
    /// max-surge guardrail (which counts the instances that occupy
    /// capacity: not the failed ones).
    pub fn max_total(mut self, total: u32) -> Self {
        self.max_total = Some(total);
        self
    }

    /// The host checks each ready instance every `ms` (its health
    /// interval), so the listing shows one that turned unhealthy only from
    /// its next check on (or from a `probe` that saw it). Default: at once.
    pub fn checked_every(mut self, ms: u64) -> Self {
        self.check_ms = Some(ms);
        self
    }

    /// Client traffic arrives at `rps` requests per second (default 100;
    /// 0 for an idle service).
    pub fn requests_per_second(mut self, rps: u64) -> Self {
        self.sim = self.sim.requests_per_second(rps);
        self
    }

    /// `seed` drives the flaky starts ([`Behaviour::flaky`]); default 0,
    /// as a scenario's.
    pub fn seed(mut self, seed: u64) -> Self {
        self.sim = self.sim.seed(seed);
        self
    }

    /// The weights last set with `set-weights` (empty: split by ready
    /// instances).
    pub fn weights(&self) -> &[(String, u32)] {
        self.sim.weights()
    }

    /// A [`RolloutInfo`] for this fleet.
    pub fn info(&self, from: &str, to: &str, replicas: u32) -> RolloutInfo {
        RolloutInfo {
            service: "test".into(),
            from_revision: (!from.is_empty()).then(|| from.to_string()),
            to_revision: to.into(),
            replicas,
            params: Vec::new(),
        }
    }

    /// [`FakeFleet::info`] with `params`.
    pub fn info_with(
        &self,
        from: &str,
        to: &str,
        replicas: u32,
        params: &[(&str, &str)],
    ) -> RolloutInfo {
        let mut info = self.info(from, to, replicas);
        info.params = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        info
    }

    /// Instances of `revision` that are ready now.
    pub fn count(&self, revision: &str) -> u32 {
        let counts = self.sim.ready_counts();
        counts.get(revision).copied().unwrap_or(0)
    }

    /// Most instances (not stopped) the fleet ever had.
    pub fn max_instances(&self) -> u32 {
        self.sim.extremes().max_instances
    }

    /// Fewest ready instances the fleet ever had.
    pub fn min_ready(&self) -> u32 {
        self.sim.extremes().min_ready
    }

    /// Every effect and log line, in order, stamped with virtual time.
    pub fn journal(&self) -> &[String] {
        &self.journal
    }

    /// The journal as one text, a line per entry (for `contains` checks).
    pub fn journal_text(&self) -> String {
        self.journal.join("\n")
    }

    /// Virtual milliseconds since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.sim.now_ms()
    }

    fn view(&self, i: &rollout_fleet_sim::Instance) -> Instance {
        let now = self.sim.now_ms();
        Instance {
            id: i.id.clone(),
            revision: i.revision.clone(),
            state: self.listed(i),
            address: None,
            age_ms: now - i.started_ms,
        }
    }

    /// What the host lists when it checks a ready instance every
    /// `check_ms` from when it became ready (`None`: continuously): turning
    /// unhealthy shows at the next check, or at a probe before it. A crash
    /// shows at once, as the host sees a process end.
    fn listed(&self, i: &rollout_fleet_sim::Instance) -> InstanceState {
        let state = i.state().into();
        let (Some(check), InstanceState::Unhealthy, false) =
            (self.check_ms, state, self.probed_unhealthy.contains(&i.id))
        else {
            return state;
        };
        let ready = i.ready_at.unwrap_or(i.started_ms);
        let broke = i.unhealthy_at.unwrap_or(i.started_ms);
        let seen = ready + (broke.saturating_sub(ready)).div_ceil(check.max(1)) * check;
        match self.sim.now_ms() >= seen {
            true => state,
            false => InstanceState::Ready,
        }
    }

    fn record(&mut self, line: String) {
        self.journal
            .push(format!("[{:>8}ms] {line}", self.sim.now_ms()));
    }

    fn probe_now(&self, id: &str) -> ProbeResult {
        let (verdict, latency_us) = match self.sim.probe(id) {
            Err(e) => (Verdict::Unhealthy(e.to_string()), 0),
            Ok(p) => match p.state {
                State::Ready => (Verdict::Healthy, p.latency_us),
                State::Starting => (Verdict::Unknown("not ready yet".into()), p.latency_us),
                state => (
                    Verdict::Unhealthy(format!("instance is {}", state.name())),
                    p.latency_us,
                ),
            },
        };
        ProbeResult {
            instance: id.into(),
            verdict,
            latency_us,
        }
    }
}

impl Fleet for FakeFleet {
    fn list(&mut self) -> Vec<Instance> {
        self.sim.list().map(|i| self.view(i)).collect()
    }

    fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, EffectError> {
        let failed = |i: &&rollout_fleet_sim::Instance| i.state() == State::Failed;
        let running = self.sim.list().filter(|i| !failed(i)).count() as u32;
        if let Some(max) = self.max_total.filter(|&max| running + count > max) {
            self.record(format!("start {revision} x{count}: refused"));
            return Err(EffectError::Guardrail(format!(
                "{running} + {count} instances exceeds {max}"
            )));
        }
        let started = self
            .sim
            .start(revision, count)
            .map_err(|e| EffectError::Invalid(e.to_string()))?;
        let ids: Vec<_> = started.iter().map(|i| i.id.as_str()).collect();
        self.record(format!("start {revision} x{count}: {}", ids.join(" ")));
        Ok(started.iter().map(|i| self.view(i)).collect())
    }

    fn stop(&mut self, ids: &[InstanceId]) -> Result<(), EffectError> {
        self.sim
            .stop(ids)
            .map_err(|e| EffectError::Invalid(e.to_string()))?;
        if !ids.is_empty() {
            self.record(format!("stop {}", ids.join(" ")));
        }
        Ok(())
    }

    fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, EffectError> {
        self.sim
            .logs(id, max_lines)
            .map_err(|e| EffectError::Invalid(e.to_string()))
    }
}

impl Health for FakeFleet {
    /// A probe sees the instance as it is, and the listing shows what it
    /// saw (the host applies a probe's outcome).
    fn probe(&mut self, id: &str) -> ProbeResult {
        if let Ok(i) = self.sim.instance(id)
            && i.state() == State::Unhealthy
        {
            self.probed_unhealthy.insert(id.to_string());
        }
        self.probe_now(id)
    }

    fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Vec<ProbeResult> {
        self.sim.settle(ids, timeout_ms);
        ids.iter()
            .map(|id| {
                let mut probe = self.probe_now(id);
                if let Verdict::Unknown(_) = probe.verdict {
                    probe.verdict = Verdict::Unknown(format!("not ready after {timeout_ms} ms"));
                }
                probe
            })
            .collect()
    }
}

impl Traffic for FakeFleet {
    fn set_weights(&mut self, weights: &[(String, u32)]) -> Result<(), EffectError> {
        let text: Vec<_> = weights.iter().map(|(r, w)| format!("{r}={w}")).collect();
        self.record(format!("weights {}", text.join(" ")));
        self.sim
            .set_weights(weights)
            .map_err(|e| EffectError::Invalid(e.to_string()))
    }

    /// As the `sim` backend: the revision's share of the traffic now
    /// (weights, or ready instances when none are set) over the window.
    fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        let s = self.sim.stats(revision, window_ms).unwrap_or_default();
        RevisionStats {
            revision: revision.into(),
            requests: s.requests,
            errors: s.errors,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        }
    }
}

impl Clock for FakeFleet {
    fn now_ms(&mut self) -> u64 {
        self.sim.now_ms()
    }

    fn sleep(&mut self, ms: u64) {
        self.sim.advance_to(self.sim.now_ms() + ms);
    }
}

impl Control for FakeFleet {
    fn checkpoint(&mut self, label: &str) -> Command {
        let now = self.sim.now_ms();
        let due: Vec<_> = self
            .commands
            .iter()
            .filter(|(at, _)| *at <= now)
            .cloned()
            .collect();
        self.commands.retain(|(at, _)| *at > now);
        let command = due.into_iter().map(|(_, c)| c).next_back();
        let command = command.unwrap_or(Command::Proceed);
        self.record(format!("checkpoint {label}: {command:?}"));
        command
    }

    fn log(&mut self, level: Level, message: &str) {
        self.record(format!("{level:?}: {message}"));
    }

    fn report(&mut self, progress: Progress) {
        self.record(format!(
            "step {}/{}: {}",
            progress.step, progress.steps, progress.message
        ));
    }
}

/// The reason of a rolled-back outcome; panics on any other (for tests).
pub fn rolled_back(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::RolledBack(why) => why,
        other => panic!("expected a rollback, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use rollout_fleet_sim::Extremes;
    use rollout_fleet_sim::agreement::{self, Case, Subject};

    use super::*;

    /// The fake as a policy drives it, as one front of the shared
    /// agreement cases; the host's session over its `sim` backend is the
    /// other.
    struct Fake(FakeFleet);

    impl Fake {
        fn new(case: &Case) -> Self {
            let fleet = case
                .revisions
                .iter()
                .fold(FakeFleet::new(), |f, (r, b)| f.behaviour(r, b.clone()));
            Fake(fleet.serving(case.from, case.serving))
        }
    }

    /// Lowercase name of a state, as in the WIT: the model's name of the
    /// state that maps to it (the fake lists no draining instance).
    fn state_name(state: InstanceState) -> &'static str {
        let states = [
            State::Starting,
            State::Ready,
            State::Unhealthy,
            State::Stopped,
            State::Failed,
        ];
        let same = |s: &State| InstanceState::from(*s) == state;
        states
            .into_iter()
            .find(same)
            .map_or("draining", State::name)
    }

    fn kind(verdict: &Verdict) -> String {
        match verdict {
            Verdict::Healthy => "healthy",
            Verdict::Unhealthy(_) => "unhealthy",
            Verdict::Unknown(_) => "unknown",
        }
        .to_string()
    }

    impl Subject for Fake {
        fn now_ms(&mut self) -> u64 {
            Clock::now_ms(&mut self.0)
        }

        fn start(&mut self, revision: &str, count: u32) -> Vec<(String, String)> {
            let started = Fleet::start(&mut self.0, revision, count).expect("started");
            let named = |i: Instance| (i.id, state_name(i.state).to_string());
            started.into_iter().map(named).collect()
        }

        fn stop(&mut self, ids: &[String]) {
            Fleet::stop(&mut self.0, ids).expect("stopped");
        }

        fn sleep(&mut self, ms: u64) {
            Clock::sleep(&mut self.0, ms);
        }

        fn wait_ready(&mut self, ids: &[String], timeout_ms: u64) -> Vec<(String, String)> {
            let probes = self.0.wait_ready(ids, timeout_ms);
            let judged = |p: ProbeResult| (p.instance, kind(&p.verdict));
            probes.into_iter().map(judged).collect()
        }

        fn list(&mut self) -> Vec<(String, String, u64)> {
            let shown = |i: Instance| (i.id, state_name(i.state).to_string(), i.age_ms);
            Fleet::list(&mut self.0).into_iter().map(shown).collect()
        }

        fn probe(&mut self, id: &str) -> (String, u64) {
            let probe = Health::probe(&mut self.0, id);
            (kind(&probe.verdict), probe.latency_us)
        }

        fn logs(&mut self, id: &str, max_lines: u32) -> Vec<String> {
            Fleet::logs(&mut self.0, id, max_lines).expect("logs")
        }

        fn set_weights(&mut self, weights: &[(String, u32)]) {
            self.0.set_weights(weights).expect("weights set");
        }

        fn stats(&mut self, revision: &str, window_ms: u64) -> [u64; 4] {
            let s = Traffic::stats(&mut self.0, revision, window_ms);
            [s.requests, s.errors, s.p50_us, s.p99_us]
        }

        fn extremes(&mut self) -> Extremes {
            Extremes {
                max_instances: self.0.max_instances(),
                min_ready: self.0.min_ready(),
            }
        }
    }

    #[test]
    fn the_fake_gives_the_answers_the_host_sim_gives() {
        for case in agreement::cases() {
            let got = agreement::run(&case, &mut Fake::new(&case));
            assert_eq!(got, case.expect, "{}", case.name);
        }
    }

    #[test]
    fn traffic_splits_by_weight_like_the_sim() {
        let mut fleet = FakeFleet::new().serving("v1", 3).behaviour(
            "v2",
            Behaviour::ready_after(1_000).erroring(0.2).latency(20),
        );
        // No weights: split by ready instances.
        assert_eq!(fleet.stats("v1", 10_000).requests, 1_000);
        fleet.start("v2", 1).unwrap();
        fleet
            .set_weights(&[("v1".into(), 75), ("v2".into(), 25)])
            .unwrap();
        // Weighted, but v2 has no ready instance yet: its share is lost.
        assert_eq!(fleet.stats("v2", 10_000).requests, 0);
        fleet.sleep(1_000);
        let s = fleet.stats("v2", 10_000);
        assert_eq!(
            (s.requests, s.errors, s.p50_us, s.p99_us),
            (250, 50, 20_000, 40_000)
        );
        assert_eq!(fleet.stats("v1", 10_000).requests, 750);
        let mut idle = fleet.clone().requests_per_second(0);
        assert_eq!(idle.stats("v1", 10_000).requests, 0);
    }
}
