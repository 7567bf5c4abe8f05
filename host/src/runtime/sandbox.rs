//! The WASI a policy sees: nothing from the machine.
//!
//! No preopened directories, no environment, no arguments, no network
//! (wasmtime-wasi denies every socket address and name lookup by default),
//! stdin empty, stdout and stderr captured in memory. Clocks read the
//! rollout time of the policy's last host call ([`SeenTime`]) and
//! randomness is seeded, so a policy is deterministic given its import
//! results.

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

use crate::clock::{SeenTime, WasiClock};

/// Bytes of a guest's stderr kept (for panic messages).
const STDERR_BYTES: usize = 64 * 1024;

/// A WASI context for one rollout whose clocks read `seen`, and the pipe
/// its stderr writes to.
pub fn wasi_ctx(seen: SeenTime, seed: u64) -> (WasiCtx, MemoryOutputPipe) {
    let stderr = MemoryOutputPipe::new(STDERR_BYTES);
    let ctx = WasiCtxBuilder::new()
        .stderr(stderr.clone())
        .stdout(MemoryOutputPipe::new(STDERR_BYTES))
        .wall_clock(WasiClock(seen.clone()))
        .monotonic_clock(WasiClock(seen))
        .secure_random(StdRng::seed_from_u64(seed))
        .insecure_random(StdRng::seed_from_u64(seed.wrapping_add(1)))
        .insecure_random_seed(u128::from(seed))
        .allow_ip_name_lookup(false)
        .build();
    (ctx, stderr)
}
