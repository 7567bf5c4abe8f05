//! The fleet manager's reconcile loop: while no rollout runs, a service
//! keeps `replicas` instances of its serving revision (as a Deployment's
//! ReplicaSet controller does). An instance that exited, or stayed
//! unhealthy for [`UNHEALTHY_GRACE`], is stopped (drained out of the front
//! door) and replaced with one of the serving revision, which joins the
//! front door once ready; instances beyond `replicas` (after `rollout
//! scale` or a spec that only lowers `replicas`) are drained and stopped.
//!
//! Replacements back off on a crash loop: the first is immediate, each
//! next one waits twice as long as the one before (1 s doubling to 5 min),
//! and the delay resets once the service has had every replica ready for
//! [`RESET_AFTER`] since its last replacement. The backoff lives in memory
//! ([`Healing`], shown by `rollout status`); every replacement, backoff and
//! scale is recorded in the store's service events, so the restart count
//! survives an agent restart.
//!
//! During a rollout the loop does nothing: the policy sees every failure
//! and decides. A pass holds the service's `busy` lock, as a rollout does
//! from its first step to its end, so the two never change the fleet at
//! once. Instances of other revisions (left by a rollout cut short)
//! count against `replicas` but are never stopped here: `rollout run` or
//! `rollout undo` converges them.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::healing::Healing;
use super::revision_id;
use super::service::{Service, parse_stored};
use crate::model::{Instance, InstanceState};
use crate::spec::ServiceSpec;
use crate::store::Store;
use crate::store::unix_ms;

/// How often the loop looks at the fleet.
const TICK: Duration = Duration::from_millis(100);
/// How long an instance may stay unhealthy before it is replaced.
pub(super) const UNHEALTHY_GRACE: Duration = Duration::from_secs(10);
/// How long every replica must have been ready, since the last
/// replacement, for the backoff to start again from nothing.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// The loop's memory between passes, beside the [`Healing`] it shows.
#[derive(Default)]
struct Memory {
    /// The serving spec, parsed once per revision.
    spec: Option<(u32, ServiceSpec)>,
    /// Since when (Unix ms) each unhealthy instance has been so.
    unhealthy_since: HashMap<String, u64>,
    /// Instances stopped for a reason, waiting for their replacement.
    replacing: Vec<(String, String)>,
}

/// Run the fleet manager of `service` until the service is dropped or
/// removed.
pub(super) async fn heal(store: Arc<Store>, service: Weak<Service>, name: String) {
    let mut memory = Memory::default();
    loop {
        tokio::time::sleep(TICK).await;
        let Some(service) = service.upgrade() else {
            return;
        };
        // A rollout or a removal holds the fleet: nothing to do now.
        let Ok(_busy) = service.busy.try_lock() else {
            continue;
        };
        if service.removed() {
            return;
        }
        // Until an agent that restarted has taken back its instances, the
        // fleet looks empty: nothing is started for them.
        if service.rollout_active() || !service.fleet.settled() {
            memory.unhealthy_since.clear();
            memory.replacing.clear();
            continue;
        }
        if let Err(e) = pass(&store, &service, &name, &mut memory).await {
            eprintln!("{name}: fleet manager: {e}");
        }
    }
}

/// One reconcile pass.
async fn pass(
    store: &Store,
    service: &Service,
    name: &str,
    memory: &mut Memory,
) -> super::Result<()> {
    let Some(n) = store.current_revision(name)? else {
        return Ok(());
    };
    if memory.spec.as_ref().is_none_or(|(m, _)| *m != n) {
        let spec = parse_stored(&store.revision(name, n)?.spec)?;
        memory.spec = Some((n, spec));
    }
    let replicas = match store.scale(name)? {
        Some(r) => r,
        None => memory.spec.as_ref().map_or(0, |(_, s)| s.replicas),
    };
    let serving = revision_id(n);
    let now = unix_ms();
    let fleet = service.fleet.list();

    // The dead and the long unhealthy leave first.
    let mut doomed = Vec::new();
    memory
        .unhealthy_since
        .retain(|id, _| fleet.iter().any(|i| &i.id == id));
    for i in &fleet {
        let why = match i.state {
            InstanceState::Failed => Some(format!("{} {}", i.id, reason(service, &i.id, "exited"))),
            InstanceState::Unhealthy => {
                let since = *memory.unhealthy_since.entry(i.id.clone()).or_insert(now);
                (now.saturating_sub(since) >= UNHEALTHY_GRACE.as_millis() as u64).then(|| {
                    format!(
                        "{} unhealthy for {} s: {}",
                        i.id,
                        UNHEALTHY_GRACE.as_secs(),
                        reason(service, &i.id, "failing its checks")
                    )
                })
            }
            _ => {
                memory.unhealthy_since.remove(&i.id);
                None
            }
        };
        if let Some(why) = why {
            doomed.push((i.id.clone(), why));
        }
    }
    if !doomed.is_empty() {
        let ids: Vec<String> = doomed.iter().map(|(id, _)| id.clone()).collect();
        service
            .fleet
            .stop(&ids)
            .await
            .map_err(super::AgentError::Fleet)?;
        memory.replacing.extend(doomed);
        return Ok(());
    }

    let live: Vec<&Instance> = fleet.iter().filter(|i| alive(i)).collect();
    let others = live.iter().filter(|i| i.revision != serving).count();
    let mine: Vec<&Instance> = live
        .iter()
        .copied()
        .filter(|i| i.revision == serving)
        .collect();
    let total = live.len() as u32;
    if total > replicas && others == 0 {
        scale_down(store, service, name, mine, replicas).await?;
        return Ok(());
    }
    if total < replicas {
        let missing = replicas - total;
        start(store, service, name, &serving, missing, memory, now).await?;
        return Ok(());
    }
    // Every replica is there: the backoff resets once they have all been
    // ready for a while.
    memory.replacing.clear();
    service.healing().held_back = 0;
    let settled = !mine.is_empty()
        && mine
            .iter()
            .all(|i| i.state == InstanceState::Ready && i.age_ms >= RESET_AFTER.as_millis() as u64);
    if settled {
        let mut healing = service.healing();
        if healing.failures > 0 && !healing.backing_off(now) {
            healing.failures = 0;
            healing.next_attempt_ms = 0;
        }
    }
    Ok(())
}

/// Whether `i` runs or will: not failed, draining or stopped.
fn alive(i: &Instance) -> bool {
    matches!(
        i.state,
        InstanceState::Starting | InstanceState::Ready | InstanceState::Unhealthy
    )
}

/// Why instance `id` is to be replaced: what the fleet noted, else `what`.
fn reason(service: &Service, id: &str, what: &str) -> String {
    match service.fleet.reason(id) {
        Some(why) if !why.is_empty() => why,
        _ => what.to_string(),
    }
}

/// Start `missing` instances of `serving`: replacements (after a stop
/// for a reason) wait for the backoff, and count as restarts.
async fn start(
    store: &Store,
    service: &Service,
    name: &str,
    serving: &str,
    missing: u32,
    memory: &mut Memory,
    now: u64,
) -> super::Result<()> {
    let replacement = !memory.replacing.is_empty();
    {
        let mut healing = service.healing();
        if healing.backing_off(now) {
            healing.held_back = missing;
            return Ok(());
        }
        healing.held_back = 0;
        if replacement {
            healing.failures += 1;
            healing.next_attempt_ms = now + Healing::backoff_ms(healing.failures);
        }
    }
    let started = service.fleet.start(serving, missing).await;
    let ids: Vec<String> = match &started {
        Ok(list) => list.iter().map(|i| i.id.clone()).collect(),
        Err(_) => Vec::new(),
    };
    if !replacement {
        let (kind, text) = match &started {
            Ok(_) => (
                "scale",
                format!("started {} ({missing} missing)", ids.join(", ")),
            ),
            Err(e) => {
                // A start that fails (an image gone, a daemon down) backs
                // off as a crash loop does.
                let mut healing = service.healing();
                healing.failures += 1;
                healing.next_attempt_ms = now + Healing::backoff_ms(healing.failures);
                let wait = Healing::backoff_ms(healing.failures);
                let text = format!(
                    "cannot start {missing} instance(s) of {serving}: {e}; next attempt in {wait} ms"
                );
                healing.last_reason = Some(text.clone());
                healing.last_ms = Some(unix_ms());
                ("backoff", text)
            }
        };
        store.add_service_event(name, kind, &ids.join(","), &text)?;
        return started.map(drop).map_err(super::AgentError::Fleet);
    }
    let gone: Vec<(String, String)> = memory.replacing.drain(..).collect();
    let mut healing = service.healing();
    let wait = Healing::backoff_ms(healing.failures);
    for (k, (old, why)) in gone.iter().enumerate() {
        let text = match (&started, ids.get(k)) {
            (Ok(_), Some(new)) => format!(
                "replaced {why} with {new}; next replacement no sooner than {} ms later",
                wait
            ),
            (Err(e), _) => format!("cannot replace {why}: {e}; next attempt in {wait} ms"),
            (Ok(_), None) => format!("{old} is not replaced: the service has its replicas"),
        };
        let kind = if started.is_ok() {
            "replace"
        } else {
            "backoff"
        };
        if started.is_ok() {
            healing.restarts += 1;
        } else {
            memory.replacing.push((old.clone(), why.clone()));
        }
        healing.last_reason = Some(why.clone());
        healing.last_ms = Some(unix_ms());
        store.add_service_event(name, kind, old, &text)?;
    }
    Ok(())
}

/// Drain and stop instances of the serving revision beyond `replicas`:
/// those not ready first, then the youngest.
async fn scale_down(
    store: &Store,
    service: &Service,
    name: &str,
    mut mine: Vec<&Instance>,
    replicas: u32,
) -> super::Result<()> {
    let ids = extras(&mut mine, replicas);
    if ids.is_empty() {
        return Ok(());
    }
    let result = service.fleet.stop(&ids).await;
    let text = match &result {
        Ok(()) => format!(
            "drained and stopped {} to keep {replicas} replica(s)",
            ids.join(", ")
        ),
        Err(e) => format!("cannot stop {}: {e}", ids.join(", ")),
    };
    store.add_service_event(name, "scale", &ids.join(","), &text)?;
    result.map_err(super::AgentError::Fleet)
}

/// The instances of `mine` beyond `replicas` to stop first: those not
/// ready, then the youngest.
fn extras(mine: &mut [&Instance], replicas: u32) -> Vec<String> {
    mine.sort_by_key(|i| (i.state == InstanceState::Ready, std::cmp::Reverse(i.age_ms)));
    let extra = mine.len().saturating_sub(replicas as usize);
    mine.iter().take(extra).map(|i| i.id.clone()).collect()
}

/// Before a rollout to a spec with fewer `replicas`: drain and stop the
/// instances of revision `from` beyond them, so the policy starts from
/// the fleet it plans for and its first surge is not refused. What was
/// stopped, in words, if anything was.
pub(super) async fn trim_before_rollout(
    service: &Service,
    from: &str,
    replicas: u32,
) -> Option<String> {
    let fleet = service.fleet.list();
    let mut mine: Vec<&Instance> = fleet
        .iter()
        .filter(|i| alive(i) && i.revision == from)
        .collect();
    let before = mine.len();
    let ids = extras(&mut mine, replicas);
    if ids.is_empty() {
        return None;
    }
    Some(match service.fleet.stop(&ids).await {
        Ok(()) => format!(
            "replicas lowered from {before} to {replicas}: drained and stopped {} of {from} before the policy starts",
            ids.join(", ")
        ),
        Err(e) => format!(
            "replicas lowered to {replicas}: cannot stop {}: {e}",
            ids.join(", ")
        ),
    })
}

/// The restart count a service starts with: what the store recorded.
pub(super) fn recorded(store: &Store, name: &str) -> Healing {
    Healing {
        restarts: store
            .count_service_events(name, "replace")
            .unwrap_or_default(),
        ..Healing::default()
    }
}

impl Service {
    /// Its fleet manager's state.
    pub(super) fn healing(&self) -> std::sync::MutexGuard<'_, Healing> {
        self.healing.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a rollout of it runs.
    pub(super) fn rollout_active(&self) -> bool {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}
