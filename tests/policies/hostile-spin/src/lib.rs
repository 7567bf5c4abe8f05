//! Hostile policy: logs once, then burns CPU forever; the host must kill it with its epoch deadline.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use rollout::policy::control;
use rollout::policy::types::Level;

struct Spin;

impl Guest for Spin {
    fn run(_info: RolloutInfo) -> Outcome {
        control::log(Level::Info, "spinning");
        let mut x: u64 = 1;
        loop {
            x = x.wrapping_mul(31).wrapping_add(1);
            core::hint::black_box(x);
        }
    }
}

export!(Spin);
