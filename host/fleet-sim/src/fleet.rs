//! The fleet: instances with a scripted timeline, an event queue of their
//! state changes, and what a host answers about them at a virtual instant.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::behaviour::Behaviour;
use crate::rng::SplitMix64;

/// Lifecycle of a simulated instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Started, not yet ready.
    Starting,
    /// Ready; receives traffic.
    Ready,
    /// Was ready, now failing its health check.
    Unhealthy,
    /// Stopped by the host.
    Stopped,
    /// Crashed on its own.
    Failed,
}

impl State {
    /// Lowercase name, as in the WIT and the journal.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Unhealthy => "unhealthy",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// One simulated instance: when it started and the virtual times at which
/// it changes state.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Unique id: the fleet's id prefix, the revision and a serial number
    /// (`v2-3`).
    pub id: String,
    /// Revision it runs.
    pub revision: String,
    /// When it started.
    pub started_ms: u64,
    /// When it becomes ready, if ever.
    pub ready_at: Option<u64>,
    /// From when it fails its health check (once ready), if ever.
    pub unhealthy_at: Option<u64>,
    /// When it crashes, if ever.
    pub fails_at: Option<u64>,
    /// When the host stopped it.
    pub stopped_at: Option<u64>,
    state: State,
}

impl Instance {
    /// Its state at the fleet's current instant.
    pub fn state(&self) -> State {
        self.state
    }

    /// What its script makes it at `now`.
    fn state_at(&self, now: u64) -> State {
        let since = |at: Option<u64>| at.is_some_and(|at| now >= at);
        if since(self.stopped_at) {
            State::Stopped
        } else if since(self.fails_at) {
            State::Failed
        } else if since(self.ready_at) && since(self.unhealthy_at) {
            State::Unhealthy
        } else if since(self.ready_at) {
            State::Ready
        } else {
            State::Starting
        }
    }
}

/// A state change an instance went through on its own (not a stop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// When, in virtual milliseconds.
    pub at_ms: u64,
    /// Which instance.
    pub instance: String,
    /// Its revision.
    pub revision: String,
    /// The state it entered.
    pub state: State,
}

/// Extremes of the fleet over the whole run, sampled after every effect
/// and every instant at which an instance changes state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extremes {
    /// Most instances not stopped at once.
    pub max_instances: u32,
    /// Fewest ready instances at once.
    pub min_ready: u32,
}

/// The result of probing one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Its state now.
    pub state: State,
    /// How long the probe took: its revision's median latency.
    pub latency_us: u64,
}

/// Traffic one revision received over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Requests completed.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
}

/// A request the fleet cannot answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimError {
    /// No instance has this id.
    UnknownInstance(String),
    /// No revision has this name (and the fleet has no fallback behaviour).
    UnknownRevision(String),
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimError::UnknownInstance(id) => write!(f, "no instance {id}"),
            SimError::UnknownRevision(revision) => write!(f, "no revision {revision}"),
        }
    }
}

impl std::error::Error for SimError {}

/// A scripted fleet on a virtual clock.
///
/// Time only moves forward, with [`Fleet::advance_to`]; every other call
/// acts at the current instant. Each instance's state changes are queued
/// as events and replayed in time order (and by start order within an
/// instant), so [`Fleet::extremes`] and [`Fleet::take_changes`] are exact
/// even when the caller jumps over many changes at once.
///
/// Traffic: requests arrive at [`Fleet::requests_per_second`] (default 100)
/// and are split by the weights last set (a revision with no ready instance
/// gets none of its share), or by ready instances while none are set.
#[derive(Debug, Clone)]
pub struct Fleet {
    id_prefix: String,
    behaviours: BTreeMap<String, Behaviour>,
    fallback: Option<Behaviour>,
    instances: Vec<Instance>,
    by_id: HashMap<String, usize>,
    events: BinaryHeap<Reverse<(u64, usize)>>,
    rng: SplitMix64,
    now: u64,
    extremes: Option<Extremes>,
    changes: Vec<Change>,
    weights: Vec<(String, u32)>,
    requests_per_second: u64,
}

impl Fleet {
    /// An empty fleet at virtual time 0 whose revisions behave as given;
    /// 100 requests per second, seed 0, ids without a prefix, and no
    /// fallback (other revisions are unknown).
    pub fn new(behaviours: BTreeMap<String, Behaviour>) -> Self {
        Fleet {
            id_prefix: String::new(),
            behaviours,
            fallback: None,
            instances: Vec::new(),
            by_id: HashMap::new(),
            events: BinaryHeap::new(),
            rng: SplitMix64::new(0),
            now: 0,
            extremes: None,
            changes: Vec::new(),
            weights: Vec::new(),
            requests_per_second: 100,
        }
    }

    /// Ids start with `prefix` (the host uses `<service>-`).
    pub fn id_prefix(mut self, prefix: &str) -> Self {
        self.id_prefix = prefix.to_string();
        self
    }

    /// Revisions without a behaviour of their own behave as `behaviour`
    /// instead of being unknown.
    pub fn fallback(mut self, behaviour: Behaviour) -> Self {
        self.fallback = Some(behaviour);
        self
    }

    /// `seed` drives the flaky starts.
    pub fn seed(mut self, seed: u64) -> Self {
        self.rng = SplitMix64::new(seed);
        self
    }

    /// Client traffic arrives at `rps` requests per second (0: idle).
    pub fn requests_per_second(mut self, rps: u64) -> Self {
        self.requests_per_second = rps;
        self
    }

    /// Set how instances of `revision` started from now on behave.
    pub fn set_behaviour(&mut self, revision: &str, behaviour: Behaviour) {
        self.behaviours.insert(revision.to_string(), behaviour);
    }

    /// The behaviours set per revision (without the fallback).
    pub fn behaviours(&self) -> &BTreeMap<String, Behaviour> {
        &self.behaviours
    }

    /// How `revision` behaves: its own behaviour, else the fallback.
    pub fn behaviour(&self, revision: &str) -> Result<&Behaviour, SimError> {
        self.behaviours
            .get(revision)
            .or(self.fallback.as_ref())
            .ok_or_else(|| SimError::UnknownRevision(revision.to_string()))
    }

    /// The current virtual instant, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.now
    }

    /// Move the clock to `now` (never back), replaying every state change
    /// up to it in order.
    pub fn advance_to(&mut self, now: u64) {
        while let Some(&Reverse((at, _))) = self.events.peek() {
            if at > now {
                break;
            }
            self.now = self.now.max(at);
            while let Some(&Reverse((same, i))) = self.events.peek() {
                if same != at {
                    break;
                }
                self.events.pop();
                self.apply(i);
            }
            self.sample();
        }
        self.now = self.now.max(now);
    }

    /// When an instance next changes state on its own, if any will.
    pub fn next_change_ms(&mut self) -> Option<u64> {
        while let Some(&Reverse((at, i))) = self.events.peek() {
            if self.instances[i].stopped_at.is_none() {
                return Some(at);
            }
            self.events.pop();
        }
        None
    }

    /// Advance until none of `ids` is starting, or `timeout_ms` has passed;
    /// unknown ids are not waited for.
    pub fn settle(&mut self, ids: &[String], timeout_ms: u64) {
        let deadline = self.now.saturating_add(timeout_ms);
        loop {
            let starting =
                |id: &String| self.instance(id).is_ok_and(|i| i.state == State::Starting);
            if !ids.iter().any(starting) {
                return;
            }
            match self.next_change_ms() {
                Some(at) if at <= deadline => self.advance_to(at),
                _ => return self.advance_to(deadline),
            }
        }
    }

    /// Add `count` instances of `revision`, ready now and scripted to
    /// change no more: the fleet a rollout starts from.
    pub fn serve(&mut self, revision: &str, count: u32) {
        let now = self.now;
        for _ in 0..count {
            let i = self.spawn(revision, Some(now), None, None);
            self.instances[i].state = State::Ready;
        }
        self.sample();
    }

    /// Start `count` instances of `revision`, scripted by its behaviour.
    pub fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, SimError> {
        let b = self.behaviour(revision)?.clone();
        let now = self.now;
        let earlier = self
            .instances
            .iter()
            .filter(|i| i.revision == revision)
            .count();
        let after = |ms: Option<u64>| ms.map(|ms| now.saturating_add(ms));
        let mut started = Vec::with_capacity(count as usize);
        for n in 0..count as usize {
            let flaky = b.flaky > 0.0 && self.rng.chance(b.flaky);
            let crashes = flaky || earlier + n < b.crash_first as usize;
            let fails_at = match crashes {
                true => after(Some(b.ready_after_ms.unwrap_or(0))),
                false => after(b.fails_after_ms),
            };
            let ready_at = after(b.ready_after_ms);
            let unhealthy_at = after(b.unhealthy_after_ms);
            started.push(self.spawn(revision, ready_at, unhealthy_at, fails_at));
        }
        // Changes due at once (ready after 0) happen now.
        self.advance_to(now);
        self.sample();
        Ok(started
            .into_iter()
            .map(|i| self.instances[i].clone())
            .collect())
    }

    /// Stop instances (all or none: an unknown id stops nothing).
    pub fn stop<S: AsRef<str>>(&mut self, ids: &[S]) -> Result<(), SimError> {
        let indices = ids
            .iter()
            .map(|id| self.index(id.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        for i in indices {
            let inst = &mut self.instances[i];
            inst.stopped_at.get_or_insert(self.now);
            inst.state = State::Stopped;
        }
        self.sample();
        Ok(())
    }

    /// Kill an instance from outside (an operator's `kill -9`, the machine
    /// it ran on lost): it is failed from now on.
    pub fn kill(&mut self, id: &str) -> Result<(), SimError> {
        let i = self.index(id)?;
        let now = self.now;
        let inst = &mut self.instances[i];
        if inst.state != State::Stopped {
            inst.fails_at = Some(inst.fails_at.map_or(now, |at| at.min(now)));
            inst.state = State::Failed;
        }
        self.sample();
        Ok(())
    }

    /// The instance with this id, stopped or not.
    pub fn instance(&self, id: &str) -> Result<&Instance, SimError> {
        Ok(&self.instances[self.index(id)?])
    }

    /// Every instance not stopped, in start order.
    pub fn list(&self) -> impl Iterator<Item = &Instance> {
        self.instances.iter().filter(|i| i.state != State::Stopped)
    }

    /// Probe an instance now.
    pub fn probe(&self, id: &str) -> Result<Probe, SimError> {
        let inst = self.instance(id)?;
        let latency_ms = self.behaviour(&inst.revision).map_or(0, |b| b.latency_ms);
        Ok(Probe {
            state: inst.state,
            latency_us: latency_ms * 1_000,
        })
    }

    /// The last `max_lines` lines an instance has logged by now.
    pub fn logs(&self, id: &str, max_lines: u32) -> Result<Vec<String>, SimError> {
        let inst = self.instance(id)?;
        let Ok(b) = self.behaviour(&inst.revision) else {
            return Ok(Vec::new());
        };
        let lines: Vec<String> = b
            .logs
            .iter()
            .filter(|(after, _)| inst.started_ms.saturating_add(*after) <= self.now)
            .map(|(_, line)| line.clone())
            .collect();
        let skip = lines.len().saturating_sub(max_lines as usize);
        Ok(lines[skip..].to_vec())
    }

    /// Split traffic between revisions by weight; every revision must be
    /// known.
    pub fn set_weights(&mut self, weights: &[(String, u32)]) -> Result<(), SimError> {
        for (revision, _) in weights {
            self.behaviour(revision)?;
        }
        self.weights = weights.to_vec();
        Ok(())
    }

    /// The weights last set (empty: split by ready instances).
    pub fn weights(&self) -> &[(String, u32)] {
        &self.weights
    }

    /// Traffic `revision` received over the last `window_ms`: its share of
    /// the requests now (by weight, or by ready instances while no weights
    /// are set), erring at its error rate after its onset.
    pub fn stats(&self, revision: &str, window_ms: u64) -> Result<Stats, SimError> {
        let b = self.behaviour(revision)?;
        let ready = |rev: Option<&str>| {
            let counted =
                |i: &&Instance| rev.is_none_or(|r| i.revision == r) && i.state == State::Ready;
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
        let first = self
            .instances
            .iter()
            .filter(|i| i.revision == revision)
            .map(|i| i.started_ms)
            .min();
        let onset = b.errors_after_ms.map(|ms| first.unwrap_or(self.now) + ms);
        let erring = requests as f64 * share_after(onset, self.now, window_ms);
        Ok(Stats {
            requests,
            errors: (erring * b.error_rate).round() as u64,
            p50_us: b.latency_ms * 1_000,
            p99_us: b.p99_latency_ms.unwrap_or(b.latency_ms * 2) * 1_000,
        })
    }

    /// Ready instances per revision now, every revision with a behaviour
    /// or an instance named (0 when none is ready).
    pub fn ready_counts(&self) -> BTreeMap<String, u32> {
        let mut counts: BTreeMap<String, u32> =
            self.behaviours.keys().map(|r| (r.clone(), 0)).collect();
        for i in &self.instances {
            let count = counts.entry(i.revision.clone()).or_default();
            *count += u32::from(i.state == State::Ready);
        }
        counts
    }

    /// Extremes so far (all 0 before the first effect).
    pub fn extremes(&self) -> Extremes {
        self.extremes.unwrap_or_default()
    }

    /// The state changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    fn index(&self, id: &str) -> Result<usize, SimError> {
        self.by_id
            .get(id)
            .copied()
            .ok_or_else(|| SimError::UnknownInstance(id.to_string()))
    }

    fn spawn(
        &mut self,
        revision: &str,
        ready_at: Option<u64>,
        unhealthy_at: Option<u64>,
        fails_at: Option<u64>,
    ) -> usize {
        let index = self.instances.len();
        let id = format!("{}{revision}-{}", self.id_prefix, index + 1);
        self.instances.push(Instance {
            id: id.clone(),
            revision: revision.to_string(),
            started_ms: self.now,
            ready_at,
            unhealthy_at,
            fails_at,
            stopped_at: None,
            state: State::Starting,
        });
        self.by_id.insert(id, index);
        for at in [ready_at, unhealthy_at, fails_at].into_iter().flatten() {
            self.events.push(Reverse((at, index)));
        }
        index
    }

    /// Bring instance `i` to its scripted state now, noting a change.
    fn apply(&mut self, i: usize) {
        let inst = &mut self.instances[i];
        let state = inst.state_at(self.now);
        if inst.state == State::Stopped || inst.state == state {
            return;
        }
        inst.state = state;
        self.changes.push(Change {
            at_ms: self.now,
            instance: inst.id.clone(),
            revision: inst.revision.clone(),
            state,
        });
    }

    fn sample(&mut self) {
        let (mut total, mut ready) = (0, 0);
        for i in &self.instances {
            total += u32::from(i.state != State::Stopped);
            ready += u32::from(i.state == State::Ready);
        }
        self.extremes = Some(match self.extremes {
            None => Extremes {
                max_instances: total,
                min_ready: ready,
            },
            Some(e) => Extremes {
                max_instances: e.max_instances.max(total),
                min_ready: e.min_ready.min(ready),
            },
        });
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
