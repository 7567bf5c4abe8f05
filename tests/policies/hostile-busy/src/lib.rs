//! Hostile policy: starts one instance, then lists the fleet forever
//! without ever waiting; each host call gives it a fresh CPU budget, so on
//! a virtual clock only the host's busy-loop bound can stop it.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use rollout::policy::types::{Level, Progress};
use rollout::policy::{control, fleet};

struct Busy;

impl Guest for Busy {
    fn run(info: RolloutInfo) -> Outcome {
        control::report(&Progress {
            step: 1,
            steps: 1,
            message: "busy".into(),
        });
        control::log(Level::Info, "listing forever");
        let _ = fleet::start(&info.to_revision, 1);
        loop {
            core::hint::black_box(fleet::list());
        }
    }
}

export!(Busy);
