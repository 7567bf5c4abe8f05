//! A native test double of the host: an in-memory fleet on a virtual clock.
//!
//! [`FakeFleet`] implements [`crate::Host`], so `cargo test` runs a policy's
//! logic on the build machine without Wasm. Each revision gets a
//! [`Behaviour`] (ready after a delay or never, fails after a time, log lines
//! at times, the error rate and latency of the traffic it serves); `sleep`
//! and `wait-ready` advance the virtual clock at once. The fake records every
//! effect and the extremes of the fleet over time, which tests assert on.
//!
//! Traffic follows the host's `sim` backend: requests arrive at
//! [`FakeFleet::requests_per_second`] (default 100) and are split by the
//! weights last set with `set-weights` (a revision with no ready instance
//! gets none of its share), or by ready instances while no weights are set.
//! `stats(revision, window)` counts the requests of that split over the
//! window, with the revision's error rate and latency.
//!
//! This is for unit tests of policy logic. `rollout test` runs the built
//! component in the real host against its `sim` backend, with guardrails.

use std::collections::BTreeMap;

use crate::{
    Clock, Command, Control, EffectError, Fleet, Health, Instance, InstanceId, InstanceState,
    Level, Outcome, ProbeResult, Progress, RevisionStats, RolloutInfo, Traffic, Verdict,
};

/// How instances of one revision behave, in milliseconds since each started.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Ready this long after start; `None` never.
    pub ready_after_ms: Option<u64>,
    /// Crashes this long after start.
    pub fails_after_ms: Option<u64>,
    /// Fails its health check from this long after start (still running).
    pub unhealthy_after_ms: Option<u64>,
    /// Log lines, each written this long after start.
    pub logs: Vec<(u64, String)>,
    /// The first this many instances started crash instead of becoming ready.
    pub crash_first: u32,
    /// Share of the revision's requests that fail (0..=1); default 0.
    pub error_rate: f64,
    /// The errors begin this long after the revision's first instance
    /// started; `None`: from the start.
    pub errors_after_ms: Option<u64>,
    /// Median latency of a request in ms; default 10, as in the `sim` backend.
    pub latency_ms: u64,
    /// 99th percentile latency in ms; default twice the median.
    pub p99_latency_ms: Option<u64>,
}

impl Default for Behaviour {
    /// Never ready, no failures, 10 ms median latency: the `sim` backend's
    /// traffic defaults.
    fn default() -> Self {
        Behaviour {
            ready_after_ms: None,
            fails_after_ms: None,
            unhealthy_after_ms: None,
            logs: Vec::new(),
            crash_first: 0,
            error_rate: 0.0,
            errors_after_ms: None,
            latency_ms: 10,
            p99_latency_ms: None,
        }
    }
}

impl Behaviour {
    /// Instances become ready `ms` after they start.
    pub fn ready_after(ms: u64) -> Self {
        Behaviour {
            ready_after_ms: Some(ms),
            ..Behaviour::default()
        }
    }

    /// Instances never become ready.
    pub fn never_ready() -> Self {
        Behaviour::default()
    }

    /// Instances crash `ms` after they start.
    pub fn failing_after(mut self, ms: u64) -> Self {
        self.fails_after_ms = Some(ms);
        self
    }

    /// Instances fail their health check from `ms` after they start (a
    /// release that breaks once it runs); with
    /// [`FakeFleet::checked_every`], the listing shows it from their next
    /// check on.
    pub fn unhealthy_after(mut self, ms: u64) -> Self {
        self.unhealthy_after_ms = Some(ms);
        self
    }

    /// The first `n` instances started crash when they would become ready.
    pub fn crashing_first(mut self, n: u32) -> Self {
        self.crash_first = n;
        self
    }

    /// Instances write `line` `ms` after they start.
    pub fn logging(mut self, ms: u64, line: &str) -> Self {
        self.logs.push((ms, line.to_string()));
        self
    }

    /// A share `rate` (0..=1) of the revision's requests fail.
    pub fn erroring(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// The errors of [`Behaviour::erroring`] begin `ms` after the
    /// revision's first instance started (a revision that degrades).
    pub fn erroring_after(mut self, ms: u64) -> Self {
        self.errors_after_ms = Some(ms);
        self
    }

    /// Requests take `ms` (median; the p99 is twice that unless set).
    pub fn latency(mut self, ms: u64) -> Self {
        self.latency_ms = ms;
        self
    }

    /// The 99th percentile of request latency is `ms`.
    pub fn p99_latency(mut self, ms: u64) -> Self {
        self.p99_latency_ms = Some(ms);
        self
    }
}

#[derive(Debug, Clone)]
struct FakeInstance {
    id: InstanceId,
    revision: String,
    started_ms: u64,
    stopped_ms: Option<u64>,
    behaviour: Behaviour,
    /// A probe saw it unhealthy: the listing shows it from then on.
    probed_unhealthy: bool,
}

impl FakeInstance {
    /// What the instance is at `now`.
    fn state_at(&self, now: u64) -> InstanceState {
        let since = |ms: Option<u64>| ms.is_some_and(|ms| now >= self.started_ms + ms);
        if self.stopped_ms.is_some() {
            InstanceState::Stopped
        } else if since(self.behaviour.fails_after_ms) {
            InstanceState::Failed
        } else if since(self.behaviour.ready_after_ms) && since(self.behaviour.unhealthy_after_ms) {
            InstanceState::Unhealthy
        } else if since(self.behaviour.ready_after_ms) {
            InstanceState::Ready
        } else {
            InstanceState::Starting
        }
    }

    /// What the host lists at `now` when it checks a ready instance every
    /// `check_ms` from when it became ready (`None`: continuously): turning
    /// unhealthy shows at the next check, or at a probe before it. A crash
    /// shows at once, as the host sees a process end.
    fn listed_at(&self, now: u64, check_ms: Option<u64>) -> InstanceState {
        let state = self.state_at(now);
        let (Some(check), InstanceState::Unhealthy, false) =
            (check_ms, state, self.probed_unhealthy)
        else {
            return state;
        };
        let ready = self.started_ms + self.behaviour.ready_after_ms.unwrap_or(0);
        let broke = self.started_ms + self.behaviour.unhealthy_after_ms.unwrap_or(0);
        let seen = ready + (broke.saturating_sub(ready)).div_ceil(check.max(1)) * check;
        match now >= seen {
            true => state,
            false => InstanceState::Ready,
        }
    }

    /// Times at which this instance changes state on its own.
    fn transitions(&self) -> impl Iterator<Item = u64> + '_ {
        let b = &self.behaviour;
        [b.ready_after_ms, b.fails_after_ms, b.unhealthy_after_ms]
            .into_iter()
            .flatten()
            .map(|ms| self.started_ms + ms)
    }
}

/// The share of the window of `window_ms` ending at `now` that lies after
/// `onset` (all of it without one), as the `sim` backend counts errors.
fn share_after(onset: Option<u64>, now: u64, window_ms: u64) -> f64 {
    let Some(onset) = onset else { return 1.0 };
    let start = now.saturating_sub(window_ms);
    match window_ms {
        0 => 0.0,
        _ => now.saturating_sub(onset.max(start)) as f64 / window_ms as f64,
    }
}

/// An in-memory fleet on a virtual clock, implementing [`crate::Host`].
#[derive(Debug, Clone)]
pub struct FakeFleet {
    now: u64,
    instances: Vec<FakeInstance>,
    behaviours: BTreeMap<String, Behaviour>,
    commands: Vec<(u64, Command)>,
    max_total: Option<u32>,
    journal: Vec<String>,
    max_instances: u32,
    min_ready: Option<u32>,
    weights: Vec<(String, u32)>,
    requests_per_second: u64,
    check_ms: Option<u64>,
}

impl Default for FakeFleet {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeFleet {
    /// An empty fleet at virtual time 0.
    pub fn new() -> Self {
        FakeFleet {
            now: 0,
            instances: Vec::new(),
            behaviours: BTreeMap::new(),
            commands: Vec::new(),
            max_total: None,
            journal: Vec::new(),
            max_instances: 0,
            min_ready: None,
            weights: Vec::new(),
            requests_per_second: 100,
            check_ms: None,
        }
    }

    /// Add `count` instances of `revision`, ready at time 0.
    pub fn serving(mut self, revision: &str, count: u32) -> Self {
        let behaviour = Behaviour::ready_after(0);
        for _ in 0..count {
            self.spawn(revision, behaviour.clone());
        }
        self.behaviours.entry(revision.into()).or_insert(behaviour);
        self.sample();
        self
    }

    /// Set how new instances of `revision` behave (default: ready at once).
    pub fn behaviour(mut self, revision: &str, behaviour: Behaviour) -> Self {
        self.behaviours.insert(revision.into(), behaviour);
        self
    }

    /// The operator issues `command` at virtual time `at_ms` (seen at the
    /// next checkpoint).
    pub fn command_at(mut self, at_ms: u64, command: Command) -> Self {
        self.commands.push((at_ms, command));
        self
    }

    /// Refuse starts that would exceed `total` instances, like the host's
    /// max-surge guardrail.
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
        self.requests_per_second = rps;
        self
    }

    /// The weights last set with `set-weights` (empty: split by ready
    /// instances).
    pub fn weights(&self) -> &[(String, u32)] {
        &self.weights
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
        self.instances
            .iter()
            .filter(|i| i.revision == revision && i.state_at(self.now) == InstanceState::Ready)
            .count() as u32
    }

    /// Most instances (not stopped) the fleet ever had.
    pub fn max_instances(&self) -> u32 {
        self.max_instances
    }

    /// Fewest ready instances the fleet ever had.
    pub fn min_ready(&self) -> u32 {
        self.min_ready.unwrap_or(0)
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
        self.now
    }

    fn spawn(&mut self, revision: &str, mut behaviour: Behaviour) -> Instance {
        let earlier = self.instances.iter().filter(|i| i.revision == revision);
        if (earlier.count() as u32) < behaviour.crash_first {
            behaviour.fails_after_ms = Some(behaviour.ready_after_ms.unwrap_or(0));
        }
        let id = format!("{revision}-{}", self.instances.len() + 1);
        let instance = FakeInstance {
            id,
            revision: revision.into(),
            started_ms: self.now,
            stopped_ms: None,
            behaviour,
            probed_unhealthy: false,
        };
        self.instances.push(instance.clone());
        self.view(&instance)
    }

    fn view(&self, i: &FakeInstance) -> Instance {
        Instance {
            id: i.id.clone(),
            revision: i.revision.clone(),
            state: i.listed_at(self.now, self.check_ms),
            address: None,
            age_ms: self.now - i.started_ms,
        }
    }

    fn find(&self, id: &str) -> Option<&FakeInstance> {
        self.instances.iter().find(|i| i.id == id)
    }

    fn record(&mut self, line: String) {
        self.journal.push(format!("[{:>8}ms] {line}", self.now));
    }

    fn sample(&mut self) {
        let now = self.now;
        let states = self.instances.iter().map(|i| i.state_at(now));
        let (total, ready) = states.fold((0, 0), |(t, r), s| match s {
            InstanceState::Stopped => (t, r),
            InstanceState::Ready => (t + 1, r + 1),
            _ => (t + 1, r),
        });
        self.max_instances = self.max_instances.max(total);
        self.min_ready = Some(self.min_ready.map_or(ready, |m| m.min(ready)));
    }

    /// Move the clock to `to`, sampling the fleet at every state change.
    fn advance(&mut self, to: u64) {
        let mut times: Vec<u64> = self
            .instances
            .iter()
            .filter(|i| i.stopped_ms.is_none())
            .flat_map(|i| i.transitions().collect::<Vec<_>>())
            .filter(|&t| t > self.now && t <= to)
            .collect();
        times.sort_unstable();
        for t in times {
            self.now = t;
            self.sample();
        }
        self.now = self.now.max(to);
    }

    fn probe_now(&self, id: &str) -> ProbeResult {
        let verdict = match self.find(id).map(|i| i.state_at(self.now)) {
            None => Verdict::Unhealthy(format!("no instance {id}")),
            Some(InstanceState::Ready) => Verdict::Healthy,
            Some(InstanceState::Starting) => Verdict::Unknown("not ready yet".into()),
            Some(state) => Verdict::Unhealthy(format!("instance is {}", state_name(state))),
        };
        ProbeResult {
            instance: id.into(),
            verdict,
            latency_us: 0,
        }
    }
}

/// Lowercase name of a state, as in the WIT (`failed`, `unhealthy`...).
fn state_name(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Starting => "starting",
        InstanceState::Ready => "ready",
        InstanceState::Unhealthy => "unhealthy",
        InstanceState::Draining => "draining",
        InstanceState::Stopped => "stopped",
        InstanceState::Failed => "failed",
    }
}

impl Fleet for FakeFleet {
    fn list(&mut self) -> Vec<Instance> {
        let now = self.now;
        self.instances
            .iter()
            .filter(|i| i.state_at(now) != InstanceState::Stopped)
            .map(|i| self.view(i))
            .collect()
    }

    fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, EffectError> {
        let running = self.list().len() as u32;
        if let Some(max) = self.max_total.filter(|&max| running + count > max) {
            self.record(format!("start {revision} x{count}: refused"));
            return Err(EffectError::Guardrail(format!(
                "{running} + {count} instances exceeds {max}"
            )));
        }
        let behaviour = self.behaviours.get(revision).cloned().unwrap_or_default();
        let started: Vec<_> = (0..count)
            .map(|_| self.spawn(revision, behaviour.clone()))
            .collect();
        let ids: Vec<_> = started.iter().map(|i| i.id.as_str()).collect();
        self.record(format!("start {revision} x{count}: {}", ids.join(" ")));
        self.sample();
        Ok(started)
    }

    fn stop(&mut self, ids: &[InstanceId]) -> Result<(), EffectError> {
        if let Some(missing) = ids.iter().find(|id| self.find(id).is_none()) {
            return Err(EffectError::Invalid(format!("no instance {missing}")));
        }
        let now = self.now;
        for i in self.instances.iter_mut().filter(|i| ids.contains(&i.id)) {
            i.stopped_ms.get_or_insert(now);
        }
        if !ids.is_empty() {
            self.record(format!("stop {}", ids.join(" ")));
        }
        self.sample();
        Ok(())
    }

    fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, EffectError> {
        let i = self
            .find(id)
            .ok_or_else(|| EffectError::Invalid(format!("no instance {id}")))?;
        let lines: Vec<_> = i
            .behaviour
            .logs
            .iter()
            .filter(|(at, _)| i.started_ms + at <= self.now)
            .map(|(_, line)| line.clone())
            .collect();
        let skip = lines.len().saturating_sub(max_lines as usize);
        Ok(lines[skip..].to_vec())
    }
}

impl Health for FakeFleet {
    /// A probe sees the instance as it is, and the listing shows what it
    /// saw (the host applies a probe's outcome).
    fn probe(&mut self, id: &str) -> ProbeResult {
        let now = self.now;
        if let Some(i) = self.instances.iter_mut().find(|i| i.id == id) {
            i.probed_unhealthy |= i.state_at(now) == InstanceState::Unhealthy;
        }
        self.probe_now(id)
    }

    fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Vec<ProbeResult> {
        let deadline = self.now + timeout_ms;
        let settled = |s: InstanceState| s != InstanceState::Starting;
        loop {
            let pending: Vec<&FakeInstance> = ids
                .iter()
                .filter_map(|id| self.find(id))
                .filter(|i| !settled(i.state_at(self.now)))
                .collect();
            let next = pending
                .iter()
                .flat_map(|i| i.transitions())
                .filter(|&t| t > self.now)
                .min();
            match next {
                Some(t) if !pending.is_empty() && t <= deadline => self.advance(t),
                _ if !pending.is_empty() => {
                    self.advance(deadline);
                    break;
                }
                _ => break,
            }
        }
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
        self.weights = weights.to_vec();
        Ok(())
    }

    /// As the `sim` backend: the revision's share of the traffic now
    /// (weights, or ready instances when none are set) over the window.
    fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        let ready = |rev: Option<&str>| {
            let now = self.now;
            let counted = |i: &&FakeInstance| {
                rev.is_none_or(|r| i.revision == r) && i.state_at(now) == InstanceState::Ready
            };
            self.instances.iter().filter(counted).count() as u64
        };
        let (part, whole) = if self.weights.is_empty() {
            (ready(Some(revision)), ready(None))
        } else {
            let weight = |(r, w): &(String, u32)| if r == revision { *w } else { 0 };
            let part = self.weights.iter().map(weight).sum::<u32>();
            let whole = self.weights.iter().map(|(_, w)| *w).sum::<u32>();
            (
                u64::from(part) * u64::from(ready(Some(revision)) > 0),
                u64::from(whole),
            )
        };
        let requests = match whole {
            0 => 0,
            _ => self.requests_per_second * window_ms / 1_000 * part / whole,
        };
        let b = self.behaviours.get(revision).cloned().unwrap_or_default();
        let first = self
            .instances
            .iter()
            .filter(|i| i.revision == revision)
            .map(|i| i.started_ms)
            .min();
        let onset = b.errors_after_ms.map(|ms| first.unwrap_or(self.now) + ms);
        let erring = requests as f64 * share_after(onset, self.now, window_ms);
        RevisionStats {
            revision: revision.into(),
            requests,
            errors: (erring * b.error_rate).round() as u64,
            p50_us: b.latency_ms * 1_000,
            p99_us: b.p99_latency_ms.unwrap_or(b.latency_ms * 2) * 1_000,
        }
    }
}

impl Clock for FakeFleet {
    fn now_ms(&mut self) -> u64 {
        self.now
    }

    fn sleep(&mut self, ms: u64) {
        self.advance(self.now + ms);
    }
}

impl Control for FakeFleet {
    fn checkpoint(&mut self, label: &str) -> Command {
        let now = self.now;
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
    use super::*;

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
