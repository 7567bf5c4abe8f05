//! One instance at a time, rolled back on the first failure: the policy
//! `docs/policies.md` walks through.

use rollout_policy::strategy::{self, Batch, State, Strategy};
use rollout_policy::{Host, Outcome, Policy, ProbeResult, RolloutInfo, Verdict};

/// Replace one instance at a time.
pub struct OneByOne;

impl Strategy for OneByOne {
    // Batch plan: how many old to stop first, how many new to start.
    fn plan(&self, _state: &State) -> Batch {
        Batch {
            stop_first: 0,
            start: 1,
        }
    }
    // Health verdict: judge each new instance (probe, logs, stats...).
    fn verdict(&self, _host: &mut impl Host, probe: &ProbeResult) -> Verdict {
        probe.verdict.clone()
    }
    // Rollback condition.
    fn roll_back(&self, state: &State) -> Option<String> {
        state.failures.first().map(|f| f.to_string())
    }
}

impl Policy for OneByOne {
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        strategy::replace(host, info, &OneByOne)
    }
}

rollout_policy::export!(OneByOne);

#[cfg(test)]
mod tests {
    use super::OneByOne;
    use rollout_policy::testing::{Behaviour, FakeFleet};
    use rollout_policy::{Outcome, Policy};

    #[test]
    fn replaces_one_at_a_time() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(2_000));
        let info = fleet.info("v1", "v2", 3);
        let outcome = OneByOne::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(fleet.count("v2"), 3);
        assert_eq!(fleet.max_instances(), 4); // never more than one extra
    }

    #[test]
    fn rolls_back_a_revision_that_never_gets_ready() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::never_ready());
        let info = fleet.info("v1", "v2", 3);
        let outcome = OneByOne::run(&mut fleet, &info);
        assert!(matches!(outcome, Outcome::RolledBack(_)));
        assert_eq!(fleet.count("v1"), 3); // the old revision serves
        assert!(fleet.min_ready() >= 3); // never below capacity
    }
}
