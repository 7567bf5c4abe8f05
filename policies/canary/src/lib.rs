//! Canary: shift traffic to the new revision in weighted steps, hold each
//! step, compare the new revision's traffic with the old one's, and roll
//! back automatically when the analysis fails.
//!
//! The flow, for steps `5,25,50,100` and `replicas` instances:
//!
//! 1. Weights `[(old, 100), (new, 0)]` before anything starts.
//! 2. At each step below 100% (weight `w`): start new instances up to
//!    `ceil(replicas * w / 100)` (at least 1) and wait until they are ready;
//!    set the weights `[(old, 100 - w), (new, w)]`; stop old instances down to
//!    what their share needs, `ceil(replicas * (100 - w) / 100)` (so no old
//!    instance carries more than before); pass a checkpoint (`promote` skips to 100%, `abort`
//!    rolls back); hold `hold-ms`; analyse `traffic.stats` of both revisions
//!    over the hold.
//! 3. At 100%: every instance new, weights `[(new, 100)]`, the old revision
//!    stopped: completed. The last step is the promotion: no hold.
//!
//! Old instances are stopped only after the new ones that replace them are
//! ready. When the host's surge guardrail refuses to start the new instances
//! of a step at once, they start one at a time, each followed by retiring an
//! old instance, so the fleet never has fewer than `replicas` ready
//! instances. When the min-available guardrail refuses to stop old
//! instances, they are kept, and stopped at a later step.
//!
//! The analysis ([`rollout_policy::analysis`]) fails when the canary's error
//! rate is above `max-error-rate`, or its p99 latency is more than
//! `max-p99-ratio` times the stable revision's (when the stable one served
//! requests), or a canary instance crashed. With fewer than `min-requests`
//! canary requests the verdict is unknown: the step holds again, up to
//! `max-unknown` extra holds, then fails as "not enough traffic".
//!
//! A rollback sets the weights back to `[(old, 100), (new, 0)]` first,
//! brings the old revision back to `replicas` ready instances, stops every
//! new instance, and names the failed check with its numbers, e.g.
//! `analysis at step 1 (5%): canary error rate 0.200 > 0.050 over 150 requests`.
//!
//! A first deploy (no old revision) starts `replicas` new instances and
//! gives them all the traffic.
//!
//! | param              | default       | meaning                                                          |
//! |--------------------|---------------|------------------------------------------------------------------|
//! | `steps`            | `5,25,50,100` | weights in % of traffic for the new revision, ascending, ending with 100 |
//! | `hold-ms`          | `30s`         | time at each step before the analysis (and each extra hold)       |
//! | `max-error-rate`   | `0.05`        | share of failed canary requests above which the analysis fails    |
//! | `max-p99-ratio`    | `1.5`         | canary p99 / stable p99 above which the analysis fails (ignored when the stable revision served no requests) |
//! | `p99-slack-ms`     | `5ms`         | a canary p99 at most this much above the stable one passes whatever the ratio |
//! | `min-requests`     | `20`          | fewer canary requests in the hold: verdict unknown, hold again    |
//! | `max-unknown`      | `3`           | extra holds on an unknown verdict before failing as "not enough traffic" |
//! | `ready-timeout-ms` | `60s`         | how long a new instance may take to become ready                  |

use rollout_policy::analysis::Analysis;
use rollout_policy::shift::{self, Room};
use rollout_policy::{
    Command, Host, Level, Outcome, Params, Policy, Progress, RolloutInfo, Verdict,
};

/// Retries (one per second) when the host refuses to stop the old revision
/// at the end.
const STOP_RETRIES: u32 = 10;

/// The canary policy, configured from the rollout's params.
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    /// Weights of the new revision in %, ascending, ending with 100.
    pub steps: Vec<u32>,
    /// Hold at each step before the analysis, in ms.
    pub hold_ms: u64,
    /// Thresholds of the analysis.
    pub analysis: Analysis,
    /// Extra holds on an unknown verdict before the analysis fails.
    pub max_unknown: u32,
    /// How long a new instance may take to become ready, in ms.
    pub ready_timeout_ms: u64,
}

impl Canary {
    /// Read and check the params of `info`.
    pub fn from_info(info: &RolloutInfo) -> Result<Self, String> {
        let p = Params::of(info);
        let max_unknown = p.u64("max-unknown", 3)?;
        Ok(Canary {
            steps: parse_steps(&p.string("steps", "5,25,50,100"))?,
            hold_ms: p.millis("hold-ms", 30_000)?,
            analysis: Analysis::from_params(&p)?.with_p99_ratio(&p)?,
            max_unknown: u32::try_from(max_unknown)
                .map_err(|_| format!("param max-unknown: {max_unknown} is too large"))?,
            ready_timeout_ms: p.millis("ready-timeout-ms", 60_000)?,
        })
    }

    /// Drive the rollout of `info` through the steps.
    pub fn roll_out(&self, host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        let Some(from) = info.from_revision.as_deref() else {
            return shift::first_deploy(host, info, self.ready_timeout_ms);
        };
        let to = info.to_revision.as_str();
        if let Err(e) = host.set_weights(&shift::split(from, 100, to, 0)) {
            return Outcome::RolledBack(format!(
                "setting weights {from}=100 {to}=0: {}; nothing was changed (a canary needs weighted traffic)",
                e.reason()
            ));
        }
        shift::clear_strays(host, from, to);
        let n = self.steps.len() as u32;
        let room = Room {
            revision: from,
            replicas: info.replicas,
            keep: 1,
        };
        for (step, &weight) in (1..).zip(&self.steps) {
            if weight >= 100 {
                break;
            }
            let at = format!("step {step} ({weight}%)");
            let canaries = canary_instances(info.replicas, weight);
            host.report(Progress {
                step,
                steps: n,
                message: format!(
                    "{weight}% of traffic to {to} ({canaries} of {} instance(s))",
                    info.replicas
                ),
            });
            if let Err(e) = shift::scale_up(host, to, canaries, self.ready_timeout_ms, Some(&room))
            {
                return self.roll_back(host, info, format!("{at}: {e}"));
            }
            if let Err(e) = host.set_weights(&shift::split(from, 100 - weight, to, weight)) {
                let why = format!("{at}: setting weights: {}", e.reason());
                return self.roll_back(host, info, why);
            }
            // The old revision keeps enough instances for its share of the
            // traffic (`ceil(replicas x (100 - w) / 100)`, at least one), so
            // no old instance carries more than it did before the rollout.
            let old = canary_instances(info.replicas, 100 - weight);
            let down = shift::scale_down(host, from, old);
            if let Some(e) = down.refused {
                host.log(
                    Level::Warn,
                    &format!(
                        "{at}: keeping {} instance(s) of {from} for now: {}",
                        down.remaining,
                        e.reason()
                    ),
                );
            }
            match host.checkpoint(&format!("step {step}/{n} ({weight}%)")) {
                Command::Abort(why) => return self.roll_back(host, info, why),
                Command::Promote => return self.promote(host, info, from, true),
                Command::Proceed => {}
            }
            if let Err(why) = self.analyse(host, from, to, &at) {
                return self.roll_back(host, info, why);
            }
        }
        self.promote(host, info, from, false)
    }

    /// Hold, then judge the canary against the stable revision; hold again
    /// on an unknown verdict, up to `max-unknown` times.
    fn analyse(&self, host: &mut impl Host, from: &str, to: &str, at: &str) -> Result<(), String> {
        let mut extra = 0;
        loop {
            host.sleep(self.hold_ms);
            if let Some(f) = shift::broken(&host.list(), to).first() {
                return Err(format!(
                    "analysis at {at}: canary instance {} {}",
                    f.instance, f.reason
                ));
            }
            let m = self
                .analysis
                .measure(host, "canary", to, Some(from), self.hold_ms);
            let level = match m.verdict {
                Verdict::Unhealthy(_) => Level::Warn,
                _ => Level::Info,
            };
            host.log(level, &format!("analysis at {at}: {}", m.summary()));
            match m.verdict {
                Verdict::Healthy => return Ok(()),
                Verdict::Unhealthy(why) => return Err(format!("analysis at {at}: {why}")),
                Verdict::Unknown(why) if extra < self.max_unknown => {
                    extra += 1;
                    host.log(
                        Level::Info,
                        &format!(
                            "analysis at {at}: {why}; holding {} ms more ({extra}/{})",
                            self.hold_ms, self.max_unknown
                        ),
                    );
                }
                Verdict::Unknown(why) => {
                    return Err(format!(
                        "analysis at {at}: {why} after {} extra hold(s)",
                        self.max_unknown
                    ));
                }
            }
        }
    }

    /// The last step: every instance new, all traffic to it, the old
    /// revision stopped. `promoted`: the operator skipped the steps left.
    fn promote(
        &self,
        host: &mut impl Host,
        info: &RolloutInfo,
        from: &str,
        promoted: bool,
    ) -> Outcome {
        let to = info.to_revision.as_str();
        let n = self.steps.len() as u32;
        let at = format!("step {n} (100%)");
        let what = match promoted {
            true => "promoted: 100%",
            false => "100%",
        };
        host.report(Progress {
            step: n,
            steps: n,
            message: format!("{what} of traffic to {to} ({} instance(s))", info.replicas),
        });
        if !promoted && let Command::Abort(why) = host.checkpoint(&format!("step {n}/{n} (100%)")) {
            return self.roll_back(host, info, why);
        }
        let room = Room {
            revision: from,
            replicas: info.replicas,
            keep: 1,
        };
        if let Err(e) = shift::scale_up(host, to, info.replicas, self.ready_timeout_ms, Some(&room))
        {
            return self.roll_back(host, info, format!("{at}: {e}"));
        }
        if let Err(e) = host.set_weights(&[(to.to_string(), 100)]) {
            let why = format!("{at}: setting weights: {}", e.reason());
            return self.roll_back(host, info, why);
        }
        let down = shift::stop_all(host, from, STOP_RETRIES, 1_000);
        if let Some(e) = down.refused {
            return Outcome::Failed(format!(
                "{to} serves all traffic, but {} instance(s) of {from} could not be stopped: {}",
                down.remaining,
                e.reason()
            ));
        }
        host.log(
            Level::Info,
            &format!(
                "{} instance(s) of {to} ready, serving all traffic",
                info.replicas
            ),
        );
        Outcome::Completed
    }

    fn roll_back(&self, host: &mut impl Host, info: &RolloutInfo, reason: String) -> Outcome {
        shift::roll_back(host, info, self.ready_timeout_ms, reason)
    }
}

impl Policy for Canary {
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        match Canary::from_info(info) {
            Ok(canary) => canary.roll_out(host, info),
            Err(e) => Outcome::Failed(e),
        }
    }
}

rollout_policy::export!(Canary);

/// Parse `steps`: weights in % (`5,25,50,100`; a `%` suffix is allowed),
/// each 1 to 100, strictly ascending, the last 100.
pub fn parse_steps(text: &str) -> Result<Vec<u32>, String> {
    let bad = |why: &str| {
        format!(
            "param steps: {why}, got {text:?} (expected ascending weights in % ending with 100, like 5,25,50,100)"
        )
    };
    let steps = text
        .split(',')
        .map(|s| s.trim().trim_end_matches('%').trim().parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("not a list of whole numbers"))?;
    if steps.iter().any(|&w| w == 0 || w > 100) {
        return Err(bad("each weight must be between 1 and 100"));
    }
    if steps.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(bad("weights must be ascending"));
    }
    if steps.last() != Some(&100) {
        return Err(bad("the last weight must be 100"));
    }
    Ok(steps)
}

/// Instances of the new revision at `weight`% of `replicas`:
/// `ceil(replicas * weight / 100)`, at least 1, at most `replicas`.
pub fn canary_instances(replicas: u32, weight: u32) -> u32 {
    let share = (u64::from(replicas) * u64::from(weight)).div_ceil(100) as u32;
    share.clamp(1.min(replicas), replicas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_policy::testing::{Behaviour, FakeFleet, rolled_back};

    fn run(fleet: &mut FakeFleet, params: &[(&str, &str)]) -> Outcome {
        let info = fleet.info_with("v1", "v2", 4, params);
        Canary::run(fleet, &info)
    }

    fn fleet(v2: Behaviour) -> FakeFleet {
        FakeFleet::new().serving("v1", 4).behaviour("v2", v2)
    }

    #[test]
    fn the_old_revision_keeps_instances_for_its_share_of_traffic() {
        // At 5% of 4 replicas, the stable revision still carries 95%:
        // all four old instances stay until a step needs their room.
        let mut fleet = fleet(Behaviour::ready_after(1_000));
        let outcome = run(&mut fleet, &[("steps", "5,100")]);
        assert_eq!(outcome, Outcome::Completed);
        let journal = fleet.journal_text();
        let promoted = journal.find("weights v2=100").expect("promoted");
        assert!(!journal[..promoted].contains("stop v1"), "{journal}");
    }

    #[test]
    fn healthy_canary_passes_every_step_and_completes() {
        let mut fleet = fleet(Behaviour::ready_after(5_000));
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 4));
        assert_eq!(fleet.min_ready(), 4);
        let journal = fleet.journal_text();
        let mut last = 0;
        for line in [
            "weights v1=100 v2=0",
            "step 1/4: 5% of traffic to v2 (1 of 4 instance(s))",
            "weights v1=95 v2=5",
            "analysis at step 1 (5%): v2: 150 requests, 0 errors",
            "step 2/4: 25% of traffic to v2",
            "weights v1=75 v2=25",
            "analysis at step 2 (25%): v2: 750 requests",
            "step 3/4: 50% of traffic to v2 (2 of 4 instance(s))",
            "weights v1=50 v2=50",
            "step 4/4: 100% of traffic to v2",
            "weights v2=100",
        ] {
            let at = journal[last..]
                .find(line)
                .unwrap_or_else(|| panic!("{line:?} after byte {last} in:\n{journal}"));
            last += at + line.len();
        }
        // New instances at 5%, 50% and 100% (5 s each), three holds of 30 s.
        assert_eq!(fleet.elapsed_ms(), 3 * 5_000 + 3 * 30_000);
        assert_eq!(fleet.weights(), [("v2".to_string(), 100)]);
    }

    #[test]
    fn a_tight_surge_guardrail_grows_one_at_a_time_and_keeps_capacity() {
        let mut fleet = fleet(Behaviour::ready_after(5_000)).max_total(5);
        assert_eq!(
            run(&mut fleet, &[]),
            Outcome::Completed,
            "{}",
            fleet.journal_text()
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 4));
        assert_eq!((fleet.max_instances(), fleet.min_ready()), (5, 4));
    }

    #[test]
    fn twenty_percent_errors_roll_back_at_the_first_analysis() {
        let mut fleet = fleet(Behaviour::ready_after(5_000).erroring(0.2));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(
            rolled_back(&outcome),
            "analysis at step 1 (5%): canary error rate 0.200 > 0.050 over 150 requests"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert_eq!(fleet.min_ready(), 4);
        assert_eq!(fleet.weights(), shift::split("v1", 100, "v2", 0));
        let journal = fleet.journal_text();
        assert!(!journal.contains("weights v1=75 v2=25"), "{journal}");
        assert!(!journal.contains("step 2/4"), "{journal}");
    }

    #[test]
    fn a_slow_p99_rolls_back() {
        let mut fleet = fleet(Behaviour::ready_after(5_000).p99_latency(100));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(
            rolled_back(&outcome),
            "analysis at step 1 (5%): canary p99 100.0 ms / v1 p99 20.0 ms = 5.00 > 1.50"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));

        // Under a looser ratio, the same canary completes.
        let mut fleet = self::fleet(Behaviour::ready_after(5_000).p99_latency(100));
        assert_eq!(
            run(&mut fleet, &[("max-p99-ratio", "6")]),
            Outcome::Completed
        );
    }

    #[test]
    fn an_idle_canary_rolls_back_for_lack_of_traffic_after_extra_holds() {
        let mut fleet = fleet(Behaviour::ready_after(5_000)).requests_per_second(0);
        let outcome = run(&mut fleet, &[]);
        let why = rolled_back(&outcome);
        assert!(
            why.starts_with("analysis at step 1 (5%): not enough traffic"),
            "{why}"
        );
        assert!(why.contains("after 3 extra hold(s)"), "{why}");
        // Ready, then the hold and three extra holds.
        assert_eq!(fleet.elapsed_ms(), 5_000 + 4 * 30_000);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));

        let mut fleet = self::fleet(Behaviour::ready_after(5_000)).requests_per_second(0);
        let outcome = run(&mut fleet, &[("max-unknown", "0"), ("hold-ms", "10s")]);
        assert!(rolled_back(&outcome).contains("after 0 extra hold(s)"));
        assert_eq!(fleet.elapsed_ms(), 15_000);
    }

    #[test]
    fn promote_skips_the_remaining_steps() {
        let mut fleet = fleet(Behaviour::ready_after(5_000)).command_at(10_000, Command::Promote);
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 4));
        let journal = fleet.journal_text();
        // Seen at step 2's checkpoint (35 s): no hold at 25%, no 50% step.
        assert!(
            journal.contains("step 4/4: promoted: 100% of traffic to v2"),
            "{journal}"
        );
        assert!(!journal.contains("weights v1=50 v2=50"), "{journal}");
        assert!(!journal.contains("analysis at step 2"), "{journal}");
        assert_eq!(fleet.elapsed_ms(), 35_000 + 5_000);
    }

    #[test]
    fn abort_rolls_back() {
        let mut fleet = fleet(Behaviour::ready_after(5_000))
            .command_at(10_000, Command::Abort("operator".into()));
        assert_eq!(rolled_back(&run(&mut fleet, &[])), "operator");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
    }

    #[test]
    fn a_canary_that_crashes_during_the_hold_rolls_back() {
        let mut fleet = fleet(Behaviour::ready_after(1_000).failing_after(20_000));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(
            rolled_back(&outcome),
            "analysis at step 1 (5%): canary instance v2-5 is failed"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
    }

    #[test]
    fn a_canary_that_never_becomes_ready_rolls_back() {
        let mut fleet = fleet(Behaviour::never_ready());
        let outcome = run(&mut fleet, &[("ready-timeout-ms", "10s")]);
        assert_eq!(
            rolled_back(&outcome),
            "step 1 (5%): instance of v2 failed: v2-5: not ready after 10000 ms"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert_eq!(fleet.min_ready(), 4);
    }

    #[test]
    fn custom_steps_and_thresholds() {
        let mut fleet = fleet(Behaviour::ready_after(1_000).erroring(0.08));
        let params = [
            ("steps", "10%, 100%"),
            ("hold-ms", "1m"),
            ("max-error-rate", "0.1"),
            ("min-requests", "100"),
        ];
        assert_eq!(run(&mut fleet, &params), Outcome::Completed);
        let journal = fleet.journal_text();
        assert!(journal.contains("weights v1=90 v2=10"), "{journal}");
        assert!(
            journal.contains("600 requests, 48 errors (0.080)"),
            "{journal}"
        );
        assert_eq!(fleet.elapsed_ms(), 1_000 + 60_000 + 1_000);
    }

    #[test]
    fn bad_params_fail_before_any_effect() {
        let mut fleet = fleet(Behaviour::ready_after(1_000));
        for (key, value, says) in [
            ("steps", "50,25,100", "ascending"),
            ("steps", "5,50", "last weight must be 100"),
            ("steps", "0,100", "between 1 and 100"),
            ("steps", "five", "whole numbers"),
            ("hold-ms", "soon", "param hold-ms"),
            ("max-error-rate", "1.5", "param max-error-rate"),
            ("max-p99-ratio", "fast", "param max-p99-ratio"),
            ("min-requests", "some", "param min-requests"),
            ("max-unknown", "-1", "param max-unknown"),
        ] {
            let outcome = run(&mut fleet, &[(key, value)]);
            assert!(
                matches!(&outcome, Outcome::Failed(m) if m.contains(says)),
                "{key}={value}: {outcome:?}"
            );
        }
        assert!(fleet.journal().is_empty());
    }

    #[test]
    fn first_deploy_starts_everything() {
        let mut fleet = FakeFleet::new().behaviour("v1", Behaviour::ready_after(2_000));
        let info = fleet.info("", "v1", 3);
        assert_eq!(Canary::run(&mut fleet, &info), Outcome::Completed);
        assert_eq!(fleet.count("v1"), 3);
        assert_eq!(fleet.weights(), [("v1".to_string(), 100)]);
    }

    #[test]
    fn instances_per_step() {
        let cases = [
            (4, 5, 1),
            (4, 25, 1),
            (4, 50, 2),
            (4, 100, 4),
            (10, 25, 3),
            (1, 5, 1),
        ];
        for (replicas, weight, want) in cases {
            assert_eq!(
                canary_instances(replicas, weight),
                want,
                "{replicas} at {weight}%"
            );
        }
        assert_eq!(canary_instances(0, 50), 0);
    }

    #[test]
    fn instances_killed_by_hand_and_a_stray_do_not_stop_the_rollout() {
        // One of v1 killed by hand (listed failed) and a ready stray of v0
        // left by an interrupted rollout, under a tight surge limit.
        let mut fleet = FakeFleet::after_an_interruption(4)
            .max_total(6)
            .behaviour("v2", Behaviour::ready_after(1_000));
        let info = fleet.info("v1", "v2", 4);
        let outcome = Canary::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed, "{}", fleet.journal_text());
        assert_eq!(fleet.count("v2"), 4);
        assert_eq!(fleet.count("v0"), 0, "the stray is stopped");
    }
}
