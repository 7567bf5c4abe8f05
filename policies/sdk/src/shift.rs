//! Building blocks of strategies that shift traffic between two revisions
//! (canary, blue-green), where [`crate::strategy::replace`]'s batch loop
//! does not fit.
//!
//! - [`scale_up`]: bring a revision to N ready instances and wait for them;
//!   when the host's surge guardrail refuses, start one at a time and, if
//!   given [`Room`], retire instances of the other revision while the fleet
//!   keeps `replicas` ready instances.
//! - [`scale_down`]: stop instances of a revision beyond N (unready ones
//!   first), stopping as many as the host allows.
//! - [`stop_all`]: retire a revision, retrying while the host refuses.
//! - [`broken`]: instances of a revision that crashed or turned unhealthy.
//! - [`first_deploy`]: nothing serves yet: start `replicas` instances and
//!   give them all the traffic.
//! - [`roll_back`]: send all traffic back to the old revision first, then
//!   restore it to `replicas` ready instances and stop the new one.
//!
//! ```
//! use rollout_policy::shift::{self, Room};
//! use rollout_policy::testing::{Behaviour, FakeFleet};
//!
//! // Four v1 serving, room for one more instance: v2 grows one at a time,
//! // retiring a v1 instance each time a v2 one is ready.
//! let mut fleet = FakeFleet::new()
//!     .serving("v1", 4)
//!     .behaviour("v2", Behaviour::ready_after(1_000))
//!     .max_total(5);
//! let room = Room { revision: "v1", replicas: 4, keep: 1 };
//! assert_eq!(shift::scale_up(&mut fleet, "v2", 3, 60_000, Some(&room)), Ok(3));
//! assert_eq!((fleet.count("v1"), fleet.count("v2")), (2, 3));
//! assert_eq!(fleet.min_ready(), 4);
//! ```

use std::fmt;

use crate::instances::not_ready as unready_ids;
pub use crate::instances::{alive, ids_of};
use crate::restore::{self, Failure};
use crate::{EffectError, Host, Instance, InstanceId, InstanceState, Level, Outcome, RolloutInfo};

/// Weights `[(a, a_weight), (b, b_weight)]` for `traffic.set-weights`.
pub fn split(a: &str, a_weight: u32, b: &str, b_weight: u32) -> [(String, u32); 2] {
    [(a.to_string(), a_weight), (b.to_string(), b_weight)]
}

/// Instances of `revision` in `fleet` that failed (exited) or turned
/// unhealthy, with the reason `is failed` or `is unhealthy`.
pub fn broken(fleet: &[Instance], revision: &str) -> Vec<Failure> {
    fleet
        .iter()
        .filter(|i| i.revision == revision)
        .filter_map(|i| {
            let reason = match i.state {
                InstanceState::Failed => "is failed",
                InstanceState::Unhealthy => "is unhealthy",
                _ => return None,
            };
            Some(Failure {
                instance: i.id.clone(),
                reason: reason.into(),
            })
        })
        .collect()
}

/// Where [`scale_up`] may make room when the surge guardrail refuses a
/// start: instances of `revision` may be stopped, one at a time, while the
/// fleet keeps at least `replicas` ready instances and `revision` keeps at
/// least `keep` instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room<'a> {
    /// The revision that gives up instances (the old one).
    pub revision: &'a str,
    /// Ready instances the whole fleet must keep.
    pub replicas: u32,
    /// Instances of `revision` that must stay.
    pub keep: u32,
}

/// Why [`scale_up`] did not reach its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleError {
    /// The host refused or failed to start instances (a guardrail with no
    /// room to make, an operator abort, the backend).
    Start {
        /// The revision.
        revision: String,
        /// How many instances the refused start asked for.
        count: u32,
        /// The host's answer.
        error: EffectError,
    },
    /// Instances of the revision failed, turned unhealthy or were not ready
    /// in time; they were stopped.
    NotReady {
        /// The revision.
        revision: String,
        /// Each failed instance and why.
        failures: Vec<Failure>,
    },
}

impl fmt::Display for ScaleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScaleError::Start {
                revision,
                count,
                error,
            } => write!(
                f,
                "starting {count} instance(s) of {revision}: {}",
                error.reason()
            ),
            ScaleError::NotReady { revision, failures } => {
                let first = failures.first().map(|f| f.to_string()).unwrap_or_default();
                match failures.len() {
                    1 => write!(f, "instance of {revision} failed: {first}"),
                    n => write!(f, "{n} instances of {revision} failed, first {first}"),
                }
            }
        }
    }
}

/// Clear what an interruption left (an agent killed mid-rollout,
/// instances killed by hand) once traffic goes only to `from` and `to`:
/// instances that are not ready, and every instance of another revision
/// (a stray: it gets no traffic and would hold the host's surge room), are
/// stopped. A refused stop is logged, not fatal: the rollout goes on with
/// less room.
pub fn clear_strays(host: &mut impl Host, from: &str, to: &str) {
    let fleet = host.list();
    let mut ids = unready_ids(&fleet);
    let strays: Vec<_> = fleet
        .iter()
        .filter(|i| i.revision != from && i.revision != to)
        .filter(|i| i.state == InstanceState::Ready)
        .map(|i| i.id.clone())
        .collect();
    ids.extend(strays);
    if ids.is_empty() {
        return;
    }
    host.log(
        Level::Info,
        &format!(
            "stopping {} instance(s) left by an interruption: {}",
            ids.len(),
            ids.join(", ")
        ),
    );
    if let Err(e) = host.stop(&ids) {
        host.log(
            Level::Warn,
            &format!("stopping instances left by an interruption: {}", e.reason()),
        );
    }
}

/// Bring `revision` to at least `target` ready instances: start the
/// missing ones and wait up to `ready_timeout_ms` for them. Returns the
/// number of ready instances of `revision`.
///
/// When the host's surge guardrail refuses a start, and `room` is given, new
/// instances start one at a time, and when even one is refused an instance
/// of `room.revision` is stopped first (never leaving fewer than
/// `room.replicas` ready instances in the fleet nor fewer than `room.keep`
/// of that revision). Without `room`, a refusal is returned at once.
///
/// Instances of `revision` that failed, turned unhealthy or did not become
/// ready are stopped and returned as [`ScaleError::NotReady`]. A start the
/// host refuses otherwise is [`ScaleError::Start`].
pub fn scale_up(
    host: &mut impl Host,
    revision: &str,
    target: u32,
    ready_timeout_ms: u64,
    room: Option<&Room<'_>>,
) -> Result<u32, ScaleError> {
    let mut chunk = u32::MAX;
    // Each pass starts instances or makes room for one, so a pass per
    // instance to start and one per instance to retire is enough.
    for _ in 0..2 * u64::from(target) + 4 {
        let fleet = host.list();
        let failures = broken(&fleet, revision);
        if !failures.is_empty() {
            return Err(not_ready(host, revision, failures));
        }
        let starting = ids_of(&fleet, revision, |s| s == InstanceState::Starting);
        if !starting.is_empty() {
            wait(host, revision, &starting, ready_timeout_ms)?;
            continue;
        }
        let ready = ids_of(&fleet, revision, |s| s == InstanceState::Ready).len() as u32;
        if ready >= target {
            return Ok(ready);
        }
        let count = (target - ready).min(chunk);
        let refused = |error| ScaleError::Start {
            revision: revision.to_string(),
            count,
            error,
        };
        match host.start(revision, count) {
            Ok(started) => {
                let ids: Vec<_> = started.into_iter().map(|i| i.id).collect();
                wait(host, revision, &ids, ready_timeout_ms)?;
            }
            Err(EffectError::Guardrail(why)) => match room {
                Some(_) if count > 1 => chunk = 1,
                Some(room) if make_room(host, &fleet, room) => {}
                _ => return Err(refused(EffectError::Guardrail(why))),
            },
            Err(error) => return Err(refused(error)),
        }
    }
    let ready = ids_of(&host.list(), revision, |s| s == InstanceState::Ready).len();
    Err(ScaleError::Start {
        revision: revision.to_string(),
        count: target.saturating_sub(ready as u32),
        error: EffectError::Guardrail(format!(
            "no progress towards {target} ready instance(s) of {revision} ({ready} ready)"
        )),
    })
}

/// Wait for `ids`; stop and report those that do not become ready.
fn wait(
    host: &mut impl Host,
    revision: &str,
    ids: &[InstanceId],
    timeout_ms: u64,
) -> Result<(), ScaleError> {
    let failures: Vec<_> = host
        .wait_ready(ids, timeout_ms)
        .into_iter()
        .filter_map(|r| match r.verdict {
            crate::Verdict::Healthy => None,
            crate::Verdict::Unhealthy(reason) | crate::Verdict::Unknown(reason) => Some(Failure {
                instance: r.instance,
                reason,
            }),
        })
        .collect();
    match failures.is_empty() {
        true => Ok(()),
        false => Err(not_ready(host, revision, failures)),
    }
}

/// Stop failed instances and build the error.
fn not_ready(host: &mut impl Host, revision: &str, failures: Vec<Failure>) -> ScaleError {
    let ids: Vec<_> = failures.iter().map(|f| f.instance.clone()).collect();
    if let Err(e) = host.stop(&ids) {
        host.log(
            Level::Warn,
            &format!("stopping failed instance(s) of {revision}: {}", e.reason()),
        );
    }
    ScaleError::NotReady {
        revision: revision.to_string(),
        failures,
    }
}

/// Stop one instance of `room.revision` if the fleet can spare it; true if
/// one was stopped.
fn make_room(host: &mut impl Host, fleet: &[Instance], room: &Room<'_>) -> bool {
    let unready = ids_of(fleet, room.revision, |s| {
        alive(s) && s != InstanceState::Ready
    });
    let ready = ids_of(fleet, room.revision, |s| s == InstanceState::Ready);
    if (unready.len() + ready.len()) as u32 <= room.keep {
        return false;
    }
    let fleet_ready = fleet
        .iter()
        .filter(|i| i.state == InstanceState::Ready)
        .count() as u32;
    let victim = match (unready.first(), ready.last()) {
        (Some(id), _) => id,
        (None, Some(id)) if fleet_ready > room.replicas => id,
        _ => return false,
    };
    match host.stop(std::slice::from_ref(victim)) {
        Ok(()) => true,
        Err(e) => {
            host.log(
                Level::Info,
                &format!("no room for a new instance: {}", e.reason()),
            );
            false
        }
    }
}

/// What [`scale_down`] left running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleDown {
    /// Instances of the revision still running (starting, ready, unhealthy).
    pub remaining: u32,
    /// Why the host refused to stop more, if it did.
    pub refused: Option<EffectError>,
}

/// Stop instances of `revision` until at most `target` run, unready ones
/// first. When the host refuses to stop them all at once (e.g. the
/// min-available guardrail), they are stopped one at a time until it refuses
/// again; the refusal is returned, not fatal, so the caller may keep them
/// and retry later.
pub fn scale_down(host: &mut impl Host, revision: &str, target: u32) -> ScaleDown {
    let fleet = host.list();
    let mut ids = ids_of(&fleet, revision, |s| alive(s) && s != InstanceState::Ready);
    ids.extend(ids_of(&fleet, revision, |s| s == InstanceState::Ready));
    let excess = ids.len().saturating_sub(target as usize);
    let mut remaining = ids.len() as u32;
    if excess == 0 {
        return ScaleDown {
            remaining,
            refused: None,
        };
    }
    if host.stop(&ids[..excess]).is_ok() {
        return ScaleDown {
            remaining: target,
            refused: None,
        };
    }
    for id in &ids[..excess] {
        if let Err(e) = host.stop(std::slice::from_ref(id)) {
            return ScaleDown {
                remaining,
                refused: Some(e),
            };
        }
        remaining -= 1;
    }
    ScaleDown {
        remaining,
        refused: None,
    }
}

/// Stop every instance of `revision`. When the host refuses (e.g. the
/// min-available guardrail while other instances are still starting), wait
/// `retry_ms` and try again, up to `retries` more times; what is left is in
/// the result.
pub fn stop_all(host: &mut impl Host, revision: &str, retries: u32, retry_ms: u64) -> ScaleDown {
    let mut down = scale_down(host, revision, 0);
    for _ in 0..retries {
        let Some(e) = &down.refused else { break };
        host.log(
            Level::Info,
            &format!(
                "{} instance(s) of {revision} left to stop: {}; retrying in {retry_ms} ms",
                down.remaining,
                e.reason()
            ),
        );
        host.sleep(retry_ms);
        down = scale_down(host, revision, 0);
    }
    down
}

/// A first deploy (no `from-revision`): start `replicas` instances of
/// `to-revision`, wait up to `ready_timeout_ms`, then give it all the
/// traffic. A set-weights refusal is only logged: with one revision, every
/// request goes to it anyway. On failure the new instances are stopped and
/// the outcome is [`Outcome::Failed`] (there is nothing to roll back to).
pub fn first_deploy(host: &mut impl Host, info: &RolloutInfo, ready_timeout_ms: u64) -> Outcome {
    let to = info.to_revision.as_str();
    host.report(crate::Progress {
        step: 1,
        steps: 1,
        message: format!("first deploy: {} instance(s) of {to}", info.replicas),
    });
    if let crate::Command::Abort(why) = host.checkpoint("first deploy") {
        return restore::restore(host, info, ready_timeout_ms, why);
    }
    if let Err(e) = scale_up(host, to, info.replicas, ready_timeout_ms, None) {
        return restore::restore(host, info, ready_timeout_ms, e.to_string());
    }
    if let Err(e) = host.set_weights(&[(to.to_string(), 100)]) {
        host.log(
            Level::Warn,
            &format!("setting weights {to}=100: {}", e.reason()),
        );
    }
    Outcome::Completed
}

/// Roll back a traffic-shifting rollout: log the reason, set the weights
/// to `[(from, 100), (to, 0)]` first (a refusal is logged), then restore
/// `from-revision` to `replicas` ready instances and stop every instance of
/// `to-revision` ([`restore::restore`]).
pub fn roll_back(
    host: &mut impl Host,
    info: &RolloutInfo,
    ready_timeout_ms: u64,
    reason: String,
) -> Outcome {
    host.log(Level::Warn, &format!("rolling back: {reason}"));
    if let Some(from) = &info.from_revision {
        let weights = [(from.clone(), 100), (info.to_revision.clone(), 0)];
        if let Err(e) = host.set_weights(&weights) {
            host.log(
                Level::Warn,
                &format!("rollback: setting weights: {}", e.reason()),
            );
        }
    }
    restore::restore(host, info, ready_timeout_ms, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Behaviour, FakeFleet};
    use crate::{Clock, Fleet, Traffic};

    #[test]
    fn without_room_a_surge_refusal_is_returned() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 4)
            .behaviour("v2", Behaviour::ready_after(1_000))
            .max_total(5);
        let err = scale_up(&mut fleet, "v2", 4, 60_000, None).unwrap_err();
        assert!(
            matches!(
                &err,
                ScaleError::Start {
                    count: 4,
                    error: EffectError::Guardrail(_),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("starting 4 instance(s) of v2: ")
        );
        assert_eq!(fleet.count("v1"), 4);
    }

    #[test]
    fn room_keeps_the_fleet_ready_and_the_old_revision_alive() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(1_000))
            .max_total(4);
        let room = Room {
            revision: "v1",
            replicas: 3,
            keep: 1,
        };
        assert_eq!(scale_up(&mut fleet, "v2", 3, 60_000, Some(&room)), Ok(3));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (1, 3));
        assert_eq!((fleet.max_instances(), fleet.min_ready()), (4, 3));
        assert_eq!(scale_down(&mut fleet, "v1", 0).remaining, 0);
    }

    #[test]
    fn instances_that_never_become_ready_are_stopped_and_named() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 2)
            .behaviour("v2", Behaviour::never_ready());
        let err = scale_up(&mut fleet, "v2", 2, 5_000, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 instances of v2 failed, first v2-3: not ready after 5000 ms"
        );
        assert_eq!(fleet.list().len(), 2);
    }

    #[test]
    fn crashed_instances_count_as_failures() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 2)
            .behaviour("v2", Behaviour::ready_after(1_000).failing_after(5_000));
        assert_eq!(scale_up(&mut fleet, "v2", 1, 60_000, None), Ok(1));
        fleet.sleep(10_000);
        assert_eq!(broken(&fleet.list(), "v2").len(), 1);
        let err = scale_up(&mut fleet, "v2", 1, 60_000, None).unwrap_err();
        assert_eq!(err.to_string(), "instance of v2 failed: v2-3: is failed");
    }

    #[test]
    fn roll_back_sends_traffic_back_first() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 2)
            .behaviour("v2", Behaviour::ready_after(0));
        let info = fleet.info("v1", "v2", 2);
        scale_up(&mut fleet, "v2", 1, 60_000, None).unwrap();
        fleet
            .set_weights(&[("v1".into(), 50), ("v2".into(), 50)])
            .unwrap();
        let outcome = roll_back(&mut fleet, &info, 60_000, "bad".into());
        assert_eq!(outcome, Outcome::RolledBack("bad".into()));
        assert_eq!(
            fleet.weights(),
            [("v1".to_string(), 100), ("v2".to_string(), 0)]
        );
        let journal = fleet.journal().join("\n");
        let weights = journal.find("weights v1=100 v2=0").unwrap();
        assert!(weights < journal.rfind("stop v2-3").unwrap(), "{journal}");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (2, 0));
    }

    #[test]
    fn first_deploy_starts_everything_and_routes_to_it() {
        let mut fleet = FakeFleet::new().behaviour("v1", Behaviour::ready_after(2_000));
        let info = fleet.info("", "v1", 3);
        assert_eq!(first_deploy(&mut fleet, &info, 60_000), Outcome::Completed);
        assert_eq!(fleet.count("v1"), 3);
        assert_eq!(fleet.weights(), [("v1".to_string(), 100)]);

        let mut fleet = FakeFleet::new().behaviour("v1", Behaviour::never_ready());
        let outcome = first_deploy(&mut fleet, &info, 1_000);
        assert!(matches!(outcome, Outcome::Failed(ref m) if m.contains("not ready")));
        assert!(fleet.list().is_empty());
    }
}
