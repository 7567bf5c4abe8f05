//! History queries: the revisions of a service, with their causes, how
//! their rollouts ended and what changed from the one before.

use super::service::parse_stored;
use super::{Agent, AgentError, Result};
use crate::spec::ServiceSpec;
use crate::store::ServiceEvent;

/// One revision of a service.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// Revision number.
    pub number: u32,
    /// Why it was made.
    pub cause: String,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// Serving now.
    pub current: bool,
    /// How its rollout ended (`completed`, `rolled-back`, ...), if it ran.
    pub outcome: Option<String>,
    /// What changed from the revision before.
    pub diff: Vec<String>,
    /// The whole spec, when one revision was asked for.
    pub spec: Option<String>,
}

impl Agent {
    /// What the fleet manager of `service` did outside rollouts (instances
    /// replaced, backoffs, scales, removal), oldest first.
    pub fn service_events(&self, service: &str) -> Result<Vec<ServiceEvent>> {
        self.known(service)?;
        Ok(self.store.service_events(service)?)
    }

    /// Refuse a name never deployed (or purged); a removed service (`rollout
    /// rm`) keeps its history, and its fleet is not loaded for it.
    fn known(&self, service: &str) -> Result<()> {
        if !self.store.known_services()?.iter().any(|s| s == service) {
            return Err(AgentError::NotFound(format!(
                "no service {service} (see `rollout status`)"
            )));
        }
        Ok(())
    }

    /// The revisions of `service` with their causes and diffs (or one, with
    /// its whole spec).
    pub fn history(&self, service: &str, revision: Option<u32>) -> Result<Vec<HistoryEntry>> {
        self.known(service)?;
        let current = self.store.current_revision(service)?;
        let rollouts = self.store.rollouts(service)?;
        let revisions = self.store.revisions(service)?;
        let mut entries = Vec::new();
        let mut previous: Option<ServiceSpec> = None;
        for r in &revisions {
            let spec = parse_stored(&r.spec)?;
            let diff = previous.as_ref().map(|p| p.diff(&spec)).unwrap_or_default();
            let outcome = rollouts
                .iter()
                .rev()
                .find(|x| x.to_revision == r.number)
                .map(|x| x.state.clone());
            if revision.is_none_or(|n| n == r.number) {
                entries.push(HistoryEntry {
                    number: r.number,
                    cause: r.cause.clone(),
                    created_ms: r.created_ms,
                    current: current == Some(r.number),
                    outcome,
                    diff,
                    spec: revision.map(|_| r.spec.clone()),
                });
            }
            previous = Some(spec);
        }
        if let (Some(n), true) = (revision, entries.is_empty()) {
            return Err(AgentError::NotFound(format!(
                "{service} has no revision {n}"
            )));
        }
        Ok(entries)
    }
}
