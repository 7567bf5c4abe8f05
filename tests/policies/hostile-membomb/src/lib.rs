//! Hostile policy: allocates and touches 1 MiB chunks forever; the host's 64 MiB memory cap must stop it.
//!
//! It lists the fleet after each chunk: a host call renews the guest's CPU
//! budget, so on a slow machine the CPU limit cannot stop it first.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

struct MemBomb;

impl Guest for MemBomb {
    fn run(_info: RolloutInfo) -> Outcome {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // `vec![1u8; n]` writes every byte, so the pages are really touched.
            hoard.push(core::hint::black_box(vec![1u8; 1 << 20]));
            core::hint::black_box(&mut hoard);
            core::hint::black_box(rollout::policy::fleet::list());
        }
    }
}

export!(MemBomb);
