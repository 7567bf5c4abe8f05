//! The rollout's clock: real for live backends, virtual for `rollout test`.
//!
//! On the virtual clock, sleeping moves time forward at once, so a
//! 30-minute rollout runs in milliseconds. The WASI clocks a guest may
//! import read the time of its last host call ([`SeenTime`]), so a policy
//! cannot tell the two apart, and replays as it ran.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Milliseconds since the rollout started, real or virtual.
#[derive(Debug, Clone)]
pub enum Clock {
    /// Wall time since `Instant`.
    Real(Instant),
    /// Time that moves only when someone sleeps.
    Virtual(Arc<AtomicU64>),
}

impl Clock {
    /// A real clock starting now.
    pub fn real() -> Self {
        Clock::Real(Instant::now())
    }

    /// A real clock that reads `elapsed_ms` now: a rollout resumed after
    /// the agent restarted goes on from its start.
    pub fn real_since(elapsed_ms: u64) -> Self {
        let now = Instant::now();
        Clock::Real(
            now.checked_sub(Duration::from_millis(elapsed_ms))
                .unwrap_or(now),
        )
    }

    /// A virtual clock at 0.
    pub fn virtual_at_zero() -> Self {
        Clock::Virtual(Arc::new(AtomicU64::new(0)))
    }

    /// True for the virtual clock.
    pub fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual(_))
    }

    /// Milliseconds since the start.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::Real(start) => start.elapsed().as_millis() as u64,
            Clock::Virtual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// Wait until `at_ms` (at once on the virtual clock).
    pub async fn sleep_until(&self, at_ms: u64) {
        match self {
            Clock::Real(start) => {
                let at = *start + Duration::from_millis(at_ms);
                tokio::time::sleep_until(at.into()).await;
            }
            Clock::Virtual(ms) => {
                ms.fetch_max(at_ms, Ordering::AcqRel);
            }
        }
    }
}

/// The time a policy has seen: the rollout time of its last host call,
/// which is what its WASI clocks read. Time stands still between two host
/// calls, and a resumed rollout's replayed calls give back their recorded
/// times, so a policy that reads WASI clocks replays as it ran.
#[derive(Debug, Clone, Default)]
pub struct SeenTime {
    ms: Arc<AtomicU64>,
    /// Unix milliseconds at the rollout's start (0 on the virtual clock).
    wall_origin_ms: u64,
}

impl SeenTime {
    /// At the rollout's start, whose wall time is `wall_origin_ms`.
    pub fn new(wall_origin_ms: u64) -> Self {
        SeenTime {
            ms: Arc::default(),
            wall_origin_ms,
        }
    }

    /// The policy's host call happened at rollout time `ms`.
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::Release);
    }

    fn ms(&self) -> u64 {
        self.ms.load(Ordering::Acquire)
    }
}

/// The WASI clocks of a policy, reading its [`SeenTime`]: monotonic
/// nanoseconds since the rollout's start, and a wall clock at the
/// rollout's start plus that (the Unix epoch plus it on the virtual clock,
/// so a guest sees deterministic dates in tests).
pub struct WasiClock(pub SeenTime);

impl wasmtime_wasi::HostMonotonicClock for WasiClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.0.ms().saturating_mul(1_000_000)
    }
}

impl wasmtime_wasi::HostWallClock for WasiClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.wall_origin_ms.saturating_add(self.0.ms()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_time_moves_only_forward_and_at_once() {
        let clock = Clock::virtual_at_zero();
        let started = Instant::now();
        clock.sleep_until(30 * 60 * 1000).await;
        clock.sleep_until(10).await;
        assert_eq!(clock.now_ms(), 30 * 60 * 1000);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
