//! Replace instances in batches: the loop most strategies share.
//!
//! [`replace`] moves a service from `from-revision` to `to-revision` batch by
//! batch. At each batch it passes a checkpoint (the operator may abort or
//! promote, see below), reports progress, stops old instances the plan retires first,
//! starts new ones, waits for them to be ready, lets them run for
//! [`Strategy::min_ready_ms`], judges the batch's instances with
//! [`Strategy::verdict`] (and checks with one listing that earlier batches
//! are still ready), asks [`Strategy::roll_back`] whether the failures so far
//! warrant a rollback, and retires old instances the new ones replace. Each
//! batch costs a constant number of host calls plus one per new instance, so
//! a 10,000-instance rollout stays linear.
//!
//! A promote (`rollout promote`, as Argo Rollouts' `promote --full`) skips
//! what is left of the waiting: from the next batch on, every missing new
//! instance starts at once (halved while the host's surge guardrail
//! refuses, never below the planned batch) and [`Strategy::min_ready_ms`]
//! is no longer waited for. New instances must still become ready and pass
//! [`Strategy::verdict`]; only the delays go.
//!
//! A rollback restores the old revision to `replicas` ready instances first
//! (one at a time when the host's surge guardrail is tight), then stops every
//! instance of the new revision, so availability never drops below what the
//! old fleet had.

use std::collections::HashSet;
use std::fmt;

use crate::shift::{alive, ids_of};
use crate::{
    Command, EffectError, Host, Instance, InstanceId, InstanceState, Level, Outcome, ProbeResult,
    Progress, RolloutInfo, Verdict,
};

/// What one batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Old instances to stop before starting new ones (the unavailability budget).
    pub stop_first: u32,
    /// New instances to start (capped at the number still missing).
    pub start: u32,
}

/// A new instance that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The instance.
    pub instance: InstanceId,
    /// Why it counts as failed.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.instance, self.reason)
    }
}

/// Where the rollout stands, as the hooks see it.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Instances the service should run.
    pub replicas: u32,
    /// Current batch, counting from 1.
    pub step: u32,
    /// Old-revision instances still running.
    pub old: Vec<InstanceId>,
    /// New-revision instances that are ready and judged healthy.
    pub new: Vec<InstanceId>,
    /// Every new instance that failed so far.
    pub failures: Vec<Failure>,
    /// The operator promoted the rollout: [`replace`] starts the rest at
    /// once and no longer waits [`Strategy::min_ready_ms`].
    pub promoted: bool,
}

/// The hooks of a batch strategy.
pub trait Strategy {
    /// How long new instances may take to become ready.
    fn ready_timeout_ms(&self) -> u64 {
        60_000
    }

    /// How long new instances run before they are judged (readiness delay).
    fn min_ready_ms(&self) -> u64 {
        0
    }

    /// Batch plan: size the next batch.
    fn plan(&self, state: &State) -> Batch;

    /// Health verdict: judge one ready new instance from its probe (and
    /// anything else the host offers, such as its logs).
    fn verdict(&self, host: &mut impl Host, probe: &ProbeResult) -> Verdict;

    /// Rollback condition: `Some(reason)` to roll back now.
    fn roll_back(&self, state: &State) -> Option<String>;
}

/// Roll `info.to_revision` out in batches planned by `strategy`.
pub fn replace(host: &mut impl Host, info: &RolloutInfo, strategy: &impl Strategy) -> Outcome {
    let to = info.to_revision.as_str();
    let fleet = host.list();
    let mut state = State {
        replicas: info.replicas,
        old: info
            .from_revision
            .as_deref()
            .map(|from| ids_of(&fleet, from, alive))
            .unwrap_or_default(),
        new: ids_of(&fleet, to, |s| s == InstanceState::Ready),
        ..State::default()
    };
    let mut steps = 0;

    while state.new.len() < info.replicas as usize || !state.old.is_empty() {
        state.step += 1;
        match host.checkpoint(&format!("batch {}", state.step)) {
            Command::Abort(why) => return roll_back(host, info, strategy, why),
            Command::Promote => state.promoted = true,
            Command::Proceed => {}
        }
        let missing = info.replicas.saturating_sub(state.new.len() as u32);
        let plan = strategy.plan(&state);
        let batch = Batch {
            stop_first: plan.stop_first.min(state.old.len() as u32),
            start: plan.start.min(missing),
        };
        if batch.start == 0 && batch.stop_first == 0 && missing > 0 {
            return Outcome::Failed(format!(
                "batch plan {plan:?} makes no progress with {missing} instance(s) missing"
            ));
        }
        if steps < state.step || state.promoted {
            steps = state.step - 1 + missing.div_ceil(batch.start.max(1));
        }
        host.report(Progress {
            step: state.step,
            steps,
            message: format!(
                "batch {}: stop {} old, start {} new",
                state.step, batch.stop_first, batch.start
            ),
        });

        if batch.stop_first > 0 {
            let ids: Vec<_> = state.old.drain(..batch.stop_first as usize).collect();
            if let Err(e) = host.stop(&ids) {
                return roll_back(host, info, strategy, format!("stopping old instances: {e}"));
            }
        }
        let mut batch_ready = Vec::new();
        if batch.start > 0 {
            // Promoted: everything missing at once, as far as the host allows.
            let fresh = match state.promoted {
                true => start_halving(host, to, missing, batch.start),
                false => host.start(to, batch.start),
            };
            let fresh = match fresh {
                Ok(fresh) => fresh,
                Err(e) => {
                    let why = format!("starting {} instance(s) of {to}: {e}", batch.start);
                    return roll_back(host, info, strategy, why);
                }
            };
            let ids: Vec<_> = fresh.into_iter().map(|i| i.id).collect();
            for result in host.wait_ready(&ids, strategy.ready_timeout_ms()) {
                match result.verdict {
                    Verdict::Healthy => batch_ready.push(result.instance),
                    Verdict::Unhealthy(why) | Verdict::Unknown(why) => {
                        fail(host, &mut state, result.instance, why)
                    }
                }
            }
        }
        if strategy.min_ready_ms() > 0 && !state.promoted {
            host.sleep(strategy.min_ready_ms());
        }
        // Instances of earlier batches were judged already; one listing
        // tells whether any of them stopped being ready since.
        if !state.new.is_empty() {
            let ready: HashSet<String> = ids_of(&host.list(), to, |s| s == InstanceState::Ready)
                .into_iter()
                .collect();
            for id in std::mem::take(&mut state.new) {
                match ready.contains(&id) {
                    true => state.new.push(id),
                    false => fail(host, &mut state, id, "no longer ready".into()),
                }
            }
        }
        // This batch: the strategy's verdict on each instance.
        for id in batch_ready {
            let probe = host.probe(&id);
            match strategy.verdict(host, &probe) {
                Verdict::Unhealthy(why) => fail(host, &mut state, id, why),
                Verdict::Healthy | Verdict::Unknown(_) => state.new.push(id),
            }
        }
        if let Some(why) = strategy.roll_back(&state) {
            return roll_back(host, info, strategy, why);
        }

        let excess = (state.old.len() + state.new.len()).saturating_sub(info.replicas as usize);
        if excess > 0 {
            let ids: Vec<_> = state.old.drain(..excess.min(state.old.len())).collect();
            if let Err(e) = host.stop(&ids) {
                return roll_back(host, info, strategy, format!("stopping old instances: {e}"));
            }
        }
    }
    host.log(
        Level::Info,
        &format!("{} instance(s) of {to} ready", state.new.len()),
    );
    Outcome::Completed
}

/// Record a failed new instance and stop it.
fn fail(host: &mut impl Host, state: &mut State, id: InstanceId, reason: String) {
    host.log(Level::Warn, &format!("instance {id} failed: {reason}"));
    if let Err(e) = host.stop(std::slice::from_ref(&id)) {
        host.log(Level::Warn, &format!("stopping failed instance {id}: {e}"));
    }
    state.failures.push(Failure {
        instance: id,
        reason,
    });
}

/// Restore `from-revision` to `replicas` ready instances, then stop every
/// instance of `to-revision`.
pub fn roll_back(
    host: &mut impl Host,
    info: &RolloutInfo,
    strategy: &impl Strategy,
    reason: String,
) -> Outcome {
    host.log(Level::Warn, &format!("rolling back: {reason}"));
    restore(host, info, strategy.ready_timeout_ms(), reason)
}

/// The body of [`roll_back`], for policies that are not a [`Strategy`]:
/// bring `from-revision` back to `replicas` ready instances (one at a time
/// when the surge guardrail is tight, each given `ready_timeout_ms`), then
/// stop every instance of `to-revision`. Returns
/// [`Outcome::RolledBack`]`(reason)`, or [`Outcome::Failed`] when the old
/// revision does not come back or there is none (a first deploy: the new
/// instances are stopped). Logs nothing itself.
pub fn restore(
    host: &mut impl Host,
    info: &RolloutInfo,
    ready_timeout_ms: u64,
    reason: String,
) -> Outcome {
    let to = info.to_revision.as_str();
    let Some(from) = info.from_revision.as_deref() else {
        let ids = ids_of(&host.list(), to, |s| s != InstanceState::Stopped);
        return match host.stop(&ids) {
            Ok(()) => Outcome::Failed(format!(
                "{reason}; first deploy, no revision to roll back to: stopped {} instance(s) of {to}",
                ids.len()
            )),
            Err(e) => Outcome::Failed(format!("{reason}; stopping instances of {to}: {e}")),
        };
    };
    let mut attempts = 0;
    loop {
        // Instances of the new revision that are not ready (any more)
        // serve nothing: they go at once, each round, which also frees
        // room under the surge guardrail for more old ones at a time.
        let unready = ids_of(&host.list(), to, |s| {
            !matches!(s, InstanceState::Ready | InstanceState::Stopped)
        });
        if let Err(e) = host.stop(&unready) {
            host.log(Level::Warn, &format!("stopping unready instances: {e}"));
        }
        let fleet = host.list();
        let old = ids_of(&fleet, from, alive).len() as u32;
        let new = ids_of(&fleet, to, |s| s != InstanceState::Stopped);
        if old >= info.replicas {
            if let Err(e) = host.stop(&new) {
                return Outcome::Failed(format!("{reason}; rollback: stopping {to}: {e}"));
            }
            return Outcome::RolledBack(reason);
        }
        attempts += 1;
        if attempts > 2 * info.replicas + 2 {
            return Outcome::Failed(format!(
                "{reason}; rollback failed: {from} did not come back to {} ready instance(s)",
                info.replicas
            ));
        }
        let fresh = match start_within_surge(host, from, info.replicas - old, &new) {
            Ok(fresh) => fresh,
            Err(e) => return Outcome::Failed(format!("{reason}; rollback: starting {from}: {e}")),
        };
        let mut ready = 0;
        for result in host.wait_ready(&fresh, ready_timeout_ms) {
            if result.verdict.is_healthy() {
                ready += 1;
            } else if let Err(e) = host.stop(std::slice::from_ref(&result.instance)) {
                host.log(
                    Level::Warn,
                    &format!("rollback: stopping {}: {e}", result.instance),
                );
            }
        }
        let retire: Vec<_> = new.into_iter().take(ready).collect();
        if let Err(e) = host.stop(&retire) {
            host.log(Level::Warn, &format!("rollback: retiring {to}: {e}"));
        }
    }
}

/// Start `count` instances of `revision`, or fewer when the host's surge
/// guardrail refuses (half as many each time, down to `floor`).
fn start_halving(
    host: &mut impl Host,
    revision: &str,
    count: u32,
    floor: u32,
) -> Result<Vec<Instance>, EffectError> {
    match host.start(revision, count) {
        Err(EffectError::Guardrail(_)) if count > floor => {
            start_halving(host, revision, (count / 2).max(floor), floor)
        }
        other => other,
    }
}

/// Start `count` instances, or fewer when the host's surge guardrail refuses
/// (half as many each time), and if even one is refused, after stopping one
/// of `spare`.
fn start_within_surge(
    host: &mut impl Host,
    revision: &str,
    count: u32,
    spare: &[InstanceId],
) -> Result<Vec<InstanceId>, EffectError> {
    let ids = |v: Vec<Instance>| v.into_iter().map(|i| i.id).collect();
    match start_halving(host, revision, count, 1) {
        Err(EffectError::Guardrail(why)) => {
            let Some(victim) = spare.first() else {
                return Err(EffectError::Guardrail(why));
            };
            host.stop(std::slice::from_ref(victim))?;
            host.start(revision, 1).map(ids)
        }
        other => other.map(ids),
    }
}
