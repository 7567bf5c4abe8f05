//! Rolling update: replace instances in batches bounded by `max-surge` and
//! `max-unavailable`, judge each new instance by its health probe and its
//! logs, and roll every replaced instance back on failure.
//!
//! This is the bash rollout script done right: start new instances, wait
//! until they are ready, let them run `min-ready-ms`, grep their logs for
//! `[ERROR]`, then retire old ones; on failure restore the old revision.
//! Each batch is judged once, after `min-ready-ms`; later, a listing per
//! batch catches earlier new instances that crashed or turned unhealthy.
//!
//! `rollout promote` means what Argo Rollouts' `promote --full` does: from
//! the next batch on, every missing new instance starts at once (as many as
//! the host's max-surge guardrail allows, never fewer than a planned batch)
//! and `min-ready-ms` is no longer waited for. New instances must still
//! become ready and pass their probe and log check (whose window is then
//! shorter).
//!
//! | param               | default   | meaning                                                    |
//! |---------------------|-----------|------------------------------------------------------------|
//! | `max-surge`         | `1`       | instances above `replicas` during the update (count or %) |
//! | `max-unavailable`   | `0`       | instances below `replicas` during the update (count or %) |
//! | `min-ready-ms`      | `0`       | how long a new instance runs before it is judged (its log window) |
//! | `ready-timeout-ms`  | `60s`     | how long a new instance may take to become ready           |
//! | `failure-threshold` | `1`       | failed new instances that trigger a rollback               |
//! | `log-pattern`       | `[ERROR]` | a log line containing this marks the instance failed (empty: off) |

use rollout_policy::strategy::{self, Batch, State, Strategy};
use rollout_policy::{Host, Outcome, Params, Policy, ProbeResult, RolloutInfo, Verdict};

/// How many log lines of each new instance are searched for the pattern.
const LOG_LINES: u32 = 1_000;

/// The rolling update, configured from the rollout's params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rolling {
    max_surge: u32,
    max_unavailable: u32,
    min_ready_ms: u64,
    ready_timeout_ms: u64,
    failure_threshold: u32,
    log_pattern: String,
}

impl Rolling {
    /// Read and check the params of `info`.
    pub fn from_info(info: &RolloutInfo) -> Result<Self, String> {
        let p = Params::of(info);
        let rolling = Rolling {
            max_surge: p.count("max-surge", info.replicas, "1")?,
            max_unavailable: p.count("max-unavailable", info.replicas, "0")?,
            min_ready_ms: p.millis("min-ready-ms", 0)?,
            ready_timeout_ms: p.millis("ready-timeout-ms", 60_000)?,
            failure_threshold: p.u64("failure-threshold", 1)?.max(1) as u32,
            log_pattern: p.string("log-pattern", "[ERROR]"),
        };
        if rolling.max_surge == 0 && rolling.max_unavailable == 0 {
            return Err("max-surge and max-unavailable cannot both be 0".into());
        }
        Ok(rolling)
    }
}

impl Strategy for Rolling {
    fn ready_timeout_ms(&self) -> u64 {
        self.ready_timeout_ms
    }

    fn min_ready_ms(&self) -> u64 {
        self.min_ready_ms
    }

    fn plan(&self, _state: &State) -> Batch {
        Batch {
            stop_first: self.max_unavailable,
            start: self.max_surge + self.max_unavailable,
        }
    }

    fn verdict(&self, host: &mut impl Host, probe: &ProbeResult) -> Verdict {
        if !probe.verdict.is_healthy() || self.log_pattern.is_empty() {
            return probe.verdict.clone();
        }
        match host.logs(&probe.instance, LOG_LINES) {
            Ok(lines) => match lines.iter().find(|l| l.contains(&self.log_pattern)) {
                Some(line) => Verdict::Unhealthy(format!("logged {:?}", line.trim_end())),
                None => Verdict::Healthy,
            },
            Err(e) => Verdict::Unhealthy(format!("reading logs: {e}")),
        }
    }

    fn roll_back(&self, state: &State) -> Option<String> {
        let failed = state.failures.len() as u32;
        let last = state.failures.last()?;
        (failed >= self.failure_threshold).then(|| {
            format!(
                "{failed} new instance(s) failed (threshold {}), last {last}",
                self.failure_threshold
            )
        })
    }
}

impl Policy for Rolling {
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        match Rolling::from_info(info) {
            Ok(rolling) => strategy::replace(host, info, &rolling),
            Err(e) => Outcome::Failed(e),
        }
    }
}

rollout_policy::export!(Rolling);

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_policy::Command;
    use rollout_policy::testing::{Behaviour, FakeFleet, rolled_back};

    fn run(fleet: &mut FakeFleet, params: &[(&str, &str)]) -> Outcome {
        let info = fleet.info_with("v1", "v2", 3, params);
        Rolling::run(fleet, &info)
    }

    /// When a journal entry (`[  1500ms] ...`) happened.
    fn at_ms(entry: &str) -> Option<u64> {
        let at = entry
            .trim_start_matches('[')
            .trim_start()
            .split("ms")
            .next()?;
        at.parse().ok()
    }

    #[test]
    fn one_at_a_time_keeps_capacity() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(5_000));
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 3));
        assert_eq!(fleet.max_instances(), 4);
        assert_eq!(fleet.min_ready(), 3);
        assert_eq!(fleet.elapsed_ms(), 15_000);
    }

    #[test]
    fn max_unavailable_trades_capacity_for_no_surge() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(1_000));
        let outcome = run(&mut fleet, &[("max-surge", "0"), ("max-unavailable", "1")]);
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(fleet.max_instances(), 3);
        assert_eq!(fleet.min_ready(), 2);
    }

    #[test]
    fn never_ready_rolls_back_to_old_revision() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::never_ready());
        let outcome = run(&mut fleet, &[("ready-timeout-ms", "30s")]);
        assert!(rolled_back(&outcome).contains("not ready after 30000 ms"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
        assert_eq!(fleet.min_ready(), 3);
    }

    #[test]
    fn error_in_logs_within_the_window_rolls_back() {
        let mut fleet = FakeFleet::new().serving("v1", 3).behaviour(
            "v2",
            Behaviour::ready_after(1_000).logging(5_000, "[ERROR] db unreachable"),
        );
        let outcome = run(&mut fleet, &[("min-ready-ms", "10s")]);
        assert!(rolled_back(&outcome).contains("[ERROR] db unreachable"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
        assert_eq!(fleet.min_ready(), 3, "{:#?}", fleet.journal());
    }

    #[test]
    fn crash_of_an_earlier_batch_rolls_back_every_replaced_instance() {
        // Judged healthy at 11 s, crashes at 15 s: seen by batch 2's listing.
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(1_000).failing_after(15_000));
        let outcome = run(&mut fleet, &[("min-ready-ms", "10s")]);
        assert!(rolled_back(&outcome).contains("no longer ready"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
    }

    #[test]
    fn a_rollback_stops_new_instances_as_they_fail_to_restore_faster() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 10)
            .max_total(11)
            .behaviour("v1", Behaviour::ready_after(1_000))
            .behaviour("v2", Behaviour::ready_after(300).failing_after(1_500));
        let info = fleet.info_with("v1", "v2", 10, &[("min-ready-ms", "0")]);
        let outcome = Rolling::run(&mut fleet, &info);
        assert!(rolled_back(&outcome).contains("no longer ready"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (10, 0));
        // Failed at 1.5 s with four more replaced, each failing 0.3 s after
        // the other while old ones take 1 s to come back: each that fails
        // makes room for an old one at once, so four old ones are starting
        // together by 2.4 s (waiting for each: 5.5 s; for each round of
        // failures: 3.5 s).
        let journal = fleet.journal_text();
        let early_starts = fleet
            .journal()
            .iter()
            .filter(|e| e.contains("start v1 x1: "))
            .filter_map(|e| at_ms(e))
            .filter(|&ms| ms <= 2_400)
            .count();
        assert_eq!(early_starts, 4, "{journal}");
        assert_eq!(fleet.elapsed_ms(), 3_400, "{journal}");
    }

    #[test]
    fn an_earlier_instance_failing_during_a_wait_fails_at_once() {
        // v2-11 is ready at 2 s and fails at 2.5 s, while batch 2 waits
        // until 4 s for v2-12: the rollback starts when v2-11 fails.
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(2_000).failing_after(2_500));
        let outcome = run(&mut fleet, &[("min-ready-ms", "0")]);
        assert!(rolled_back(&outcome).contains("no longer ready"));
        let journal = fleet.journal_text();
        let noticed = fleet
            .journal()
            .iter()
            .find(|e| e.contains("failed: no longer ready"))
            .and_then(|e| at_ms(e));
        assert_eq!(noticed, Some(2_500), "{journal}");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
    }

    /// v1 x3 rolling to a v2 whose first instance fails at 2.5 s, when
    /// batch 3's instance (v2-6) is still starting, with the host allowing
    /// `max_total` instances.
    fn rollback_while_starting(max_total: u32) -> FakeFleet {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .max_total(max_total)
            .behaviour("v1", Behaviour::ready_after(1_000))
            .behaviour("v2", Behaviour::ready_after(1_000).failing_after(2_500));
        let outcome = run(&mut fleet, &[("min-ready-ms", "0")]);
        assert!(rolled_back(&outcome).contains("v2-4: no longer ready"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
        fleet
    }

    /// The journal's stops, with when.
    fn stops(fleet: &FakeFleet) -> Vec<(u64, String)> {
        let stop = |e: &String| Some((at_ms(e)?, e.split_once("] stop ")?.1.to_string()));
        fleet.journal().iter().filter_map(stop).collect()
    }

    #[test]
    fn a_rollback_retires_a_new_instance_still_starting_rather_than_waiting_on_its_stop() {
        // Room for both missing v1 at once: v2-6 is left to start (a
        // Swarm task cannot be stopped before it runs) and goes with the
        // rest at the end, each instance stopped once.
        let fleet = rollback_while_starting(5);
        let stops = stops(&fleet);
        let journal = fleet.journal_text();
        assert!(
            journal.contains("[    2500ms] start v1 x2: v1-7 v1-8"),
            "{journal}"
        );
        assert_eq!(
            stops.last(),
            Some(&(3_500, "v2-5 v2-6".to_string())),
            "{journal}"
        );
        assert_eq!(
            stops.iter().filter(|(_, ids)| ids.contains("v2-6")).count(),
            1
        );
    }

    #[test]
    fn a_rollback_stops_a_new_instance_still_starting_when_nothing_else_makes_room() {
        let fleet = rollback_while_starting(4);
        assert!(stops(&fleet).contains(&(2_500, "v2-6".to_string())));
        assert_eq!(fleet.max_instances(), 4);
    }

    #[test]
    fn a_rollback_probes_the_failed_revisions_instances_rather_than_wait_for_the_hosts_checks() {
        // The host checks each ready instance every second; v2 breaks
        // 1.5 s after it starts, so its first instance is listed unhealthy
        // at 2.35 s, when v2-12 to v2-17 have started (v2-12 and v2-13
        // broke already). The rollback probes the others at each look:
        // each goes within a look of the rollback's start or of breaking,
        // not at its next check, up to 1 s later.
        let mut fleet = FakeFleet::new()
            .serving("v1", 10)
            .max_total(11)
            .checked_every(1_000)
            .behaviour("v1", Behaviour::ready_after(350))
            .behaviour("v2", Behaviour::ready_after(350).unhealthy_after(1_500));
        let info = fleet.info_with("v1", "v2", 10, &[("min-ready-ms", "0")]);
        let outcome = Rolling::run(&mut fleet, &info);
        assert!(rolled_back(&outcome).contains("v2-11: no longer ready"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (10, 0));
        assert_eq!(fleet.max_instances(), 11);
        let journal = fleet.journal_text();
        let started: Vec<(u64, String)> = fleet
            .journal()
            .iter()
            .filter_map(|e| Some((at_ms(e)?, e.split_once("] start v2 x1: ")?.1.to_string())))
            .collect();
        let stops = stops(&fleet);
        let stopped = |id: &str| {
            stops
                .iter()
                .find(|(_, ids)| ids.split(' ').any(|s| s == id))
        };
        let rolling_back = fleet
            .journal()
            .iter()
            .find(|e| e.contains("rolling back"))
            .and_then(|e| at_ms(e));
        assert_eq!(rolling_back, Some(2_350), "{journal}");
        let late: Vec<_> = started
            .iter()
            .filter_map(|(at, id)| {
                let (stop, _) = stopped(id)?;
                let due = (at + 1_500).max(2_350) + rollout_policy::strategy::GLANCE_MS;
                (*stop > due).then_some(id.as_str())
            })
            .collect();
        assert_eq!(started.len(), 7, "{journal}");
        assert!(late.is_empty(), "{late:?} {journal}");
        assert_eq!(fleet.elapsed_ms(), 3_250, "{journal}");
    }

    #[test]
    fn failures_under_threshold_complete() {
        let flaky = || Behaviour::ready_after(1_000).crashing_first(2);
        let mut fleet = FakeFleet::new().serving("v1", 3).behaviour("v2", flaky());
        let outcome = run(&mut fleet, &[("failure-threshold", "3")]);
        assert_eq!(outcome, Outcome::Completed, "{:#?}", fleet.journal());
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 3));

        let mut fleet = FakeFleet::new().serving("v1", 3).behaviour("v2", flaky());
        let outcome = run(&mut fleet, &[("failure-threshold", "2")]);
        assert!(rolled_back(&outcome).contains("2 new instance(s) failed (threshold 2)"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
    }

    #[test]
    fn abort_rolls_back() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(5_000))
            .command_at(6_000, Command::Abort("operator".into()));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(rolled_back(&outcome), "operator");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
    }

    #[test]
    fn rollback_respects_a_tight_surge_limit() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::ready_after(1_000).failing_after(15_000))
            .max_total(4);
        let outcome = run(&mut fleet, &[("min-ready-ms", "10s")]);
        rolled_back(&outcome);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
        assert_eq!(fleet.max_instances(), 4);
    }

    #[test]
    fn promote_starts_the_rest_at_once_without_the_readiness_delay() {
        let fleet = || {
            FakeFleet::new()
                .serving("v1", 3)
                .behaviour("v2", Behaviour::ready_after(5_000))
        };
        let params = [("min-ready-ms", "30s")];
        // Unpromoted: three batches of 5 s to ready plus 30 s.
        let mut slow = fleet();
        assert_eq!(run(&mut slow, &params), Outcome::Completed);
        assert_eq!(slow.elapsed_ms(), 105_000);
        // Promoted during batch 1's delay: batch 2 (at 35 s) starts both
        // missing instances and judges them once ready, at 40 s.
        let mut promoted = fleet().command_at(10_000, Command::Promote);
        assert_eq!(run(&mut promoted, &params), Outcome::Completed);
        assert_eq!((promoted.count("v1"), promoted.count("v2")), (0, 3));
        assert_eq!(promoted.elapsed_ms(), 40_000, "{}", promoted.journal_text());
        assert_eq!(promoted.max_instances(), 5);
        assert_eq!(promoted.min_ready(), 3);
        // A host surge limit of 4 still holds: one at a time, no delay.
        let mut tight = fleet().max_total(4).command_at(10_000, Command::Promote);
        assert_eq!(run(&mut tight, &params), Outcome::Completed);
        assert_eq!(tight.elapsed_ms(), 45_000, "{}", tight.journal_text());
        assert_eq!(tight.max_instances(), 4);
    }

    #[test]
    fn promoted_instances_are_still_judged() {
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .behaviour("v2", Behaviour::never_ready())
            .command_at(0, Command::Promote);
        let outcome = run(&mut fleet, &[("ready-timeout-ms", "10s")]);
        assert!(rolled_back(&outcome).contains("not ready after 10000 ms"));
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (3, 0));
        assert_eq!(fleet.min_ready(), 3);
    }

    #[test]
    fn bad_params_fail_before_any_effect() {
        let mut fleet = FakeFleet::new().serving("v1", 3);
        let outcome = run(&mut fleet, &[("max-surge", "lots")]);
        assert!(matches!(outcome, Outcome::Failed(m) if m.contains("param max-surge")));
        let outcome = run(&mut fleet, &[("max-surge", "0")]);
        assert!(matches!(outcome, Outcome::Failed(m) if m.contains("cannot both be 0")));
        assert!(fleet.journal().is_empty());
    }

    #[test]
    fn first_deploy_starts_everything() {
        let mut fleet = FakeFleet::new().behaviour("v1", Behaviour::ready_after(2_000));
        let info = fleet.info("", "v1", 3);
        let outcome = Rolling::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed);
        assert_eq!(fleet.count("v1"), 3);
    }

    #[test]
    fn instances_killed_by_hand_do_not_block_the_next_rollout() {
        // Two of five killed: listed failed, they occupy no capacity.
        let mut fleet = FakeFleet::new()
            .serving("v1", 5)
            .killed("v1-1")
            .killed("v1-2")
            .max_total(6)
            .behaviour("v2", Behaviour::ready_after(1_000));
        let info = fleet.info_with("v1", "v2", 5, &[]);
        let outcome = Rolling::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed, "{}", fleet.journal_text());
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 5));
    }

    #[test]
    fn strays_of_another_revision_are_retired_to_make_room() {
        // A ready v0 left by an interrupted rollout fills the surge room.
        let mut fleet = FakeFleet::new()
            .serving("v0", 1)
            .serving("v1", 5)
            .max_total(6)
            .behaviour("v2", Behaviour::ready_after(1_000));
        let info = fleet.info_with("v1", "v2", 5, &[]);
        let outcome = Rolling::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed, "{}", fleet.journal_text());
        assert_eq!(fleet.count("v0"), 0);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 5));
        assert_eq!(fleet.max_instances(), 6);
    }

    #[test]
    fn a_mix_left_by_an_interruption_converges_to_the_spec() {
        // 3 of v1 and 3 of v2 for 5 replicas, one more v2 still starting
        // and one failed: what a kill -9 of the agent can leave.
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .serving("v2", 4)
            .killed("v2-7")
            .max_total(7)
            .behaviour("v2", Behaviour::ready_after(1_000));
        rollout_policy::Fleet::start(&mut fleet, "v2", 1).unwrap();
        let info = fleet.info_with("v1", "v2", 5, &[]);
        let outcome = Rolling::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed, "{}", fleet.journal_text());
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 5));
    }

    #[test]
    fn a_restore_without_room_fails_at_once() {
        // Nothing to stop and no room to start an old instance: waiting
        // would change nothing until the rollout's deadline.
        let mut fleet = FakeFleet::new()
            .serving("v1", 3)
            .killed("v1-1")
            .max_total(2);
        let info = fleet.info_with("v1", "v2", 3, &[]);
        let outcome = strategy::restore(&mut fleet, &info, 60_000, "test".into());
        let Outcome::Failed(why) = outcome else {
            panic!("{outcome:?}");
        };
        assert!(why.contains("no room to start v1"), "{why}");
        assert!(fleet.elapsed_ms() < 1_000, "{}", fleet.journal_text());
    }
}
