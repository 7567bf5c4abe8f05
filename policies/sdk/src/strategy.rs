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
//! (as many at a time as the host's surge guardrail lets, with new
//! instances that fail making room as they fail), then stops every instance
//! of the new revision, so availability never drops below what the old
//! fleet had.

use std::collections::HashSet;

use crate::instances::{ids_of, not_ready};
use crate::restore::start_halving;
pub use crate::restore::{Failure, GLANCE_MS, glance_ms, restore};
use crate::{
    Command, EffectError, Host, InstanceId, InstanceState, Level, Outcome, ProbeResult, Progress,
    RolloutInfo, Verdict,
};

/// What one batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Old instances to stop before starting new ones (the unavailability budget).
    pub stop_first: u32,
    /// New instances to start (capped at the number still missing).
    pub start: u32,
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
    let mut state = State {
        replicas: info.replicas,
        ..State::default()
    };
    if let Err(why) = take_stock(host, info, &mut state) {
        return Outcome::Failed(why);
    }
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
                "batch plan (stop {} old, start {} new) makes no progress with {missing} instance(s) missing",
                plan.stop_first, plan.start
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
            let results = match wait_watching(host, &mut state, strategy, &ids, to) {
                Ok(results) => results,
                Err(why) => return roll_back(host, info, strategy, why),
            };
            for result in results {
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
        fail_lost(host, &mut state, to);
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

        if let Err(e) = retire_excess(host, &mut state) {
            return roll_back(host, info, strategy, format!("stopping old instances: {e}"));
        }
    }
    host.log(
        Level::Info,
        &format!("{} instance(s) of {to} ready", state.new.len()),
    );
    Outcome::Completed
}

/// Plan from the fleet as it is, whatever an interruption left (an agent
/// killed mid-rollout, instances killed by hand): instances that are not
/// ready (starting, unhealthy, failed) serve nothing, so they are stopped
/// first, whatever their revision; ready instances of the new revision
/// count as replaced; every other ready instance, of the old revision or a
/// stray of another one, is old and is retired as new ones become ready,
/// strays first. Ready instances beyond `replicas` are retired at once, so
/// that the host's surge guardrail, which counts strays, leaves room.
fn take_stock(host: &mut impl Host, info: &RolloutInfo, state: &mut State) -> Result<(), String> {
    let to = info.to_revision.as_str();
    let fleet = host.list();
    let unready = not_ready(&fleet);
    if !unready.is_empty() {
        host.log(
            Level::Info,
            &format!(
                "stopping {} instance(s) that are not ready: {}",
                unready.len(),
                unready.join(", ")
            ),
        );
        if let Err(e) = host.stop(&unready) {
            return Err(format!("stopping instances that are not ready: {e}"));
        }
    }
    let ready = |s| s == InstanceState::Ready;
    let mut new = ids_of(&fleet, to, ready);
    let extra = new.split_off(new.len().min(info.replicas as usize));
    let from = info.from_revision.as_deref();
    let strays = fleet
        .iter()
        .filter(|i| i.revision != to && Some(i.revision.as_str()) != from && ready(i.state))
        .map(|i| i.id.clone());
    state.old = extra.into_iter().chain(strays).collect();
    if let Some(from) = from {
        state.old.extend(ids_of(&fleet, from, ready));
    }
    state.new = new;
    retire_excess(host, state).map_err(|e| format!("stopping instances beyond the replicas: {e}"))
}

/// Stop old instances beyond what `replicas` needs, from the front of
/// `state.old`.
fn retire_excess(host: &mut impl Host, state: &mut State) -> Result<(), EffectError> {
    let excess = (state.old.len() + state.new.len()).saturating_sub(state.replicas as usize);
    if excess == 0 {
        return Ok(());
    }
    let ids: Vec<_> = state.old.drain(..excess.min(state.old.len())).collect();
    host.stop(&ids)
}

/// Wait until `ids` are ready (or failed, or past the strategy's ready
/// timeout), looking every [`glance_ms`] at the earlier batches' instances:
/// one that stops being ready meanwhile fails at once, and `Err` is the
/// strategy's reason to roll back if that warrants one (rather than after
/// this batch's wait).
fn wait_watching(
    host: &mut impl Host,
    state: &mut State,
    strategy: &impl Strategy,
    ids: &[InstanceId],
    to: &str,
) -> Result<Vec<ProbeResult>, String> {
    let until = host.now_ms().saturating_add(strategy.ready_timeout_ms());
    loop {
        let now = host.now_ms();
        let glance = match state.new.is_empty() {
            true => until.saturating_sub(now),
            false => until
                .saturating_sub(now)
                .min(glance_ms(ids.len() + state.new.len())),
        };
        let results = host.wait_ready(ids, glance);
        let pending = results
            .iter()
            .any(|r| matches!(r.verdict, Verdict::Unknown(_)));
        // Back before its time with instances pending: the host cut the
        // wait short (its progress deadline), which is the answer.
        let later = host.now_ms();
        if !pending || later >= until || later < now.saturating_add(glance) {
            return Ok(results);
        }
        fail_lost(host, state, to);
        if let Some(why) = strategy.roll_back(state) {
            return Err(why);
        }
    }
}

/// Instances of earlier batches were judged already; one listing tells
/// whether any of them stopped being ready since: those fail.
fn fail_lost(host: &mut impl Host, state: &mut State, to: &str) {
    if state.new.is_empty() {
        return;
    }
    let ready: HashSet<String> = ids_of(&host.list(), to, |s| s == InstanceState::Ready)
        .into_iter()
        .collect();
    let (kept, lost): (Vec<_>, Vec<_>) = std::mem::take(&mut state.new)
        .into_iter()
        .partition(|id| ready.contains(id));
    state.new = kept;
    for id in lost {
        fail(host, state, id, "no longer ready".into());
    }
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
