//! One rollout on the agent: the policy runs in its own task on the real
//! clock, on a [`Durable`] session whose calls are logged so a restarted
//! agent resumes it; every journal entry is written to the store as it
//! happens, and the outcome closes the rollout and moves the service's
//! current revision.

use std::sync::Arc;

use super::service::Service;
use super::{Agent, revision_id};
use crate::clock::Clock;
use crate::executor::operator::{Inbox, Operator};
use crate::executor::{self, Durable, Session};
use crate::journal::Entry;
use crate::model::{Outcome, RolloutInfo};
use crate::runtime::LoadedPolicy;
use crate::spec::ServiceSpec;
use crate::store::CallRecord;

/// What to roll out.
pub(super) struct Job {
    pub id: i64,
    pub spec: ServiceSpec,
    pub from: Option<u32>,
    pub to: u32,
    pub params: Vec<(String, String)>,
    pub inbox: Inbox,
}

/// Where a rollout begins.
pub(super) enum Begin {
    /// At its start.
    New,
    /// After the agent restarted: `elapsed_ms` since it started, with the
    /// calls its policy made before.
    Resumed {
        elapsed_ms: u64,
        calls: Vec<CallRecord>,
    },
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
        let unrecorded = self.agent.lock_unrecorded().contains_key(&self.id);
        if !unrecorded && store.rollout(self.id).is_ok_and(|r| r.state == "running") {
            let why = "the agent's rollout task stopped unexpectedly; check `rollout status` and `rollout undo`";
            if let Err(e) = store.end_rollout(self.id, "failed", why) {
                self.agent
                    .unrecorded_outcome(self.id, "failed", why, &e.to_string());
            }
        }
        *self
            .service
            .active
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        self.agent.journal_changed.notify_waiters();
    }
}

/// How long a resumed rollout waits for the first probe of every
/// re-adopted instance before it replays.
const ADOPTED_PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Run the job to its end.
pub(super) async fn run(
    agent: Arc<Agent>,
    service: Arc<Service>,
    policy: LoadedPolicy<Durable>,
    job: Job,
    begin: Begin,
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
    let clock = match &begin {
        Begin::New => Clock::real(),
        Begin::Resumed { elapsed_ms, .. } => Clock::real_since(*elapsed_ms),
    };
    let info = RolloutInfo {
        service: job.spec.name.clone(),
        from_revision: job.from.map(revision_id),
        to_revision: revision_id(job.to),
        replicas: job.spec.replicas,
        params: job.params,
    };
    // A new rollout starts with traffic spread over every ready instance
    // (a policy that weighs traffic sets its weights first); a resumed one
    // sets again the weights it had.
    if let (Begin::New, Some(front)) = (&begin, service.fleet.front_door()) {
        front.set_weights(None);
    }
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
    .stop_on(agent.stopping.subscribe());
    let store = agent.store.clone();
    let durable = match begin {
        Begin::New => Durable::start(session.journal_to(tx), store, job.id).await,
        Begin::Resumed { calls, .. } => {
            let mut session = session.resuming(Durable::replayed_calls(&calls));
            // The policy goes on with the instances as they were: the ones
            // re-adopted show as starting until their first probe.
            if !service.fleet.probed(ADOPTED_PROBE_LIMIT).await {
                session.note(format!(
                    "re-adopted instances not probed within {} s: the policy may see them as starting",
                    ADOPTED_PROBE_LIMIT.as_secs()
                ));
            }
            let session = session.journal_to(tx);
            Ok(Durable::resume(session, store, job.id, calls))
        }
    };
    let (outcome, interrupted) = match durable {
        Ok(durable) => {
            let (mut durable, outcome) = executor::execute(&agent.runtime, &policy, durable).await;
            let interrupted = durable.as_mut().interrupted();
            // Closing the session closes the journal's channel: the writer
            // drains it.
            drop(durable.into_session());
            (outcome, interrupted)
        }
        Err(halt) => (Outcome::Failed(halt.to_string()), false),
    };
    let _ = writer.await;
    let (state, reason) = match &outcome {
        Outcome::Failed(why) if interrupted => ("interrupted", why.clone()),
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
    // An interrupted rollout keeps its calls: the next agent resumes it.
    if !interrupted && let Err(e) = agent.store.forget_calls(job.id) {
        errors.push(e.to_string());
    }
    if !errors.is_empty() {
        let errors = errors.join("; ");
        eprintln!("rollout {}: cannot record the outcome: {errors}", job.id);
        agent.unrecorded_outcome(job.id, state, &reason, &errors);
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
