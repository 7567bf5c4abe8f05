//! Bindings for `rollout:policy@0.1.0`: the generated world, the host side
//! of each import (forwarding to the [`PolicyHost`]), and conversions to the
//! host's [`model`](crate::model).
//!
//! One module per WIT version, as Zed does for its extensions: a future
//! `v0_2_0` module converts its own types into the same model, and the
//! runtime picks the binding by the version a component imports.

use wasmtime::component::HasSelf;

use super::{PolicyHost, PolicyState};
use crate::model;

wasmtime::component::bindgen!({
    world: "policy",
    path: "../wit",
    imports: { default: async | trappable },
    exports: { default: async },
});

use self::rollout::policy::types::{
    Command, EffectError, Instance, InstanceState, Level, ProbeResult, Progress, RevisionStats,
    Verdict,
};
use self::rollout::policy::{clock, control, fleet, health, traffic, types};

/// The WIT version this module binds.
pub const VERSION: &str = "0.1.0";

/// Add this version's imports to `linker`.
pub fn add_to_linker<H: PolicyHost>(
    linker: &mut wasmtime::component::Linker<PolicyState<H>>,
) -> wasmtime::Result<()> {
    Policy::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

impl<H: PolicyHost> types::Host for PolicyState<H> {}

impl<H: PolicyHost> fleet::Host for PolicyState<H> {
    async fn list(&mut self) -> wasmtime::Result<Vec<Instance>> {
        let r = self.host.list().await;
        self.returned(r, |v| v.into_iter().map(Instance::from).collect())
    }

    async fn start(
        &mut self,
        revision: String,
        count: u32,
    ) -> wasmtime::Result<Result<Vec<Instance>, EffectError>> {
        let r = self.host.start(&revision, count).await;
        self.returned(r, |r| {
            r.map(|v| v.into_iter().map(Instance::from).collect())
                .map_err(EffectError::from)
        })
    }

    async fn stop(&mut self, ids: Vec<String>) -> wasmtime::Result<Result<(), EffectError>> {
        let r = self.host.stop(&ids).await;
        self.returned(r, |r| r.map_err(EffectError::from))
    }

    async fn logs(
        &mut self,
        id: String,
        max_lines: u32,
    ) -> wasmtime::Result<Result<Vec<String>, EffectError>> {
        let r = self.host.logs(&id, max_lines).await;
        self.returned(r, |r| r.map_err(EffectError::from))
    }
}

impl<H: PolicyHost> health::Host for PolicyState<H> {
    async fn probe(&mut self, id: String) -> wasmtime::Result<ProbeResult> {
        let r = self.host.probe(&id).await;
        self.returned(r, ProbeResult::from)
    }

    async fn wait_ready(
        &mut self,
        ids: Vec<String>,
        timeout_ms: u64,
    ) -> wasmtime::Result<Vec<ProbeResult>> {
        let r = self.host.wait_ready(&ids, timeout_ms).await;
        self.returned(r, |v| v.into_iter().map(ProbeResult::from).collect())
    }
}

impl<H: PolicyHost> traffic::Host for PolicyState<H> {
    async fn set_weights(
        &mut self,
        weights: Vec<(String, u32)>,
    ) -> wasmtime::Result<Result<(), EffectError>> {
        let r = self.host.set_weights(&weights).await;
        self.returned(r, |r| r.map_err(EffectError::from))
    }

    async fn stats(&mut self, revision: String, window_ms: u64) -> wasmtime::Result<RevisionStats> {
        let r = self.host.stats(&revision, window_ms).await;
        self.returned(r, RevisionStats::from)
    }
}

impl<H: PolicyHost> clock::Host for PolicyState<H> {
    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        let now = self.host.now_ms();
        self.saw();
        Ok(now)
    }

    async fn sleep(&mut self, ms: u64) -> wasmtime::Result<()> {
        let r = self.host.sleep(ms).await;
        self.returned(r, |()| ())
    }
}

impl<H: PolicyHost> control::Host for PolicyState<H> {
    async fn checkpoint(&mut self, label: String) -> wasmtime::Result<Command> {
        let r = self.host.checkpoint(&label).await;
        self.returned(r, Command::from)
    }

    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.host.log(level.into(), &message);
        self.saw();
        Ok(())
    }

    async fn report(&mut self, progress: Progress) -> wasmtime::Result<()> {
        self.host.report(progress.into());
        self.saw();
        Ok(())
    }
}

impl From<RolloutInfo> for model::RolloutInfo {
    fn from(i: RolloutInfo) -> Self {
        model::RolloutInfo {
            service: i.service,
            from_revision: i.from_revision,
            to_revision: i.to_revision,
            replicas: i.replicas,
            params: i.params,
        }
    }
}

impl From<&model::RolloutInfo> for RolloutInfo {
    fn from(i: &model::RolloutInfo) -> Self {
        RolloutInfo {
            service: i.service.clone(),
            from_revision: i.from_revision.clone(),
            to_revision: i.to_revision.clone(),
            replicas: i.replicas,
            params: i.params.clone(),
        }
    }
}

impl From<model::Instance> for Instance {
    fn from(i: model::Instance) -> Self {
        Instance {
            id: i.id,
            revision: i.revision,
            state: match i.state {
                model::InstanceState::Starting => InstanceState::Starting,
                model::InstanceState::Ready => InstanceState::Ready,
                model::InstanceState::Unhealthy => InstanceState::Unhealthy,
                model::InstanceState::Draining => InstanceState::Draining,
                model::InstanceState::Stopped => InstanceState::Stopped,
                model::InstanceState::Failed => InstanceState::Failed,
            },
            address: i.address,
            age_ms: i.age_ms,
        }
    }
}

impl From<model::Verdict> for Verdict {
    fn from(v: model::Verdict) -> Self {
        match v {
            model::Verdict::Healthy => Verdict::Healthy,
            model::Verdict::Unhealthy(why) => Verdict::Unhealthy(why),
            model::Verdict::Unknown(why) => Verdict::Unknown(why),
        }
    }
}

impl From<model::Probe> for ProbeResult {
    fn from(p: model::Probe) -> Self {
        ProbeResult {
            instance: p.instance,
            verdict: p.verdict.into(),
            latency_us: p.latency_us,
        }
    }
}

impl From<model::RevisionStats> for RevisionStats {
    fn from(s: model::RevisionStats) -> Self {
        RevisionStats {
            revision: s.revision,
            requests: s.requests,
            errors: s.errors,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        }
    }
}

impl From<model::EffectError> for EffectError {
    fn from(e: model::EffectError) -> Self {
        match e {
            model::EffectError::Guardrail(m) => EffectError::Guardrail(m),
            model::EffectError::Aborted(m) => EffectError::Aborted(m),
            model::EffectError::Invalid(m) => EffectError::Invalid(m),
            model::EffectError::Backend(m) => EffectError::Backend(m),
        }
    }
}

impl From<model::Command> for Command {
    fn from(c: model::Command) -> Self {
        match c {
            model::Command::Proceed => Command::Proceed,
            model::Command::Promote => Command::Promote,
            model::Command::Abort(why) => Command::Abort(why),
        }
    }
}

impl From<Level> for model::Level {
    fn from(l: Level) -> Self {
        match l {
            Level::Debug => model::Level::Debug,
            Level::Info => model::Level::Info,
            Level::Warn => model::Level::Warn,
            Level::Error => model::Level::Error,
        }
    }
}

impl From<Progress> for model::Progress {
    fn from(p: Progress) -> Self {
        model::Progress {
            step: p.step,
            steps: p.steps,
            message: p.message,
        }
    }
}

impl From<Outcome> for model::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Completed => model::Outcome::Completed,
            Outcome::RolledBack(why) => model::Outcome::RolledBack(why),
            Outcome::Failed(why) => model::Outcome::Failed(why),
        }
    }
}
