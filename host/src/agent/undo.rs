//! `rollout undo`: roll out an earlier revision's spec again, as a new
//! revision (as `kubectl rollout undo` does), through the same admission
//! as a run.

use std::sync::Arc;

use super::{Agent, AgentError, PolicyChoice, Result, Started};
use crate::store::RolloutRow;

/// What to undo to, and with which policy.
#[derive(Debug, Clone, Default)]
pub struct UndoRequest {
    /// The revision to return to; default the one before the current.
    pub to_revision: Option<u32>,
    /// The policy; `None` runs the target revision's.
    pub policy: Option<PolicyChoice>,
    /// Policy params overriding the spec's.
    pub params: Vec<(String, String)>,
}

impl Agent {
    /// `rollout undo`: roll out an earlier revision's spec again, as a new
    /// revision.
    pub fn undo(self: &Arc<Self>, service: &str, req: UndoRequest) -> Result<Started> {
        let current = self.store.current_revision(service)?.ok_or_else(|| {
            AgentError::NotFound(format!(
                "{service} has no revision serving: nothing to undo"
            ))
        })?;
        let rollouts = self.store.rollouts(service)?;
        // The last rollout did not complete (failed, interrupted, rolled
        // back): the fleet may run a mix, and the revision to return to is
        // the last one that completed, the current one.
        let unfinished = rollouts
            .last()
            .is_some_and(|r| r.state != "completed" && r.to_revision != current);
        let target = match req.to_revision {
            Some(n) => n,
            None if unfinished => current,
            None => previous_completed(&rollouts, current).ok_or_else(|| {
                AgentError::NotFound(format!(
                    "{service} has no completed revision before {current} to return to; name one with --to-revision"
                ))
            })?,
        };
        if target == current && !unfinished {
            return Err(AgentError::Invalid(format!(
                "revision {target} already serves {service}; nothing was changed"
            )));
        }
        let spec = self.spec_of(service, target)?;
        let policy = self.policy(&req.policy, &spec)?;
        let cause = match target == current {
            true => format!("undo: back to revision {target}, the last that completed"),
            false => format!("undo: back to revision {target}"),
        };
        let origin = format!("revision {target} of {service}");
        self.roll_out(spec, &origin, policy, req.params, cause)
    }
}

/// The revision that completed last before `current` did (as
/// `kubectl rollout undo`): rollouts are oldest first.
fn previous_completed(rollouts: &[RolloutRow], current: u32) -> Option<u32> {
    rollouts
        .iter()
        .rev()
        .filter(|r| r.state == "completed")
        .map(|r| r.to_revision)
        .find(|&n| n != current)
}
