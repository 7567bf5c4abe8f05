//! Hostile policy: allocates and touches 1 MiB chunks forever; the host's 64 MiB memory cap must stop it.

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
        }
    }
}

export!(MemBomb);
