//! The simulated fleet of rollout: instances of scripted revisions on a
//! virtual clock.
//!
//! One model, dependency-free, shared by the host's `sim` backend (what
//! `rollout test` runs a policy against) and the policy SDK's `FakeFleet`
//! (what a policy's native unit tests run against, built for
//! `wasm32-wasip2` too), so both answer a policy the same way. Each
//! revision has a [`Behaviour`] (start delay or never ready, crash or turn
//! unhealthy after a time, crash the first starts or at random from a
//! seed, log lines, traffic error rate and latency); a [`Fleet`] holds the
//! instances, replays their state changes in time order and answers start,
//! stop, probe, logs and traffic stats at the current virtual instant.
//! [`agreement`] is the table of cases both fronts are tested against.
//!
//! ```
//! use std::collections::BTreeMap;
//! use rollout_fleet_sim::{Behaviour, Fleet, State};
//!
//! let behaviours = BTreeMap::from([("v2".to_string(), Behaviour::ready_after(1_000))]);
//! let mut fleet = Fleet::new(behaviours);
//! let id = fleet.start("v2", 1).unwrap()[0].id.clone();
//! assert_eq!(fleet.next_change_ms(), Some(1_000));
//! fleet.advance_to(5_000);
//! assert_eq!(fleet.instance(&id).unwrap().state(), State::Ready);
//! ```

#![deny(missing_docs)]

pub mod agreement;
mod behaviour;
mod fleet;
mod rng;

pub use behaviour::Behaviour;
pub use fleet::{Change, Extremes, Fleet, Instance, Probe, SimError, State, Stats};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::agreement::{self, Subject};
    use super::*;

    /// The model itself, as the cases see a fleet.
    struct Model(Fleet);

    fn verdict(state: State) -> String {
        match state {
            State::Ready => "healthy",
            State::Starting => "unknown",
            _ => "unhealthy",
        }
        .to_string()
    }

    impl Subject for Model {
        fn now_ms(&mut self) -> u64 {
            self.0.now_ms()
        }
        fn start(&mut self, revision: &str, count: u32) -> Vec<(String, String)> {
            let started = self.0.start(revision, count).unwrap();
            let named = |i: Instance| (i.id.clone(), i.state().name().to_string());
            started.into_iter().map(named).collect()
        }
        fn stop(&mut self, ids: &[String]) {
            self.0.stop(ids).unwrap();
        }
        fn sleep(&mut self, ms: u64) {
            self.0.advance_to(self.0.now_ms() + ms);
        }
        fn wait_ready(&mut self, ids: &[String], timeout_ms: u64) -> Vec<(String, String)> {
            self.0.settle(ids, timeout_ms);
            let probe = |id: &String| (id.clone(), verdict(self.0.probe(id).unwrap().state));
            ids.iter().map(probe).collect()
        }
        fn list(&mut self) -> Vec<(String, String, u64)> {
            let now = self.0.now_ms();
            self.0
                .list()
                .map(|i| (i.id.clone(), i.state().name().into(), now - i.started_ms))
                .collect()
        }
        fn probe(&mut self, id: &str) -> (String, u64) {
            let p = self.0.probe(id).unwrap();
            (verdict(p.state), p.latency_us)
        }
        fn logs(&mut self, id: &str, max_lines: u32) -> Vec<String> {
            self.0.logs(id, max_lines).unwrap()
        }
        fn set_weights(&mut self, weights: &[(String, u32)]) {
            self.0.set_weights(weights).unwrap();
        }
        fn stats(&mut self, revision: &str, window_ms: u64) -> [u64; 4] {
            let s = self.0.stats(revision, window_ms).unwrap();
            [s.requests, s.errors, s.p50_us, s.p99_us]
        }
        fn extremes(&mut self) -> Extremes {
            self.0.extremes()
        }
    }

    #[test]
    fn the_model_gives_the_agreed_answers() {
        for case in agreement::cases() {
            let behaviours = case
                .revisions
                .iter()
                .map(|(r, b)| (r.to_string(), b.clone()))
                .collect::<BTreeMap<_, _>>();
            let mut fleet = Fleet::new(behaviours);
            fleet.serve(case.from, case.serving);
            let got = agreement::run(&case, &mut Model(fleet));
            assert_eq!(got, case.expect, "{}", case.name);
        }
    }
}
