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

/// How long a wait on starting instances lasts before the fleet is looked
/// at again, per 10 instances looked at (see [`glance_ms`]).
pub const GLANCE_MS: u64 = 50;

/// The time between two looks at `watched` instances: [`GLANCE_MS`] per 10
/// of them, so looking costs the same per second whatever the fleet's size
/// (a 10-instance service is looked at every 50 ms, a 10,000-instance
/// simulation every 50 s).
pub fn glance_ms(watched: usize) -> u64 {
    GLANCE_MS * (watched as u64 / 10).max(1)
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

/// The body of [`roll_back`], for policies that are not a [`Strategy`]:
/// bring `from-revision` back to `replicas` ready instances, then stop every
/// instance of `to-revision`. Returns [`Outcome::RolledBack`]`(reason)`, or
/// [`Outcome::Failed`] when the old revision does not come back (an old
/// instance started here not ready within `ready_timeout_ms`, more than
/// `2 x replicas + 2` times) or there is none (a first deploy: the new
/// instances are stopped). Logs nothing itself.
///
/// It keeps as many old instances starting as the host's surge guardrail
/// lets, and looks at the fleet every [`glance_ms`] while they start: a new
/// instance that stops being ready serves nothing and goes at once, which
/// frees room for another old one without waiting for the ones starting;
/// each old instance that becomes ready retires a ready new one. The new
/// revision failed, so its ready instances are suspects: each look probes
/// them (see [`failing`]) rather than wait for the host's next check, one
/// health interval away, to list one that broke since.
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
    let replicas = info.replicas as usize;
    // Old instances started here, and when.
    let mut starting: Vec<(InstanceId, u64)> = Vec::new();
    let mut failed_starts = 0;
    // Whether a start may fit under the surge guardrail: false after a
    // refusal, true again once something stopped.
    let mut room = true;
    // Where the next look's probes of suspects begin.
    let mut suspect = 0;
    loop {
        let fleet = host.list();
        let state_of = |id: &str| fleet.iter().find(|i| i.id == id).map(|i| i.state);
        let now = host.now_ms();
        // New instances that stopped being ready serve nothing: they go at
        // once. Those still starting go only when nothing else makes room
        // (stopping one can take as long as its start: Swarm's task must
        // run before it can be stopped), else they are retired once ready.
        let mut leaving = ids_of(&fleet, to, |s| {
            !matches!(
                s,
                InstanceState::Ready | InstanceState::Starting | InstanceState::Stopped
            )
        });
        // So do old ones started here that failed or took too long.
        starting.retain(|(id, since)| match state_of(id) {
            Some(InstanceState::Ready) => false,
            Some(InstanceState::Starting) if now < since + ready_timeout_ms => true,
            _ => {
                failed_starts += 1;
                leaving.push(id.clone());
                false
            }
        });
        if failed_starts > 2 * replicas + 2 {
            return Outcome::Failed(format!(
                "{reason}; rollback failed: {from} did not come back to {replicas} ready instance(s)"
            ));
        }
        let old_ready = ids_of(&fleet, from, |s| s == InstanceState::Ready).len();
        let mut new_ready = ids_of(&fleet, to, |s| s == InstanceState::Ready);
        let glance = glance_ms(fleet.len());
        if old_ready < replicas {
            let broken = failing(host, &new_ready, &mut suspect, glance);
            new_ready.retain(|id| !broken.contains(id));
            leaving.extend(broken);
        }
        if old_ready >= replicas {
            // Done: every new instance goes, and old ones beyond `replicas`
            // that are not ready.
            let mut rest = ids_of(&fleet, to, |s| s != InstanceState::Stopped);
            rest.extend(ids_of(&fleet, from, |s| {
                alive(s) && s != InstanceState::Ready
            }));
            // Old ones started here that failed, unless in already.
            let failed: Vec<_> = leaving
                .into_iter()
                .filter(|id| !rest.contains(id))
                .collect();
            rest.extend(failed);
            return match host.stop(&rest) {
                Ok(()) => Outcome::RolledBack(reason),
                Err(e) => Outcome::Failed(format!("{reason}; rollback: stopping {to}: {e}")),
            };
        }
        // Each old instance ready beyond what the new ones lack retires one.
        let retire = (old_ready + new_ready.len()).saturating_sub(replicas);
        leaving.extend(new_ready.into_iter().take(retire));
        // Old ones start first, in the room there is: a stop (of a task
        // still starting, say) can take a while and must not hold them up.
        let missing = replicas.saturating_sub(old_ready + starting.len()) as u32;
        if missing > 0 && room {
            let fresh = match start_fitting(host, from, missing) {
                Ok(fresh) => fresh,
                Err(e) => {
                    return Outcome::Failed(format!("{reason}; rollback: starting {from}: {e}"));
                }
            };
            room = fresh.len() == missing as usize;
            starting.extend(fresh.into_iter().map(|id| (id, now)));
        }
        if !room && leaving.is_empty() {
            leaving = ids_of(&fleet, to, |s| s == InstanceState::Starting);
        }
        if !leaving.is_empty() {
            room = true;
            match host.stop(&leaving) {
                // The room it made is used at once.
                Ok(()) => continue,
                Err(e) => host.log(Level::Warn, &format!("rollback: stopping {leaving:?}: {e}")),
            }
        }
        match starting.is_empty() {
            true => host.sleep(glance),
            false => {
                let ids: Vec<_> = starting.iter().map(|(id, _)| id.clone()).collect();
                host.wait_ready(&ids, glance);
            }
        }
    }
}

/// Those of `ids` that fail a probe now. They are probed in turn from
/// `*next` (round robin) for at most `budget_ms` of the clock: a host whose
/// probes are slow (an exec check) gets through some of them at each look,
/// and the next look goes on from there.
fn failing(
    host: &mut impl Host,
    ids: &[InstanceId],
    next: &mut usize,
    budget_ms: u64,
) -> Vec<InstanceId> {
    let until = host.now_ms().saturating_add(budget_ms);
    let mut broken = Vec::new();
    for _ in 0..ids.len() {
        let id = &ids[*next % ids.len()];
        *next = next.wrapping_add(1);
        if let Verdict::Unhealthy(_) = host.probe(id).verdict {
            broken.push(id.clone());
        }
        if host.now_ms() >= until {
            break;
        }
    }
    broken
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

/// Start `count` instances, or as many as the host's surge guardrail lets
/// (half as many after each refusal; none if even one is refused).
fn start_fitting(
    host: &mut impl Host,
    revision: &str,
    count: u32,
) -> Result<Vec<InstanceId>, EffectError> {
    match start_halving(host, revision, count, 1) {
        Err(EffectError::Guardrail(_)) => Ok(Vec::new()),
        other => other.map(|v| v.into_iter().map(|i| i.id).collect()),
    }
}
