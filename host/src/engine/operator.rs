//! Operator commands: pause, resume, abort, promote.
//!
//! The host enforces them whatever the policy does: while paused, every
//! checkpoint and effect waits; after an abort, the new revision may not
//! grow. In `rollout test` the commands are scripted at virtual times.

use std::collections::VecDeque;

use serde::Deserialize;

/// An operator command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Hold every effect until `resume`.
    Pause,
    /// Release a pause.
    Resume,
    /// Roll back.
    Abort,
    /// Skip the remaining steps.
    Promote,
}

impl Action {
    /// Lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Promote => "promote",
        }
    }
}

/// What the operator has asked so far, and what is still scheduled.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    scheduled: VecDeque<(u64, Action)>,
    /// Effects wait while set.
    pub paused: bool,
    /// Set once the operator aborts.
    pub aborted: bool,
    /// A promote not yet seen by a checkpoint.
    pub promote: bool,
}

impl Operator {
    /// Commands issued at the given rollout times.
    pub fn scripted(mut commands: Vec<(u64, Action)>) -> Self {
        commands.sort_by_key(|(at, _)| *at);
        Operator {
            scheduled: commands.into(),
            ..Operator::default()
        }
    }

    /// Apply every command due at `now_ms`; returns them.
    pub fn apply_due(&mut self, now_ms: u64) -> Vec<(u64, Action)> {
        let mut applied = Vec::new();
        while let Some(&(at, action)) = self.scheduled.front() {
            if at > now_ms {
                break;
            }
            self.scheduled.pop_front();
            match action {
                Action::Pause => self.paused = true,
                Action::Resume => self.paused = false,
                Action::Abort => {
                    self.aborted = true;
                    self.paused = false;
                }
                Action::Promote => self.promote = true,
            }
            applied.push((at, action));
        }
        applied
    }

    /// When a scheduled command will next release a pause.
    pub fn next_release_ms(&self) -> Option<u64> {
        self.scheduled
            .iter()
            .find(|(_, a)| matches!(a, Action::Resume | Action::Abort))
            .map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_apply_in_time_order() {
        let mut op = Operator::scripted(vec![(50, Action::Resume), (10, Action::Pause)]);
        assert!(op.apply_due(5).is_empty());
        assert_eq!(op.apply_due(10), vec![(10, Action::Pause)]);
        assert!(op.paused);
        assert_eq!(op.next_release_ms(), Some(50));
        op.apply_due(60);
        assert!(!op.paused && op.next_release_ms().is_none());
    }
}
