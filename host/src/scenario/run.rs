//! Run a policy against a scenario's simulated fleet on the virtual clock.

use std::time::{Duration, Instant};

use super::{Check, Observed, Scenario};
use crate::backend::sim::SimBackend;
use crate::clock::Clock;
use crate::executor::PolicyRuntime;
use crate::executor::operator::Operator;
use crate::executor::{self, Session};
use crate::journal::Entry;
use crate::model::Outcome;
use crate::runtime::LoadedPolicy;

/// What a simulated rollout did.
#[derive(Debug, Clone)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// What the assertions were checked against.
    pub observed: Observed,
    /// The checked assertions.
    pub checks: Vec<Check>,
    /// Every journal entry.
    pub journal: Vec<Entry>,
    /// Real time the simulation took.
    pub wall: Duration,
}

impl Report {
    /// True when every assertion held.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }
}

/// Run `policy` on `scenario`, with `overrides` for its params.
pub async fn simulate(
    runtime: &PolicyRuntime,
    policy: &LoadedPolicy<Session>,
    scenario: &Scenario,
    overrides: &[(String, String)],
) -> Report {
    let started = Instant::now();
    let clock = Clock::virtual_at_zero();
    let mut sim = SimBackend::new(
        clock.clone(),
        &scenario.service,
        scenario
            .revisions
            .iter()
            .map(|(revision, b)| (revision.clone(), b.into()))
            .collect(),
        scenario.seed,
        scenario.requests_per_second,
    );
    if let Some(from) = &scenario.from {
        sim.serve(from, scenario.replicas);
    }
    let session = Session::new(
        scenario.info(overrides),
        Box::new(sim),
        clock.clone(),
        &scenario.guardrails,
        Operator::scripted(scenario.commands()),
    );
    let (session, outcome) = executor::execute(runtime, policy, session).await;
    let step = session.step_number();
    let (journal, backend) = session.into_parts();
    let any: Box<dyn std::any::Any> = backend;
    let mut sim = any
        .downcast::<SimBackend>()
        .expect("the session was built around a SimBackend");
    let extremes = sim.extremes();
    let journal = journal.entries().to_vec();
    let (kind, reason) = match &outcome {
        Outcome::Completed => ("completed", String::new()),
        Outcome::RolledBack(why) => ("rolled-back", why.clone()),
        Outcome::Failed(why) => ("failed", why.clone()),
    };
    let observed = Observed {
        outcome: kind.to_string(),
        reason,
        step,
        max_instances: extremes.max_instances,
        min_ready: extremes.min_ready,
        final_counts: sim.ready_counts(),
        duration_ms: clock.now_ms(),
        journal: journal.iter().map(|e| e.text.clone()).collect(),
    };
    let checks = scenario.expect.check(&observed);
    Report {
        outcome,
        observed,
        checks,
        journal,
        wall: started.elapsed(),
    }
}
