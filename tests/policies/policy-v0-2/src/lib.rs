//! Well-behaved trivial policy built against rollout:policy@0.2.0 (imports `clock.wall-ms`); the 0.1.0 host must refuse it with a WIT-version error.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../wit-0.2.0",
});

use rollout::policy::types::Level;
use rollout::policy::{clock, control};

struct V02;

impl Guest for V02 {
    fn run(info: RolloutInfo) -> Outcome {
        let now = clock::now_ms();
        let wall = clock::wall_ms();
        control::log(
            Level::Info,
            &format!("{}: done at {now} ms (wall clock {wall} ms)", info.service),
        );
        Outcome::Completed
    }
}

export!(V02);
