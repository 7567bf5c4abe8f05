//! Test policy: a one-at-a-time rolling update whose calls depend on the
//! WASI clocks (`Instant` and `SystemTime`, not `clock.now-ms`). Each
//! batch holds for what is left of 300 ms by `Instant`, and its checkpoint
//! label carries the wall clock, so a resumed rollout replays only if the
//! host gives the policy's clocks back as they read when it ran.

// The generated export glue for `run` takes the flattened `rollout-info` (10 arguments).
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit",
});

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rollout::policy::types::{Command, Verdict};
use rollout::policy::{clock, control, fleet, health};

/// How long each batch lasts, by the policy's monotonic clock.
const BATCH_MS: u128 = 300;

struct WasiClock;

impl Guest for WasiClock {
    fn run(info: RolloutInfo) -> Outcome {
        let old: Vec<_> = fleet::list()
            .into_iter()
            .filter(|i| i.revision != info.to_revision)
            .collect();
        for (batch, old) in old.iter().enumerate() {
            let began = Instant::now();
            let started = match fleet::start(&info.to_revision, 1) {
                Ok(started) => started,
                Err(e) => return Outcome::Failed(format!("start refused: {e:?}")),
            };
            let ids: Vec<_> = started.iter().map(|i| i.id.clone()).collect();
            let ready = health::wait_ready(&ids, 30_000);
            if ready.iter().any(|r| !matches!(r.verdict, Verdict::Healthy)) {
                return Outcome::Failed(format!("batch {batch}: not ready"));
            }
            let spent = began.elapsed().as_millis();
            clock::sleep(BATCH_MS.saturating_sub(spent) as u64);
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            if let Command::Abort(why) = control::checkpoint(&format!("batch {batch} at {wall}")) {
                return Outcome::Failed(why);
            }
            if let Err(e) = fleet::stop(std::slice::from_ref(&old.id)) {
                return Outcome::Failed(format!("stop refused: {e:?}"));
            }
        }
        Outcome::Completed
    }
}

export!(WasiClock);
