//! The host's primitives as Rust traits, and their Wasm implementation.
//!
//! Policy code is generic over [`Host`], so the same logic runs against the
//! real host ([`WasmHost`], inside the component) and against
//! [`crate::testing::FakeFleet`] in native tests.

use crate::bindings::rollout::policy::{clock, control, fleet, health, traffic};
use crate::{
    Command, EffectError, Instance, InstanceId, Level, ProbeResult, Progress, RevisionStats,
};

/// The instances of the service.
pub trait Fleet {
    /// Every instance that is not stopped, all revisions.
    fn list(&mut self) -> Vec<Instance>;
    /// Start `count` instances of `revision`.
    fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, EffectError>;
    /// Stop (drain, then stop) instances.
    fn stop(&mut self, ids: &[InstanceId]) -> Result<(), EffectError>;
    /// The last `max_lines` log lines of an instance, oldest first.
    fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, EffectError>;
}

/// The service's health checks.
pub trait Health {
    /// Probe one instance now.
    fn probe(&mut self, id: &str) -> ProbeResult;
    /// Wait until each instance is ready or failed, or the timeout passes.
    fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Vec<ProbeResult>;
}

/// The front door's traffic split and statistics.
pub trait Traffic {
    /// Route traffic by relative weight per revision.
    fn set_weights(&mut self, weights: &[(String, u32)]) -> Result<(), EffectError>;
    /// Traffic received by a revision over the last `window_ms`.
    fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats;
}

/// The rollout's clock (virtual under `rollout test`).
pub trait Clock {
    /// Milliseconds since the rollout started.
    fn now_ms(&mut self) -> u64;
    /// Wait `ms` milliseconds.
    fn sleep(&mut self, ms: u64);
}

/// The operator and the journal.
pub trait Control {
    /// A point where the operator may pause, promote or abort.
    fn checkpoint(&mut self, label: &str) -> Command;
    /// Write a line to the rollout's journal.
    fn log(&mut self, level: Level, message: &str);
    /// Report progress.
    fn report(&mut self, progress: Progress);
}

/// Everything a policy can ask of the host.
pub trait Host: Fleet + Health + Traffic + Clock + Control {}

impl<T: Fleet + Health + Traffic + Clock + Control> Host for T {}

/// The real host, reached through the component's imports. Only meaningful
/// inside a component built for `wasm32-wasip2`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WasmHost;

impl Fleet for WasmHost {
    fn list(&mut self) -> Vec<Instance> {
        fleet::list()
    }
    fn start(&mut self, revision: &str, count: u32) -> Result<Vec<Instance>, EffectError> {
        fleet::start(revision, count)
    }
    fn stop(&mut self, ids: &[InstanceId]) -> Result<(), EffectError> {
        fleet::stop(ids)
    }
    fn logs(&mut self, id: &str, max_lines: u32) -> Result<Vec<String>, EffectError> {
        fleet::logs(id, max_lines)
    }
}

impl Health for WasmHost {
    fn probe(&mut self, id: &str) -> ProbeResult {
        health::probe(id)
    }
    fn wait_ready(&mut self, ids: &[InstanceId], timeout_ms: u64) -> Vec<ProbeResult> {
        health::wait_ready(ids, timeout_ms)
    }
}

impl Traffic for WasmHost {
    fn set_weights(&mut self, weights: &[(String, u32)]) -> Result<(), EffectError> {
        traffic::set_weights(weights)
    }
    fn stats(&mut self, revision: &str, window_ms: u64) -> RevisionStats {
        traffic::stats(revision, window_ms)
    }
}

impl Clock for WasmHost {
    fn now_ms(&mut self) -> u64 {
        clock::now_ms()
    }
    fn sleep(&mut self, ms: u64) {
        clock::sleep(ms)
    }
}

impl Control for WasmHost {
    fn checkpoint(&mut self, label: &str) -> Command {
        control::checkpoint(label)
    }
    fn log(&mut self, level: Level, message: &str) {
        control::log(level, message)
    }
    fn report(&mut self, progress: Progress) {
        control::report(&progress)
    }
}
