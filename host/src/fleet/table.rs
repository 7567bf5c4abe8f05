//! The fleet's bookkeeping: the revisions it can run, each instance it
//! tracks with its state, and the state changes a rollout has yet to see.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::probe::{Check, Schedule};
use crate::backend::{BackendError, Launch, Observation, Running};
use crate::health::LogScanner;
use crate::model::{Instance, InstanceId, InstanceState, RevisionId, Verdict};
use crate::store::{InstanceRow, unix_ms};

/// Everything the fleet knows, under its lock.
#[derive(Default)]
pub(super) struct Table {
    /// How each registered revision runs.
    pub(super) launches: HashMap<RevisionId, Arc<Launch>>,
    /// The instances not stopped, by id.
    pub(super) instances: BTreeMap<InstanceId, Tracked>,
    /// State changes not yet taken by a rollout, with when they happened.
    pub(super) events: Vec<(Instant, Observation)>,
    /// The highest instance number given so far.
    pub(super) next_index: u64,
}

impl Table {
    /// Instance `id`, or the error a policy sees for an unknown one.
    pub(super) fn get(&mut self, id: &str) -> Result<&mut Tracked, BackendError> {
        self.instances
            .get_mut(id)
            .ok_or_else(|| BackendError::UnknownInstance(id.to_string()))
    }

    /// Whether every instance adopted from an earlier agent has had its
    /// first probe (until then it shows as starting, whatever it was).
    pub(super) fn probed_all(&self) -> bool {
        !self
            .instances
            .values()
            .any(|p| p.unprobed && p.state == InstanceState::Starting)
    }

    /// Move an instance to `state`, recording the change; true if it changed.
    pub(super) fn set(&mut self, id: &str, state: InstanceState, reason: Option<String>) -> bool {
        let Some(p) = self.instances.get_mut(id) else {
            return false;
        };
        p.reason = reason;
        p.was_ready |= state == InstanceState::Ready;
        if p.state == state {
            return false;
        }
        p.state = state;
        let o = Observation {
            at_ms: 0,
            instance: p.row.id.clone(),
            revision: p.row.revision.clone(),
            state,
        };
        self.events.push((Instant::now(), o));
        true
    }
}

/// One instance as the fleet tracks it.
pub(super) struct Tracked {
    /// What the store keeps of it.
    pub(super) row: InstanceRow,
    /// How its revision runs.
    pub(super) launch: Arc<Launch>,
    /// Its environment (for `exec` checks).
    pub(super) env: Vec<(String, String)>,
    /// The process or container.
    pub(super) run: Arc<dyn Running>,
    /// Its state.
    pub(super) state: InstanceState,
    /// It has been ready at least once.
    pub(super) was_ready: bool,
    /// Why it is not healthy, when it is not.
    pub(super) reason: Option<String>,
    /// The `log-pattern` check, reading its log.
    pub(super) scanner: Option<LogScanner>,
    /// When it is probed next.
    pub(super) probes: Schedule,
    /// When its log size is checked next, in Unix ms.
    pub(super) next_rotate_check: u64,
    /// Adopted from an earlier agent and not probed yet: a front door it
    /// was in keeps it until its first probe says otherwise.
    pub(super) unprobed: bool,
}

impl Tracked {
    /// Instance `row`, just started or adopted, running as `run` and logging
    /// to `log`; first probed after its readiness delay.
    pub(super) fn new(
        row: InstanceRow,
        env: Vec<(String, String)>,
        launch: Arc<Launch>,
        run: Arc<dyn Running>,
        log: PathBuf,
    ) -> Tracked {
        let scanner = match &launch.health.log_pattern {
            Some(pattern) if !pattern.is_empty() => Some(LogScanner::new(log, pattern.clone())),
            _ => None,
        };
        Tracked {
            probes: Schedule::new(row.started_ms + launch.health.readiness_delay),
            next_rotate_check: 0,
            scanner,
            env,
            run,
            state: InstanceState::Starting,
            was_ready: false,
            unprobed: false,
            reason: None,
            launch,
            row,
        }
    }

    /// It as the policy sees it, at `now_ms`.
    pub(super) fn instance(&self, now_ms: u64) -> Instance {
        Instance {
            id: self.row.id.clone(),
            revision: self.row.revision.clone(),
            state: self.state,
            address: Some(self.addr().to_string()),
            age_ms: now_ms.saturating_sub(self.row.started_ms),
        }
    }

    /// Whether it started longer ago than its `start-period`: a starting
    /// instance that fails a check then is unhealthy.
    pub(super) fn past_start_period(&self) -> bool {
        let period = self.launch.health.start_period;
        period.is_some_and(|ms| unix_ms() >= self.row.started_ms.saturating_add(ms))
    }

    /// Where it listens: its port, on loopback unless its runner says it
    /// runs on another machine (a Swarm task on another node).
    pub(super) fn addr(&self) -> SocketAddr {
        let host = self.run.host().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(host, self.row.port)
    }

    /// Its next probe, to run without the fleet's lock.
    pub(super) fn check(&mut self) -> Check {
        let addr = self.addr();
        Check::new(
            &mut self.probes,
            &self.row.id,
            &self.launch,
            addr,
            &self.env,
        )
    }

    /// Its health as its state says.
    pub(super) fn verdict(&self) -> Verdict {
        let why = || self.reason.clone().unwrap_or_default();
        match self.state {
            InstanceState::Ready => Verdict::Healthy,
            InstanceState::Starting => Verdict::Unknown(match &self.reason {
                Some(r) => format!("starting: {r}"),
                None => "starting".to_string(),
            }),
            InstanceState::Unhealthy | InstanceState::Failed => Verdict::Unhealthy(why()),
            InstanceState::Draining | InstanceState::Stopped => {
                Verdict::Unhealthy("stopping".to_string())
            }
        }
    }
}
