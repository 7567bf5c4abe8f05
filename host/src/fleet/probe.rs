//! One instance's health checks, detached from the fleet so they run
//! without its lock, and when the next one is due.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::backend::Launch;
use crate::health::{self, HealthSpec};
use crate::model::InstanceId;

/// The first gap between probes of a starting instance; it doubles after
/// each probe up to [`STARTUP_GAP_MAX_MS`] (or the spec's `interval`).
const STARTUP_GAP_MS: u64 = 10;
/// The longest gap between probes of a starting instance: its readiness is
/// seen at most this late. A connection refused on the instance's port is
/// all such a probe costs while it starts.
const STARTUP_GAP_MAX_MS: u64 = 25;
/// The same with an `exec` check, which starts a process per probe.
const STARTUP_GAP_MAX_EXEC_MS: u64 = 100;

/// The longest gap between probes of an instance starting with `health`.
pub(super) fn startup_gap_cap(health: &HealthSpec) -> u64 {
    let most = match health.exec {
        Some(_) => STARTUP_GAP_MAX_EXEC_MS,
        None => STARTUP_GAP_MAX_MS,
    };
    health.interval.max(1).min(most)
}

/// When an instance is probed next, and which probe's result counts.
pub(super) struct Schedule {
    /// When the next probe is due, in Unix ms.
    pub(super) next: u64,
    /// The gap before the next probe while it is starting.
    startup_gap: u64,
    /// Probes started so far; each result carries its number.
    started: u64,
    /// Number of the newest probe whose result was applied: an older result
    /// that arrives late (a refused connect that lost the race against a
    /// later success) must not overwrite a newer one.
    applied: u64,
}

impl Schedule {
    /// The first probe due at `first` (Unix ms).
    pub(super) fn new(first: u64) -> Schedule {
        Schedule {
            next: first,
            startup_gap: STARTUP_GAP_MS,
            started: 0,
            applied: 0,
        }
    }

    /// Time until the next probe: the spec's `interval`, but a `starting`
    /// instance is probed sooner (after 10 ms, then twice as long each time
    /// up to 25 ms, 100 ms with an `exec` check, or `interval`), so its
    /// readiness is seen at most that late rather than up to an interval
    /// late (Docker 25's `--health-start-interval` does the same).
    pub(super) fn gap(&mut self, starting: bool, health: &HealthSpec) -> u64 {
        let interval = health.interval.max(1);
        if !starting {
            return interval;
        }
        let cap = startup_gap_cap(health);
        let gap = self.startup_gap.min(cap);
        self.startup_gap = (self.startup_gap * 2).min(cap);
        gap
    }

    /// Whether the result of probe `seq` is newer than any applied so far
    /// (it then is the newest applied).
    pub(super) fn accept(&mut self, seq: u64) -> bool {
        if seq <= self.applied {
            return false;
        }
        self.applied = seq;
        true
    }
}

/// One instance's health checks, ready to run without the fleet's lock.
pub(super) struct Check {
    id: InstanceId,
    /// Which probe of the instance this is.
    pub(super) seq: u64,
    launch: Arc<Launch>,
    addr: SocketAddr,
    env: Vec<(String, String)>,
}

impl Check {
    /// The next probe of instance `id`, counted in `schedule`.
    pub(super) fn new(
        schedule: &mut Schedule,
        id: &str,
        launch: &Arc<Launch>,
        addr: SocketAddr,
        env: &[(String, String)],
    ) -> Check {
        schedule.started += 1;
        Check {
            id: id.to_string(),
            seq: schedule.started,
            launch: launch.clone(),
            addr,
            env: env.to_vec(),
        }
    }

    /// Run the checks of the instance's spec.
    pub(super) async fn run(self) -> Outcome {
        let target = health::Target {
            addr: self.addr,
            env: &self.env,
        };
        let result = health::check(&self.launch.health, &target).await;
        Outcome {
            id: self.id,
            seq: self.seq,
            result,
        }
    }
}

/// What one probe found (`Err` = failing).
pub(super) struct Outcome {
    pub(super) id: InstanceId,
    pub(super) seq: u64,
    pub(super) result: Result<(), String>,
}
