//! Hostile policy: reports step 1, starts one new instance, then panics (a trap after an effect); the host must restore the fleet and name the step.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use rollout::policy::types::Progress;
use rollout::policy::{control, fleet};

struct Panic;

impl Guest for Panic {
    fn run(info: RolloutInfo) -> Outcome {
        control::report(&Progress {
            step: 1,
            steps: 2,
            message: "start one".into(),
        });
        let _ = fleet::start(&info.to_revision, 1);
        panic!("policy bug: index out of range");
    }
}

export!(Panic);
