//! Status queries: a service's revisions, instances, rollout in progress
//! and front-door traffic, as they stand.

use std::net::SocketAddr;

use super::{Agent, Healing, Result};
use crate::journal::Kind;
use crate::model::{Instance, RevisionStats};
use crate::spec::BackendKind;
use crate::store::RolloutRow;

/// Traffic over this window is what a status shows.
const TRAFFIC_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// One service as it stands.
#[derive(Debug, Clone)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// The revision serving (the last one rolled out completely).
    pub current_revision: Option<u32>,
    /// Replicas it keeps: its spec's, or as last scaled.
    pub replicas: u32,
    /// What its fleet manager replaced and holds back.
    pub healing: Healing,
    /// What runs its instances.
    pub backend: BackendKind,
    /// Its instances.
    pub instances: Vec<Instance>,
    /// The rollout in progress, if any.
    pub active: Option<RolloutRow>,
    /// Whether the rollout in progress is paused.
    pub paused: bool,
    /// The last rollout, if any.
    pub last: Option<RolloutRow>,
    /// The last progress line of the rollout in progress.
    pub progress: Option<String>,
    /// The front door's address, if the service has one.
    pub front_door: Option<SocketAddr>,
    /// The preview listener's address (the revision being rolled out).
    pub preview: Option<SocketAddr>,
    /// What each revision served through the front door over the last minute.
    pub traffic: Vec<RevisionTraffic>,
}

/// One revision's traffic through the front door.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RevisionTraffic {
    /// Revision id.
    pub revision: String,
    /// Its weight, when the policy set weights.
    pub weight: Option<u32>,
    /// Its traffic over the window.
    pub stats: RevisionStats,
}

impl Agent {
    /// Status of one service.
    pub fn status(&self, service: &str) -> Result<ServiceStatus> {
        let s = self.existing(service)?;
        let current = self.store.current_revision(service)?;
        let rollouts = self.store.rollouts(service)?;
        let latest = self.store.revisions(service)?;
        let spec_rev = current.or(latest.last().map(|r| r.number));
        let spec = match spec_rev {
            Some(n) => Some(self.spec_of(service, n)?),
            None => None,
        };
        let (active, paused) = {
            let a = s.active.lock().unwrap_or_else(|p| p.into_inner());
            (
                a.as_ref().map(|a| a.id),
                a.as_ref().is_some_and(|a| a.paused),
            )
        };
        let active = rollouts.iter().find(|r| Some(r.id) == active).cloned();
        let progress = match &active {
            Some(r) => self.store.last_entry(r.id, Kind::Progress)?,
            None => None,
        };
        let door = s.fleet.front_door();
        let traffic = match &door {
            Some(proxy) => {
                let weights = proxy.weights();
                proxy
                    .revisions()
                    .into_iter()
                    .map(|revision| RevisionTraffic {
                        weight: weights.as_ref().map(|w| {
                            w.iter()
                                .filter(|(r, _)| *r == revision)
                                .map(|(_, w)| *w)
                                .sum()
                        }),
                        stats: proxy.stats(&revision, TRAFFIC_WINDOW),
                        revision,
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        Ok(ServiceStatus {
            front_door: door.map(|p| p.local_addr()),
            preview: s.fleet.preview().map(|p| p.local_addr()),
            traffic,
            name: service.to_string(),
            current_revision: current,
            replicas: match self.store.scale(service)? {
                Some(r) => r,
                None => spec.as_ref().map_or(0, |s| s.replicas),
            },
            healing: s.healing().clone(),
            backend: spec.as_ref().map_or(BackendKind::Process, |s| s.backend),
            instances: s.fleet.list(),
            active,
            paused,
            last: rollouts.last().cloned(),
            progress,
        })
    }

    /// Status of every service.
    pub fn statuses(&self) -> Result<Vec<ServiceStatus>> {
        self.store
            .services()?
            .iter()
            .map(|s| self.status(s))
            .collect()
    }
}
