//! Failed new instances and the restore of the old revision: what a
//! rollback does, whether a batch strategy ([`crate::strategy`]) or a
//! traffic shift ([`crate::shift`]) decided it.

use std::fmt;

use crate::instances::{alive, ids_of};
use crate::{
    EffectError, Host, Instance, InstanceId, InstanceState, Level, Outcome, RolloutInfo, Verdict,
};

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

/// The body of [`crate::strategy::roll_back`], for policies that are not a
/// [`crate::strategy::Strategy`]:
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
/// them (see `failing`) rather than wait for the host's next check, one
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
        // Strays of other revisions (left by an interruption) are not
        // the old revision: those not ready go at once, ready ones once
        // the old revision is back.
        let stray = |i: &&Instance| i.revision != to && i.revision != from;
        leaving.extend(
            fleet
                .iter()
                .filter(stray)
                .filter(|i| alive(i.state) && i.state != InstanceState::Ready)
                .map(|i| i.id.clone()),
        );
        // Old ones starting that were not started here (left by an
        // interruption) are waited for as if they were.
        for id in ids_of(&fleet, from, |s| s == InstanceState::Starting) {
            if !starting.iter().any(|(known, _)| *known == id) {
                starting.push((id, now));
            }
        }
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
            rest.extend(
                fleet
                    .iter()
                    .filter(stray)
                    .filter(|i| alive(i.state))
                    .map(|i| i.id.clone()),
            );
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
            match host.stop(&leaving) {
                // The room it made is used at once.
                Ok(()) => {
                    room = true;
                    continue;
                }
                Err(e) => host.log(
                    Level::Warn,
                    &format!("rollback: stopping {}: {e}", leaving.join(", ")),
                ),
            }
        }
        // No room, nothing starting that could become ready, nothing that
        // could be stopped to make room: waiting would change nothing (a
        // look every glance until the rollout's deadline), so say so now.
        if !room && starting.is_empty() {
            return Outcome::Failed(format!(
                "{reason}; rollback: no room to start {from} ({old_ready} of {replicas} ready): \
                 the host's surge guardrail refuses a start and no instance can be stopped \
                 to make room; stop instances by hand (`rollout status` lists them) and run again"
            ));
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
pub(crate) fn start_halving(
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
