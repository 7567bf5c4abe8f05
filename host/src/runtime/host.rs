//! What the runtime asks of the host a policy runs against.
//!
//! The runtime knows wasmtime and the `rollout:policy` bindings, not what a
//! rollout does: each import lands on a [`PolicyHost`], which the executor
//! implements (as Spin's core and Zed's extension host are generic over the
//! state their bindings forward to). A host call either answers or halts the
//! policy with a [`Halt`], which traps the guest.

use std::future::Future;

use crate::model::{
    Command, EffectError, Instance, InstanceId, Level, Probe, Progress, RevisionId, RevisionStats,
    RolloutInfo,
};

/// Why the host stopped the policy (it traps; the policy cannot react).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    /// The rollout ran past its deadline.
    #[error("rollout deadline of {0} ms exceeded")]
    Deadline(u64),
    /// Paused with nothing scheduled to resume it (virtual clock only).
    #[error("paused by the operator and never resumed")]
    PausedForever,
    /// Too many host calls without virtual time passing (virtual clock) or
    /// without waiting (real clock): each call gives the guest a fresh CPU
    /// budget, so only this bound stops a loop that never waits before the
    /// deadlines do.
    #[error(
        "made {0} host calls {1}: a busy loop \
         (wait between looks at the fleet with clock.sleep or health.wait-ready)"
    )]
    Busy(u64, &'static str),
    /// Replaying a resumed rollout, the policy made another call than the
    /// one it made before the agent restarted: it is not deterministic, or
    /// the component changed.
    #[error("the resumed policy diverged from its recorded calls at {0}")]
    Diverged(String),
    /// The call could not be recorded, so the rollout could not survive a
    /// restart of the agent; an effect is never made unrecorded.
    #[error("the rollout's state could not be written: {0}")]
    Unrecorded(String),
    /// The agent is stopping (SIGTERM): the policy is stopped at a safe
    /// point, between host calls, and the rollout is left `interrupted`.
    #[error("the agent is stopping: the rollout stopped between two host calls")]
    Stopping,
}

/// The result of a host call that may halt the policy.
pub type Call<T> = Result<T, Halt>;

/// The host side of every `rollout:policy` import, in the host's model.
pub trait PolicyHost: Send + 'static {
    /// What the rollout is asked to do (the policy's `run` argument).
    fn info(&self) -> &RolloutInfo;
    /// Unix milliseconds at the rollout's start, where the policy's WASI
    /// wall clock starts (0 on the virtual clock).
    fn wall_origin_ms(&self) -> u64;
    /// The rollout time of the host call just made, which the policy's
    /// WASI clocks show until its next call (a resumed rollout's replayed
    /// calls give their recorded times).
    fn seen_ms(&self) -> u64;
    /// The last step the policy reported, for error messages.
    fn last_step(&self) -> String;

    /// `fleet.list`.
    fn list(&mut self) -> impl Future<Output = Call<Vec<Instance>>> + Send;
    /// `fleet.start`.
    fn start(
        &mut self,
        revision: &str,
        count: u32,
    ) -> impl Future<Output = Call<Result<Vec<Instance>, EffectError>>> + Send;
    /// `fleet.stop`.
    fn stop(
        &mut self,
        ids: &[InstanceId],
    ) -> impl Future<Output = Call<Result<(), EffectError>>> + Send;
    /// `fleet.logs`.
    fn logs(
        &mut self,
        id: &str,
        max_lines: u32,
    ) -> impl Future<Output = Call<Result<Vec<String>, EffectError>>> + Send;

    /// `health.probe`.
    fn probe(&mut self, id: &str) -> impl Future<Output = Call<Probe>> + Send;
    /// `health.wait-ready`.
    fn wait_ready(
        &mut self,
        ids: &[InstanceId],
        timeout_ms: u64,
    ) -> impl Future<Output = Call<Vec<Probe>>> + Send;

    /// `traffic.set-weights`.
    fn set_weights(
        &mut self,
        weights: &[(RevisionId, u32)],
    ) -> impl Future<Output = Call<Result<(), EffectError>>> + Send;
    /// `traffic.stats`.
    fn stats(
        &mut self,
        revision: &str,
        window_ms: u64,
    ) -> impl Future<Output = Call<RevisionStats>> + Send;

    /// `clock.now-ms`.
    fn now_ms(&mut self) -> u64;
    /// `clock.sleep`.
    fn sleep(&mut self, ms: u64) -> impl Future<Output = Call<()>> + Send;

    /// `control.checkpoint`.
    fn checkpoint(&mut self, label: &str) -> impl Future<Output = Call<Command>> + Send;
    /// `control.log`.
    fn log(&mut self, level: Level, message: &str);
    /// `control.report`.
    fn report(&mut self, progress: Progress);
}
