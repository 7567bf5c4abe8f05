//! Operator commands: pause, resume, abort, promote.
//!
//! The host enforces them whatever the policy does: while paused, every
//! checkpoint and effect waits; after an abort, the new revision may not
//! grow. In `rollout test` the commands are scripted at virtual times.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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

    /// The command named `name` (as [`Action::name`] gives it).
    pub fn from_name(name: &str) -> Option<Action> {
        [
            Action::Pause,
            Action::Resume,
            Action::Abort,
            Action::Promote,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }
}

/// What `given` (every command given to a rollout, in order) leaves in
/// force, as the one command that brings a rollout resumed after a restart
/// there: an abort, a pause, or nothing. A promote is one-shot and not
/// kept.
pub fn in_force(given: impl IntoIterator<Item = Action>) -> Option<Action> {
    let mut force = None;
    for action in given {
        force = match (force, action) {
            (Some(Action::Abort), _) | (_, Action::Abort) => Some(Action::Abort),
            (_, Action::Pause) => Some(Action::Pause),
            (_, Action::Resume) => None,
            (kept, Action::Promote) => kept,
        };
    }
    force
}

/// Where a live operator's commands arrive (the agent's control API); the
/// session applies them at its next host call.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    state: Arc<Mutex<InboxState>>,
    /// Signalled on every command, so a sleeping session can react.
    poke: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Default)]
struct InboxState {
    actions: Vec<Action>,
    closed: bool,
}

impl Inbox {
    /// Queue a command for the session; `false` once the policy has ended
    /// and no command can apply any more.
    pub fn send(&self, action: Action) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.closed {
            state.actions.push(action);
            self.poke.notify_one();
        }
        !state.closed
    }

    /// Refuse further commands (the policy has ended).
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).closed = true;
    }

    fn take(&self) -> Vec<Action> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.actions)
    }
}

/// What the operator has asked so far, and what is still scheduled.
#[derive(Debug, Clone, Default)]
pub struct Operator {
    scheduled: VecDeque<(u64, Action)>,
    inbox: Inbox,
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

    /// Commands sent to `inbox` while the rollout runs.
    pub fn live(inbox: Inbox) -> Self {
        Operator {
            inbox,
            ..Operator::default()
        }
    }

    /// Apply every command due at `now_ms` (scheduled, then received);
    /// returns them.
    pub fn apply_due(&mut self, now_ms: u64) -> Vec<(u64, Action)> {
        let mut due = Vec::new();
        while let Some(&(at, action)) = self.scheduled.front() {
            if at > now_ms {
                break;
            }
            self.scheduled.pop_front();
            due.push((at, action));
        }
        due.extend(self.inbox.take().into_iter().map(|a| (now_ms, a)));
        for &(_, action) in &due {
            match action {
                Action::Pause => self.paused = true,
                Action::Resume => self.paused = false,
                Action::Abort => {
                    self.aborted = true;
                    self.paused = false;
                }
                Action::Promote => self.promote = true,
            }
        }
        due
    }

    /// Refuse live commands from now on (the policy has ended).
    pub fn close(&self) {
        self.inbox.close();
    }

    /// Signalled when a live command arrives.
    pub fn poke(&self) -> Arc<tokio::sync::Notify> {
        self.inbox.poke.clone()
    }

    /// When a scheduled abort is due, if one is.
    pub fn next_abort_ms(&self) -> Option<u64> {
        self.scheduled
            .iter()
            .find(|(_, a)| *a == Action::Abort)
            .map(|(at, _)| *at)
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

    #[test]
    fn what_is_in_force_after_commands() {
        use Action::*;
        let cases: &[(&[Action], Option<Action>)] = &[
            (&[], None),
            (&[Pause], Some(Pause)),
            (&[Pause, Resume], None),
            (&[Pause, Resume, Pause, Promote], Some(Pause)),
            (&[Promote], None),
            (&[Abort, Resume, Pause], Some(Abort)),
            (&[Pause, Abort], Some(Abort)),
        ];
        for (given, force) in cases {
            assert_eq!(in_force(given.iter().copied()), *force, "{given:?}");
        }
        for a in [Pause, Resume, Abort, Promote] {
            assert_eq!(Action::from_name(a.name()), Some(a));
        }
        assert_eq!(Action::from_name("stop"), None);
    }

    #[test]
    fn live_commands_apply_at_the_next_call() {
        let inbox = Inbox::default();
        let mut op = Operator::live(inbox.clone());
        assert!(inbox.send(Action::Pause));
        assert_eq!(op.apply_due(7), vec![(7, Action::Pause)]);
        assert!(op.paused);
        assert!(inbox.send(Action::Abort));
        op.apply_due(9);
        assert!(op.aborted && !op.paused);
        op.close();
        assert!(!inbox.send(Action::Pause));
        assert!(op.apply_due(10).is_empty());
    }
}
