//! The rollout executor: runs a policy against a backend under the host's
//! guardrails, operator commands and deadlines, and journals every step.
//!
//! The policy decides; the [`Session`] enforces. When the policy itself
//! fails (a trap, a limit, a lie about its outcome), the session restores
//! the old revision so a broken policy can fail a rollout but never take the
//! service down. On the agent, the policy calls a [`Durable`] session,
//! whose every call is logged so the rollout survives a restart.

mod durable;
pub(crate) mod guardrails;
pub(crate) mod operator;
mod session;

pub use durable::Durable;
pub use session::Session;

use crate::model::Outcome;
use crate::runtime::{Halt, LoadedPolicy, PolicyError, PolicyHost, Runtime};

/// The runtime of `rollout test` and the benchmarks: policies call a
/// [`Session`].
pub type PolicyRuntime = Runtime<Session>;

/// The agent's runtime: policies call a [`Durable`] session.
pub type DurableRuntime = Runtime<Durable>;

/// Run `policy` to the end of the rollout, then check its outcome.
///
/// A policy error fails the rollout: a halt while paused leaves the fleet as
/// it is for the operator; any other error (trap, CPU, memory, deadline)
/// restores the old revision first. The returned outcome says which and why.
pub async fn execute<H: PolicyHost + AsMut<Session>>(
    runtime: &Runtime<H>,
    policy: &LoadedPolicy<H>,
    host: H,
) -> (H, Outcome) {
    let (mut host, result) = runtime.run(policy, host).await;
    let session = host.as_mut();
    session.close_operator();
    let outcome = match result {
        Ok(outcome) => session.verify(&policy.name, outcome).await,
        Err(
            error @ PolicyError::Halted {
                halt: Halt::PausedForever,
                ..
            },
        ) => Outcome::Failed(format!("{error}; fleet left as it is for an operator")),
        // The agent is stopping: nothing is restored, the rollout is left
        // as it is to be resumed or run again.
        Err(
            error @ PolicyError::Halted {
                halt: Halt::Stopping,
                ..
            },
        ) => {
            session.note("agent stopping: the rollout is left interrupted");
            Outcome::Failed(format!(
                "{error}; interrupted by the agent stopping, fleet left as it is"
            ))
        }
        Err(error) => {
            session.note(format!("{error}"));
            let restored = session.restore().await;
            Outcome::Failed(format!("{error}; {restored}"))
        }
    };
    session.note(format!("outcome: {outcome}"));
    (host, outcome)
}

impl AsMut<Session> for Session {
    fn as_mut(&mut self) -> &mut Session {
        self
    }
}
