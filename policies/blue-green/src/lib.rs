//! Blue-green: bring up a full set of the new revision (green) next to the
//! old one (blue) without traffic, switch all traffic at once, analyse the
//! new revision, and switch back on failure; the old set is kept for a while
//! after the switch so that switching back is instant.
//!
//! The flow, for `replicas` instances:
//!
//! 1. Weights `[(old, 100), (new, 0)]`, then start `replicas` new instances
//!    and wait until all are ready (else roll back: stop the new ones).
//! 2. Checkpoint (`abort` rolls back, `promote` skips the scale-down delay),
//!    then switch: weights `[(new, 100), (old, 0)]` at once. Hold
//!    `post-switch-ms` and analyse the new revision's `traffic.stats` over
//!    the hold: the error rate against `max-error-rate`, with at least
//!    `min-requests` requests; a new instance that crashed fails too. Too few
//!    requests count as healthy unless `require-traffic` is `true`. On
//!    failure, switch back `[(old, 100), (new, 0)]` and stop the new set:
//!    rolled back.
//! 3. Keep the old set for `scale-down-delay-ms`, watching the new revision
//!    every `watch-interval-ms` meanwhile: an instance that crashes or an
//!    error rate over `max-error-rate` in the last interval switches back at
//!    once, as does an operator `abort` (the old set is still there, so
//!    switching back is instant). Then stop the old set: completed.
//!
//! Two full sets run at once, so the host's max-surge guardrail must allow
//! 100%: when it refuses to start the new set, the rollout is rolled back
//! (nothing changed) with a reason that says to raise max-surge to 100%.
//!
//! A first deploy (no old revision) starts `replicas` new instances and
//! gives them all the traffic.
//!
//! | param                 | default | meaning                                                       |
//! |-----------------------|---------|---------------------------------------------------------------|
//! | `post-switch-ms`      | `30s`   | time after the switch before the new revision is analysed      |
//! | `max-error-rate`      | `0.05`  | share of failed requests of the new revision above which it fails |
//! | `min-requests`        | `20`    | fewer requests after the switch: verdict unknown               |
//! | `require-traffic`     | `false` | `true`: an unknown verdict (too few requests) fails the rollout; `false`: it counts as healthy |
//! | `scale-down-delay-ms` | `30s`   | how long the old set is kept after a successful analysis (skipped after an operator `promote`) |
//! | `watch-interval-ms`   | `10s`   | during that delay, how often the new revision is judged again (over the interval just past; too few requests is not a failure then) |
//! | `ready-timeout-ms`    | `60s`   | how long a new instance may take to become ready              |

use rollout_policy::analysis::Analysis;
use rollout_policy::shift::{self, ScaleError};
use rollout_policy::{
    Command, EffectError, Host, Level, Outcome, Params, Policy, Progress, RolloutInfo, Verdict,
};

/// Steps reported: bring up the new set, switch and analyse, scale down.
const STEPS: u32 = 3;

/// Retries (one per second) when the host refuses to stop the old set.
const STOP_RETRIES: u32 = 10;

/// The blue-green policy, configured from the rollout's params.
#[derive(Debug, Clone, PartialEq)]
pub struct BlueGreen {
    /// Hold after the switch before the analysis, in ms.
    pub post_switch_ms: u64,
    /// Thresholds of the analysis (error rate and minimum traffic).
    pub analysis: Analysis,
    /// Whether too little traffic after the switch fails the rollout.
    pub require_traffic: bool,
    /// How long the old set is kept after a successful analysis, in ms.
    pub scale_down_delay_ms: u64,
    /// How often the new revision is judged during that delay, in ms.
    pub watch_interval_ms: u64,
    /// How long a new instance may take to become ready, in ms.
    pub ready_timeout_ms: u64,
}

impl BlueGreen {
    /// Read and check the params of `info`.
    pub fn from_info(info: &RolloutInfo) -> Result<Self, String> {
        let p = Params::of(info);
        Ok(BlueGreen {
            post_switch_ms: p.millis("post-switch-ms", 30_000)?,
            analysis: Analysis::from_params(&p)?,
            require_traffic: p.bool("require-traffic", false)?,
            scale_down_delay_ms: p.millis("scale-down-delay-ms", 30_000)?,
            watch_interval_ms: match p.millis("watch-interval-ms", 10_000)? {
                0 => return Err("param watch-interval-ms: expected a duration above 0".into()),
                ms => ms,
            },
            ready_timeout_ms: p.millis("ready-timeout-ms", 60_000)?,
        })
    }

    /// Drive the rollout of `info`.
    pub fn roll_out(&self, host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        let Some(from) = info.from_revision.as_deref() else {
            return shift::first_deploy(host, info, self.ready_timeout_ms);
        };
        let to = info.to_revision.as_str();
        let replicas = info.replicas;
        if let Err(e) = host.set_weights(&shift::split(from, 100, to, 0)) {
            return Outcome::RolledBack(format!(
                "setting weights {from}=100 {to}=0: {}; nothing was changed (blue-green needs weighted traffic)",
                e.reason()
            ));
        }
        shift::clear_strays(host, from, to);

        host.report(Progress {
            step: 1,
            steps: STEPS,
            message: format!("start {replicas} instance(s) of {to} at weight 0 next to {from}"),
        });
        match shift::scale_up(host, to, replicas, self.ready_timeout_ms, None) {
            Ok(_) => {}
            Err(ScaleError::Start {
                count,
                error: EffectError::Guardrail(why),
                ..
            }) => {
                let why = format!(
                    "starting {count} instance(s) of {to} next to {from} was refused: {why}; \
                     blue-green runs two full sets at once: raise max-surge to 100%"
                );
                return self.roll_back(host, info, why);
            }
            Err(e) => return self.roll_back(host, info, e.to_string()),
        }
        let promoted = match host.checkpoint(&format!("switch to {to}")) {
            Command::Abort(why) => return self.roll_back(host, info, why),
            Command::Promote => true,
            Command::Proceed => false,
        };

        host.report(Progress {
            step: 2,
            steps: STEPS,
            message: format!(
                "switch all traffic to {to}, analyse it after {} ms",
                self.post_switch_ms
            ),
        });
        if let Err(e) = host.set_weights(&shift::split(to, 100, from, 0)) {
            let why = format!("switching traffic to {to}: {}", e.reason());
            return self.roll_back(host, info, why);
        }
        if let Err(why) = self.analyse(host, to) {
            return self.roll_back(host, info, why);
        }

        let message = match promoted {
            true => format!("promoted: stop {from} now"),
            false => format!(
                "keep {from} for {} ms, judging {to} every {} ms, then stop it",
                self.scale_down_delay_ms, self.watch_interval_ms
            ),
        };
        host.report(Progress {
            step: 3,
            steps: STEPS,
            message,
        });
        if !promoted && let Err(why) = self.watch(host, to) {
            return self.roll_back(host, info, why);
        }
        // Switching back is still instant: the old set is there.
        if let Command::Abort(why) = host.checkpoint(&format!("stop {from}")) {
            return self.roll_back(host, info, why);
        }
        let at = format!("after the switch: {to}");
        if let Err(why) = self.check(host, to, &at) {
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
            &format!("{replicas} instance(s) of {to} ready, serving all traffic"),
        );
        Outcome::Completed
    }

    /// An instance of `to` that crashed or failed is `Err`, described
    /// after `at`.
    fn check(&self, host: &mut impl Host, to: &str, at: &str) -> Result<(), String> {
        match shift::broken(&host.list(), to).first() {
            Some(f) => Err(format!("{at}: instance {} {}", f.instance, f.reason)),
            None => Ok(()),
        }
    }

    /// Wait out the scale-down delay, judging `to` every watch interval
    /// over the interval just past: a broken instance or too many errors is
    /// `Err`. Too few requests is not: the analysis after the switch was
    /// the gate. Returns early, `Ok`, when the operator aborts (the
    /// checkpoint that follows sees it).
    fn watch(&self, host: &mut impl Host, to: &str) -> Result<(), String> {
        let start = host.now_ms();
        let end = start.saturating_add(self.scale_down_delay_ms);
        let at = format!("{to} during the scale-down delay");
        let mut judged = 0;
        loop {
            let now = host.now_ms();
            if now >= end {
                break;
            }
            let window = self.watch_interval_ms.min(end - now);
            host.sleep(window);
            if host.now_ms() < now.saturating_add(window) {
                return Ok(());
            }
            self.check(host, to, &at)?;
            let m = self.analysis.measure(host, "green", to, None, window);
            judged += 1;
            if let Verdict::Unhealthy(why) = &m.verdict {
                host.log(Level::Warn, &format!("{at}: {}", m.summary()));
                return Err(format!("{at}: {why}"));
            }
        }
        host.log(
            Level::Info,
            &format!(
                "{at}: no crash, error rate within {:.3} in {judged} interval(s) over {} ms",
                self.analysis.max_error_rate,
                end - start
            ),
        );
        Ok(())
    }

    /// Hold after the switch, then judge the new revision's traffic.
    fn analyse(&self, host: &mut impl Host, to: &str) -> Result<(), String> {
        host.sleep(self.post_switch_ms);
        let at = format!("analysis of {to} after the switch");
        self.check(host, to, &at)?;
        let m = self
            .analysis
            .measure(host, "green", to, None, self.post_switch_ms);
        let level = match m.verdict {
            Verdict::Healthy => Level::Info,
            _ => Level::Warn,
        };
        host.log(level, &format!("{at}: {}", m.summary()));
        match m.verdict {
            Verdict::Healthy => Ok(()),
            Verdict::Unhealthy(why) => Err(format!("{at}: {why}")),
            Verdict::Unknown(why) if self.require_traffic => {
                Err(format!("{at}: {why} (require-traffic = true)"))
            }
            Verdict::Unknown(why) => {
                host.log(
                    Level::Warn,
                    &format!("{at}: {why}; counted as healthy (require-traffic = false)"),
                );
                Ok(())
            }
        }
    }

    fn roll_back(&self, host: &mut impl Host, info: &RolloutInfo, reason: String) -> Outcome {
        shift::roll_back(host, info, self.ready_timeout_ms, reason)
    }
}

impl Policy for BlueGreen {
    fn run(host: &mut impl Host, info: &RolloutInfo) -> Outcome {
        match BlueGreen::from_info(info) {
            Ok(blue_green) => blue_green.roll_out(host, info),
            Err(e) => Outcome::Failed(e),
        }
    }
}

rollout_policy::export!(BlueGreen);

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_policy::Fleet;
    use rollout_policy::testing::{Behaviour, FakeFleet, rolled_back};

    fn run(fleet: &mut FakeFleet, params: &[(&str, &str)]) -> Outcome {
        let info = fleet.info_with("v1", "v2", 4, params);
        BlueGreen::run(fleet, &info)
    }

    fn fleet(v2: Behaviour) -> FakeFleet {
        FakeFleet::new().serving("v1", 4).behaviour("v2", v2)
    }

    /// Virtual time of the first journal line containing `text`.
    fn time_of(fleet: &FakeFleet, text: &str) -> u64 {
        let line = fleet
            .journal()
            .iter()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("{text:?} not in:\n{}", fleet.journal_text()));
        line[1..line.find("ms]").unwrap()].trim().parse().unwrap()
    }

    #[test]
    fn healthy_switch_keeps_the_old_set_for_the_delay_then_completes() {
        let mut fleet = fleet(Behaviour::ready_after(5_000));
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (0, 4));
        assert_eq!((fleet.max_instances(), fleet.min_ready()), (8, 4));
        assert_eq!(time_of(&fleet, "weights v1=100 v2=0"), 0);
        assert_eq!(time_of(&fleet, "start v2 x4"), 0);
        assert_eq!(time_of(&fleet, "weights v2=100 v1=0"), 5_000);
        assert_eq!(time_of(&fleet, "v2: 3000 requests, 0 errors"), 35_000);
        // The old set stays for scale-down-delay-ms after the analysis.
        assert_eq!(time_of(&fleet, "stop v1-1 v1-2 v1-3 v1-4"), 65_000);
        assert_eq!(fleet.elapsed_ms(), 65_000);
    }

    #[test]
    fn a_bad_new_revision_after_the_switch_switches_back() {
        let mut fleet = fleet(Behaviour::ready_after(5_000).erroring(0.5));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(
            rolled_back(&outcome),
            "analysis of v2 after the switch: green error rate 0.500 > 0.050 over 3000 requests"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert_eq!(fleet.min_ready(), 4);
        assert_eq!(fleet.weights(), shift::split("v1", 100, "v2", 0));
        // Switched back at once: the old set never left.
        assert_eq!(time_of(&fleet, "weights v2=100 v1=0"), 5_000);
        assert_eq!(time_of(&fleet, "stop v2-5"), 35_000);
        assert_eq!(fleet.elapsed_ms(), 35_000);
        assert!(!fleet.journal_text().contains("stop v1"));
    }

    #[test]
    fn promote_at_the_checkpoint_skips_the_delay() {
        let mut fleet = fleet(Behaviour::ready_after(5_000)).command_at(0, Command::Promote);
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert_eq!(fleet.elapsed_ms(), 35_000);
        assert!(
            fleet
                .journal_text()
                .contains("step 3/3: promoted: stop v1 now")
        );
    }

    #[test]
    fn abort_during_the_delay_switches_back() {
        let mut fleet = fleet(Behaviour::ready_after(5_000))
            .command_at(40_000, Command::Abort("operator".into()));
        assert_eq!(rolled_back(&run(&mut fleet, &[])), "operator");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert_eq!(fleet.min_ready(), 4);
    }

    #[test]
    fn a_crash_during_the_delay_switches_back_within_a_watch_interval() {
        // Analysed healthy at 35 s; an instance crashes at 48 s.
        let mut fleet = fleet(Behaviour::ready_after(5_000).failing_after(48_000));
        let outcome = run(&mut fleet, &[]);
        assert_eq!(
            rolled_back(&outcome),
            "v2 during the scale-down delay: instance v2-5 is failed"
        );
        assert_eq!(time_of(&fleet, "stop v2-5"), 55_000);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert_eq!(fleet.min_ready(), 4);
        assert!(!fleet.journal_text().contains("stop v1"));
    }

    #[test]
    fn errors_that_begin_during_the_delay_switch_back() {
        // Healthy at the analysis (35 s); errs from 50 s on.
        let v2 = Behaviour::ready_after(5_000)
            .erroring(0.3)
            .erroring_after(50_000);
        let mut fleet = fleet(v2);
        let outcome = run(&mut fleet, &[("watch-interval-ms", "5s")]);
        assert_eq!(
            rolled_back(&outcome),
            "v2 during the scale-down delay: green error rate 0.300 > 0.050 over 500 requests"
        );
        assert_eq!(time_of(&fleet, "stop v2-5"), 55_000);
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert!(!fleet.journal_text().contains("stop v1"));
    }

    #[test]
    fn a_healthy_delay_is_judged_every_interval_and_says_so() {
        let mut fleet = fleet(Behaviour::ready_after(5_000));
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert!(
            fleet.journal_text().contains(
                "v2 during the scale-down delay: no crash, error rate within 0.050 \
                 in 3 interval(s) over 30000 ms"
            ),
            "{}",
            fleet.journal_text()
        );
    }

    #[test]
    fn without_room_for_a_second_set_it_says_to_raise_max_surge() {
        let mut fleet = fleet(Behaviour::ready_after(5_000)).max_total(5);
        let outcome = run(&mut fleet, &[]);
        let why = rolled_back(&outcome);
        assert!(
            why.starts_with("starting 4 instance(s) of v2 next to v1 was refused"),
            "{why}"
        );
        assert!(why.ends_with("raise max-surge to 100%"), "{why}");
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert!(!fleet.journal_text().contains("weights v2=100"));
    }

    #[test]
    fn a_new_set_that_is_not_ready_is_stopped() {
        let mut fleet = fleet(Behaviour::ready_after(1_000).crashing_first(1));
        let outcome = run(&mut fleet, &[]);
        assert!(
            rolled_back(&outcome).contains("v2-5: instance is failed"),
            "{outcome:?}"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
        assert!(fleet.list().iter().all(|i| i.revision != "v2"));
        assert!(!fleet.journal_text().contains("weights v2=100"));
    }

    #[test]
    fn too_little_traffic_counts_as_healthy_unless_required() {
        let mut fleet = fleet(Behaviour::ready_after(1_000)).requests_per_second(0);
        assert_eq!(run(&mut fleet, &[]), Outcome::Completed);
        assert!(
            fleet
                .journal_text()
                .contains("counted as healthy (require-traffic = false)")
        );

        let mut fleet = self::fleet(Behaviour::ready_after(1_000)).requests_per_second(0);
        let outcome = run(&mut fleet, &[("require-traffic", "true")]);
        assert_eq!(
            rolled_back(&outcome),
            "analysis of v2 after the switch: not enough traffic: 0 green request(s), \
             min-requests 20 (require-traffic = true)"
        );
        assert_eq!((fleet.count("v1"), fleet.count("v2")), (4, 0));
    }

    #[test]
    fn custom_hold_delay_and_threshold() {
        let mut fleet = fleet(Behaviour::ready_after(1_000).erroring(0.08));
        let params = [
            ("post-switch-ms", "1m"),
            ("scale-down-delay-ms", "0"),
            ("max-error-rate", "0.1"),
        ];
        assert_eq!(run(&mut fleet, &params), Outcome::Completed);
        assert!(
            fleet
                .journal_text()
                .contains("6000 requests, 480 errors (0.080)")
        );
        assert_eq!(fleet.elapsed_ms(), 61_000);
    }

    #[test]
    fn bad_params_fail_before_any_effect() {
        let mut fleet = fleet(Behaviour::ready_after(1_000));
        for (key, value) in [
            ("post-switch-ms", "soon"),
            ("scale-down-delay-ms", "later"),
            ("max-error-rate", "-0.1"),
            ("min-requests", "many"),
            ("require-traffic", "yes"),
            ("ready-timeout-ms", "1 day"),
            ("watch-interval-ms", "0"),
        ] {
            let outcome = run(&mut fleet, &[(key, value)]);
            assert!(
                matches!(&outcome, Outcome::Failed(m) if m.contains(&format!("param {key}"))),
                "{key}={value}: {outcome:?}"
            );
        }
        assert!(fleet.journal().is_empty());
    }

    #[test]
    fn first_deploy_starts_everything() {
        let mut fleet = FakeFleet::new().behaviour("v1", Behaviour::ready_after(2_000));
        let info = fleet.info("", "v1", 3);
        assert_eq!(BlueGreen::run(&mut fleet, &info), Outcome::Completed);
        assert_eq!(fleet.count("v1"), 3);
        assert_eq!(fleet.weights(), [("v1".to_string(), 100)]);
    }

    #[test]
    fn instances_killed_by_hand_and_a_stray_do_not_stop_the_rollout() {
        // One of v1 killed by hand (listed failed) and a ready stray of v0
        // left by an interrupted rollout: two full sets fit only without it.
        let mut fleet = FakeFleet::after_an_interruption(4)
            .max_total(7)
            .behaviour("v2", Behaviour::ready_after(1_000));
        let info = fleet.info("v1", "v2", 4);
        let outcome = BlueGreen::run(&mut fleet, &info);
        assert_eq!(outcome, Outcome::Completed, "{}", fleet.journal_text());
        assert_eq!(fleet.count("v2"), 4);
        assert_eq!(fleet.count("v0"), 0, "the stray is stopped");
    }
}
