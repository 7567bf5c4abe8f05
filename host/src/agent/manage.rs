//! Service commands that are no new spec: `rollout scale` (the serving
//! revision, more or fewer instances, no new revision, as `kubectl
//! scale`), `rollout restart` (a new rollout of the same spec, as `kubectl
//! rollout restart`) and `rollout rm` (every instance drained and stopped,
//! the front door closed, the service forgotten; its history kept unless
//! purged).
//!
//! A scale is recorded in the store (so a restarted agent keeps it) and
//! carried out by the service's fleet manager ([`super::heal`]), which
//! drains the extra instances or starts new ones of the serving revision.
//! The next revision's spec states its own `replicas` again, and a spec
//! that changes nothing but `replicas` is a scale too
//! ([`Agent::run`](super::Agent::run)).

use std::sync::Arc;

use super::{Agent, AgentError, Result, Started};
use crate::spec::ServiceSpec;

/// The most instances `rollout scale` asks for.
pub const MAX_REPLICAS: u32 = 1000;

/// What `rollout rm` did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Removed {
    /// Service name.
    pub service: String,
    /// The instances stopped.
    pub stopped: Vec<String>,
    /// Whether its history was dropped too.
    pub purged: bool,
    /// What the agent did, in words.
    pub message: String,
}

impl Agent {
    /// The serving revision of `service` and its spec as it runs now:
    /// `replicas` as last scaled.
    pub(super) fn serving(&self, service: &str) -> Result<(u32, ServiceSpec)> {
        let Some(n) = self.store.current_revision(service)? else {
            return Err(AgentError::Invalid(format!(
                "{service} has no revision serving (its first rollout did not complete): deploy one with `rollout run --spec FILE`; nothing was changed"
            )));
        };
        let spec = self.spec_of(service, n)?;
        Ok(match self.store.scale(service)? {
            Some(r) => (n, spec.with_replicas(r)),
            None => (n, spec),
        })
    }

    /// Refuse a command while a rollout of `service` runs.
    fn idle(&self, service: &str, what: &str) -> Result<Arc<super::service::Service>> {
        let s = self.existing(service)?;
        if let Some(a) = s.active.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Err(AgentError::Conflict(format!(
                "rollout {} of {service} is in progress: wait for it (`rollout status {service} --watch`) or stop it (`rollout abort {service}`), then {what} again; nothing was changed",
                a.id
            )));
        }
        Ok(s)
    }

    /// `rollout scale`: keep `replicas` instances of the serving revision.
    pub fn scale(&self, service: &str, replicas: u32, why: &str) -> Result<Started> {
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            return Err(AgentError::Invalid(format!(
                "cannot scale {service} to {replicas}: replicas go from 1 to {MAX_REPLICAS} (`rollout rm {service}` stops every instance); nothing was changed"
            )));
        }
        self.idle(service, "scale")?;
        let (n, spec) = self.serving(service)?;
        let before = spec.replicas;
        let stated = self.spec_of(service, n)?.replicas;
        self.store
            .set_scale(service, (replicas != stated).then_some(replicas))?;
        let text = format!("scaled from {before} to {replicas} replica(s) of revision {n} ({why})");
        self.store.add_service_event(service, "scale", "", &text)?;
        let message = match replicas.cmp(&before) {
            std::cmp::Ordering::Equal => {
                format!("{service} already keeps {replicas} replica(s) of revision {n}")
            }
            std::cmp::Ordering::Less => format!(
                "scaling {service} from {before} to {replicas} replica(s) of revision {n}: {} instance(s) drain and stop, no new revision",
                before - replicas
            ),
            std::cmp::Ordering::Greater => format!(
                "scaling {service} from {before} to {replicas} replica(s) of revision {n}: {} new instance(s) join the front door once ready, no new revision",
                replicas - before
            ),
        };
        Ok(Started {
            rollout: None,
            service: service.to_string(),
            from_revision: Some(n),
            to_revision: n,
            message,
        })
    }

    /// `rollout restart`: roll the serving spec out again as a new
    /// revision, through its policy, so every instance is replaced.
    pub fn restart(self: &Arc<Self>, service: &str) -> Result<Started> {
        self.idle(service, "restart")?;
        let (n, spec) = self.serving(service)?;
        let policy = self.policy(&None, &spec)?;
        let cause = format!("restart of revision {n}");
        let origin = format!("revision {n} of {service}");
        self.roll_out(spec, &origin, policy, Vec::new(), cause)
    }

    /// `rollout rm`: drain and stop every instance of `service`, close its
    /// front door and forget it; `purge` drops its history too.
    pub async fn remove(&self, service: &str, purge: bool) -> Result<Removed> {
        let s = {
            let s = self.idle(service, "remove it")?;
            // Under the lock a rollout admission takes: none starts now.
            let active = s.active.lock().unwrap_or_else(|p| p.into_inner());
            if active.is_some() {
                return Err(AgentError::Conflict(format!(
                    "a rollout of {service} just started: wait for it or abort it, then remove it; nothing was changed"
                )));
            }
            s.mark_removed();
            drop(active);
            s
        };
        // A pass of the fleet manager in progress ends first; it starts no
        // other.
        let _busy = s.busy.lock().await;
        let ids: Vec<String> = s.fleet.list().into_iter().map(|i| i.id).collect();
        if let Err(e) = s.fleet.stop(&ids).await {
            // Still listed: loaded afresh (with its fleet manager) by the
            // next command, and `rollout rm` may be tried again.
            self.forget(service);
            return Err(AgentError::Fleet(e));
        }
        for door in [s.fleet.front_door(), s.fleet.preview()]
            .into_iter()
            .flatten()
        {
            door.close();
        }
        let text = format!("removed: {} instance(s) drained and stopped", ids.len());
        let recorded = if purge {
            self.store.purge_service(service)
        } else {
            self.store
                .add_service_event(service, "remove", "", &text)
                .and_then(|()| self.store.remove_service(service))
        };
        // Recorded before it is forgotten: a deploy of the name from now
        // on starts afresh.
        self.forget(service);
        recorded?;
        let message = if purge {
            format!("{service} {text}; its history is purged")
        } else {
            format!(
                "{service} {text}; its history stays (`rollout history {service}`; `rollout rm {service} --purge` drops it)"
            )
        };
        Ok(Removed {
            service: service.to_string(),
            stopped: ids,
            purged: purge,
            message,
        })
    }
}
