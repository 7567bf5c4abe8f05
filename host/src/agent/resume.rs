//! After a restart, every rollout the agent died or stopped during
//! (`running` or `interrupted`) resumes: its pinned policy is loaded again
//! and replays the calls it made (see [`crate::executor::Durable`]), then
//! goes on live, paused or aborted if the operator's stored commands say
//! so.

use std::sync::Arc;

use super::rollout::{self, Begin, Job};
use super::service::Active;
use super::{Agent, Result};
use crate::executor::Durable;
use crate::executor::operator::{self, Action, Inbox};
use crate::runtime::{PolicySource, hex_digest};
use crate::store::{RolloutRow, unix_ms};

impl Agent {
    /// Resume every rollout of `service` left unfinished; one note for
    /// each, saying what happened. One that cannot resume is closed as
    /// failed, saying why.
    pub(super) fn resume_rollouts(self: &Arc<Self>, service: &str) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let unfinished = self.store.unfinished_rollouts()?;
        for row in unfinished.into_iter().filter(|r| r.service == service) {
            match self.resume(&row) {
                Ok(calls) => notes.push(format!(
                    "{}: resuming rollout {} to revision {} ({calls} recorded call(s) to replay)",
                    row.service, row.id, row.to_revision
                )),
                Err(why) => {
                    let service = &row.service;
                    let reason = format!(
                        "the agent stopped during the rollout and cannot resume it: {why}; the fleet was left as it was: `rollout status {service}` shows which revisions run, `rollout run` of the spec converges it, `rollout undo {service}` returns to the last revision that completed"
                    );
                    self.store.end_rollout(row.id, "failed", &reason)?;
                    notes.push(format!("{service}: rollout {}: {reason}", row.id));
                }
            }
        }
        Ok(notes)
    }

    /// Start resuming `row`; how many calls it replays, or why it cannot.
    fn resume(self: &Arc<Self>, row: &RolloutRow) -> std::result::Result<usize, String> {
        let pinned = self
            .store
            .pinned_policy(row.id)
            .map_err(|e| e.to_string())?
            .ok_or("it has no pinned policy (an older agent started it)")?;
        if hex_digest(&pinned.bytes) != pinned.digest {
            return Err(format!("its pinned policy {} is damaged", pinned.name));
        }
        let source = PolicySource::Uploaded {
            name: pinned.name,
            bytes: pinned.bytes.into(),
        };
        let policy = self.runtime.load(&source).map_err(|e| e.to_string())?;
        let spec = self
            .spec_of(&row.service, row.to_revision)
            .map_err(|e| e.to_string())?;
        let service = self.service(&row.service).map_err(|e| e.to_string())?;
        let calls = self.store.calls(row.id).map_err(|e| e.to_string())?;
        self.store
            .reopen_rollout(row.id)
            .map_err(|e| e.to_string())?;
        // A pause or abort in force (given before the restart, or recorded
        // while the agent was down) applies at the first live call.
        let given = self.store.commands(row.id).map_err(|e| e.to_string())?;
        let force = operator::in_force(given.iter().filter_map(|a| Action::from_name(a)));
        let inbox = Inbox::default();
        if let Some(action) = force {
            inbox.send(action);
        }
        *service.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(Active {
            id: row.id,
            inbox: inbox.clone(),
            paused: force == Some(Action::Pause),
        });
        let job = Job {
            id: row.id,
            spec,
            from: row.from_revision,
            to: row.to_revision,
            params: pinned.params,
            inbox,
        };
        let replayed = Durable::replayed_calls(&calls);
        let begin = Begin::Resumed {
            elapsed_ms: unix_ms().saturating_sub(row.started_ms),
            calls,
        };
        tokio::spawn(rollout::run(self.clone(), service, policy, job, begin));
        Ok(replayed)
    }
}
