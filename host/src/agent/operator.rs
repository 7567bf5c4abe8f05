//! Operator commands (pause, resume, abort, promote) sent to the rollout of
//! a service in progress; the engine applies them at the policy's next
//! step. Each is stored before it is sent, so a pause or an abort holds
//! across a restart of the agent (see [`super::resume`]).

use super::{Agent, AgentError, Result};
use crate::executor::operator::Action;

/// What became of an operator command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlAnswer {
    /// The rollout the command went to.
    pub rollout: i64,
    /// What the agent did.
    pub message: String,
}

impl Agent {
    /// Send an operator command to the rollout of `service` in progress.
    pub fn control(&self, service: &str, action: Action) -> Result<ControlAnswer> {
        let s = self.existing(service)?;
        let mut active = s.active.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = active.as_mut() else {
            return Err(AgentError::Conflict(format!(
                "no rollout of {service} is in progress: nothing to {}",
                action.name()
            )));
        };
        // Stored first: a restarted agent resumes the rollout as asked.
        self.store.add_command(a.id, action.name())?;
        if !a.inbox.send(action) {
            return Err(AgentError::Conflict(format!(
                "rollout {} of {service} is finishing (its policy has ended; the host may be restoring the fleet): nothing to {}; see `rollout status {service}`",
                a.id,
                action.name()
            )));
        }
        match action {
            Action::Pause => a.paused = true,
            Action::Resume | Action::Abort => a.paused = false,
            Action::Promote => {}
        }
        Ok(ControlAnswer {
            rollout: a.id,
            message: format!(
                "{} sent to rollout {} of {service}; it applies at the policy's next step",
                action.name(),
                a.id
            ),
        })
    }
}
