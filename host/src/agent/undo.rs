//! `rollout undo`: roll out an earlier revision's spec again, as a new
//! revision (as `kubectl rollout undo` does), through the same admission
//! as a run.

use std::sync::Arc;

use super::{Agent, AgentError, PolicyChoice, Result, Started};

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
        let target = match req.to_revision {
            Some(n) => n,
            None => self
                .store
                .rollouts(service)?
                .iter()
                .rev()
                .filter(|r| r.state == "completed" && r.to_revision == current)
                .find_map(|r| r.from_revision)
                .ok_or_else(|| {
                    AgentError::NotFound(format!(
                        "{service} has no revision before {current} to return to; name one with --to-revision"
                    ))
                })?,
        };
        if target == current {
            return Err(AgentError::Invalid(format!(
                "revision {target} already serves {service}; nothing was changed"
            )));
        }
        let spec = self.spec_of(service, target)?;
        let policy = self.policy(&req.policy, &spec)?;
        let cause = format!("undo: back to revision {target}");
        let origin = format!("revision {target} of {service}");
        self.roll_out(spec, &origin, policy, req.params, cause)
    }
}
