//! Benchmark guest for `rollout bench runtime`: makes `calls` (a param)
//! round trips to the host's cheapest import, `clock.now-ms`, and returns, so
//! the host can time one host call from inside a guest.

use rollout_policy::{Host, Outcome, Params, Policy, RolloutInfo};

/// Calls `clock.now-ms` `calls` times.
struct BenchCalls;

impl Policy for BenchCalls {
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        let calls = match Params::of(info).u64("calls", 1) {
            Ok(n) => n,
            Err(e) => return Outcome::Failed(e),
        };
        let mut sum = 0u64;
        for _ in 0..calls {
            sum = sum.wrapping_add(host.now_ms());
        }
        std::hint::black_box(sum);
        Outcome::Completed
    }
}

rollout_policy::export!(BenchCalls);
