//! Sandbox limits, in one place: CPU per call, memory, pool size, seed.

use std::time::Duration;

/// Limits every policy runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest a policy may compute between two host calls.
    pub cpu_per_call: Duration,
    /// Largest linear memory a policy may grow to, in bytes.
    pub memory_bytes: usize,
    /// Policies that may run at once in this process (pool size).
    pub instances: u32,
    /// Seed of the randomness a guest may import (WASI random).
    pub seed: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_per_call: Duration::from_millis(100),
            memory_bytes: 64 << 20,
            instances: 16,
            seed: 0,
        }
    }
}

/// CPU time the calling thread has used. The guest runs on the thread that
/// polls its fiber, and does not move between host calls, so differences of
/// this clock measure the guest's own computing, not time it was preempted.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    match rc {
        0 => Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32),
        _ => Duration::ZERO,
    }
}

/// A limit a running policy hit; the store records it so the error can
/// name it even when the trap's own message does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitHit {
    /// Computed too long without calling the host.
    #[error("CPU limit exceeded")]
    Cpu,
    /// Asked for more memory than allowed.
    #[error("memory limit exceeded: asked for {desired} bytes")]
    Memory {
        /// Bytes the policy asked for.
        desired: usize,
    },
}

/// The store's resource limiter: refuses memory growth past the cap with a
/// trap that names the limit.
#[derive(Debug)]
pub struct StoreLimiter {
    max_memory: usize,
    /// The limit hit, if any.
    pub hit: Option<LimitHit>,
}

impl StoreLimiter {
    /// A limiter for `max_memory` bytes per linear memory.
    pub fn new(max_memory: usize) -> Self {
        StoreLimiter {
            max_memory,
            hit: None,
        }
    }
}

impl wasmtime::ResourceLimiter for StoreLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            let hit = LimitHit::Memory { desired };
            self.hit = Some(hit);
            return Err(hit.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
