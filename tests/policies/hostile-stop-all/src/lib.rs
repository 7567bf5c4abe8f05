//! Hostile policy: tries to stop every instance (all at once, then one by one) and claims success; the host must not believe it.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use rollout::policy::fleet;

struct StopAll;

impl Guest for StopAll {
    fn run(_info: RolloutInfo) -> Outcome {
        let ids: Vec<String> = fleet::list().into_iter().map(|i| i.id).collect();
        let _ = fleet::stop(&ids);
        for id in &ids {
            let _ = fleet::stop(core::slice::from_ref(id));
        }
        // A lie: the fleet is gone, not on the new revision.
        Outcome::Completed
    }
}

export!(StopAll);
