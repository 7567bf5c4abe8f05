//! One rollout on the agent: the policy runs in its own task on the real
//! clock; every journal entry is written to the store as it happens, and
//! the outcome closes the rollout and moves the service's current revision.

use std::sync::Arc;

use super::service::Service;
use super::{Agent, revision_id};
use crate::clock::Clock;
use crate::executor::operator::{Inbox, Operator};
use crate::executor::{self, Session};
use crate::journal::Entry;
use crate::model::{Outcome, RolloutInfo};
use crate::runtime::LoadedPolicy;
use crate::spec::ServiceSpec;

/// What to roll out.
pub(super) struct Job {
    pub id: i64,
    pub spec: ServiceSpec,
    pub from: Option<u32>,
    pub to: u32,
    pub params: Vec<(String, String)>,
    pub inbox: Inbox,
}

/// Frees the service for the next rollout when the task ends, however it
/// ends: a rollout whose task died (a bug) is closed as failed rather than
/// left running for ever.
struct Done {
    agent: Arc<Agent>,
    service: Arc<Service>,
    id: i64,
}

impl Drop for Done {
    fn drop(&mut self) {
        let store = &self.agent.store;
        if store.rollout(self.id).is_ok_and(|r| r.state == "running") {
            let why = "the agent's rollout task stopped unexpectedly; check `rollout status` and `rollout undo`";
            let _ = store.end_rollout(self.id, "failed", why);
        }
        *self
            .service
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.agent.journal_changed.notify_waiters();
    }
}

/// Run the job to its end.
pub(super) async fn run(
    agent: Arc<Agent>,
    service: Arc<Service>,
    policy: LoadedPolicy<Session>,
    job: Job,
) {
    let _done = Done {
        agent: agent.clone(),
        service: service.clone(),
        id: job.id,
    };
    // A pass of the fleet manager in progress ends first.
    let _busy = service.busy.lock().await;
    if let Some(from) = job.from
        && let Some(text) =
            super::heal::trim_before_rollout(&service, &revision_id(from), job.spec.replicas).await
    {
        let entry = Entry {
            at_ms: 0,
            kind: crate::journal::Kind::Host,
            text,
        };
        if let Err(e) = agent.store.append_journal(job.id, &[entry]) {
            eprintln!("rollout {}: cannot store the journal: {e}", job.id);
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let writer = tokio::spawn(write_journal(agent.clone(), job.id, rx));
    let clock = Clock::real();
    let info = RolloutInfo {
        service: job.spec.name.clone(),
        from_revision: job.from.map(revision_id),
        to_revision: revision_id(job.to),
        replicas: job.spec.replicas,
        params: job.params,
    };
    // The preview listener shows the revision being rolled out.
    if let Some(preview) = service.fleet.preview() {
        preview.set_weights(Some(vec![(info.to_revision.clone(), 100)]));
    }
    let session = Session::new(
        info,
        Box::new(service.fleet.backend(clock.clone())),
        clock,
        &job.spec.guardrails,
        Operator::live(job.inbox),
    )
    .journal_to(tx);
    let (session, outcome) = executor::execute(&agent.runtime, &policy, session).await;
    // Closing the session closes the journal's channel: the writer drains it.
    drop(session);
    let _ = writer.await;
    let (state, reason) = match &outcome {
        Outcome::Completed => ("completed", String::new()),
        Outcome::RolledBack(why) => ("rolled-back", why.clone()),
        Outcome::Failed(why) => ("failed", why.clone()),
    };
    let mut errors = Vec::new();
    if outcome == Outcome::Completed
        && let Err(e) = agent.store.set_current_revision(&job.spec.name, job.to)
    {
        errors.push(e.to_string());
    }
    if let Err(e) = agent.store.end_rollout(job.id, state, &reason) {
        errors.push(e.to_string());
    }
    for e in errors {
        eprintln!("rollout {}: cannot record the outcome: {e}", job.id);
    }
}

/// Store journal entries as they come, in batches.
async fn write_journal(
    agent: Arc<Agent>,
    rollout: i64,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Entry>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 256).await > 0 {
        if let Err(e) = agent.store.append_journal(rollout, &batch) {
            eprintln!("rollout {rollout}: cannot store the journal: {e}");
        }
        batch.clear();
        agent.journal_changed.notify_waiters();
    }
}
