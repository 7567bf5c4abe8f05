//! Judge a revision by the traffic it served.
//!
//! Canary and blue-green strategies ask the same question after a hold: over
//! the last window, did the new revision fail too many requests, is its p99
//! latency too far above the old revision's, and was there enough traffic to
//! tell at all? [`Analysis`] holds the thresholds (read from params with
//! [`Analysis::from_params`]) and [`Analysis::judge`] answers with a
//! [`Verdict`] whose message names the failed check and its numbers:
//!
//! - fewer than `min-requests` requests: [`Verdict::Unknown`] (`not enough
//!   traffic: ...`), so the caller may wait longer;
//! - errors / requests above `max-error-rate`: [`Verdict::Unhealthy`];
//! - p99 / baseline p99 above `max-p99-ratio`, when a ratio is set and the
//!   baseline served requests: [`Verdict::Unhealthy`];
//! - otherwise [`Verdict::Healthy`].
//!
//! ```
//! use rollout_policy::analysis::Analysis;
//! use rollout_policy::{RevisionStats, Verdict};
//!
//! let stats = |revision: &str, requests, errors, p99_ms: u64| RevisionStats {
//!     revision: revision.into(),
//!     requests,
//!     errors,
//!     p50_us: 0,
//!     p99_us: p99_ms * 1_000,
//! };
//! let analysis = Analysis { max_p99_ratio: Some(1.5), ..Analysis::default() };
//! let stable = stats("v1", 2_850, 0, 20);
//! assert_eq!(analysis.judge("canary", &stats("v2", 150, 0, 20), Some(&stable)), Verdict::Healthy);
//! assert_eq!(
//!     analysis.judge("canary", &stats("v2", 312, 62, 20), Some(&stable)),
//!     Verdict::Unhealthy("canary error rate 0.199 > 0.050 over 312 requests".into())
//! );
//! assert!(matches!(analysis.judge("canary", &stats("v2", 3, 0, 20), None), Verdict::Unknown(_)));
//! ```

use crate::{Host, Params, RevisionStats, Verdict};

/// Thresholds a revision's traffic is judged against.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Share of failed requests (0..=1) above which the revision fails
    /// (param `max-error-rate`, default `0.05`).
    pub max_error_rate: f64,
    /// Its p99 latency divided by the baseline's above which the revision
    /// fails (param `max-p99-ratio`, default `1.5`); `None` compares no
    /// latency. Ignored when the baseline served no requests or has no p99.
    pub max_p99_ratio: Option<f64>,
    /// A p99 no more than this many microseconds above the baseline's
    /// passes whatever the ratio (param `p99-slack-ms`, default `5ms`):
    /// sub-millisecond latencies double on a scheduler hiccup.
    pub p99_slack_us: u64,
    /// Fewer requests than this in the window: not enough traffic to judge
    /// (param `min-requests`, default `20`).
    pub min_requests: u64,
}

impl Default for Analysis {
    /// Error rate at most 0.05 over at least 20 requests; no latency check.
    fn default() -> Self {
        Analysis {
            max_error_rate: 0.05,
            max_p99_ratio: None,
            p99_slack_us: 5_000,
            min_requests: 20,
        }
    }
}

/// One analysis: the stats it looked at and its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    /// Stats of the judged revision over the window.
    pub subject: RevisionStats,
    /// Stats of the baseline revision over the same window, if compared.
    pub baseline: Option<RevisionStats>,
    /// The judgement.
    pub verdict: Verdict,
}

impl Analysis {
    /// Read `max-error-rate` (0..=1, default `0.05`) and `min-requests`
    /// (default `20`); no latency comparison.
    pub fn from_params(params: &Params) -> Result<Self, String> {
        let max_error_rate = params.f64("max-error-rate", 0.05)?;
        if max_error_rate > 1.0 {
            return Err(format!(
                "param max-error-rate: expected a fraction between 0 and 1, got {max_error_rate}"
            ));
        }
        Ok(Analysis {
            max_error_rate,
            max_p99_ratio: None,
            p99_slack_us: 5_000,
            min_requests: params.u64("min-requests", 20)?,
        })
    }

    /// Also compare p99 latency with a baseline: read `max-p99-ratio`
    /// (greater than 0, default `1.5`) and `p99-slack-ms` (default `5ms`).
    pub fn with_p99_ratio(mut self, params: &Params) -> Result<Self, String> {
        let ratio = params.f64("max-p99-ratio", 1.5)?;
        if ratio <= 0.0 {
            return Err("param max-p99-ratio: expected a ratio above 0, like 1.5".into());
        }
        self.max_p99_ratio = Some(ratio);
        self.p99_slack_us = params.millis("p99-slack-ms", 5)? * 1_000;
        Ok(self)
    }

    /// Judge `stats` (named `subject` in messages, e.g. `canary`) against
    /// the thresholds and, for latency, `baseline`.
    pub fn judge(
        &self,
        subject: &str,
        stats: &RevisionStats,
        baseline: Option<&RevisionStats>,
    ) -> Verdict {
        if stats.requests < self.min_requests.max(1) {
            return Verdict::Unknown(format!(
                "not enough traffic: {} {subject} request(s), min-requests {}",
                stats.requests, self.min_requests
            ));
        }
        let rate = stats.errors as f64 / stats.requests as f64;
        if rate > self.max_error_rate {
            return Verdict::Unhealthy(format!(
                "{subject} error rate {rate:.3} > {:.3} over {} requests",
                self.max_error_rate, stats.requests
            ));
        }
        let compared = baseline.filter(|b| b.requests > 0 && b.p99_us > 0);
        if let (Some(max), Some(base)) = (self.max_p99_ratio, compared) {
            let ratio = stats.p99_us as f64 / base.p99_us as f64;
            if ratio > max && stats.p99_us > base.p99_us + self.p99_slack_us {
                return Verdict::Unhealthy(format!(
                    "{subject} p99 {} / {} p99 {} = {ratio:.2} > {max:.2}",
                    ms(stats.p99_us),
                    base.revision,
                    ms(base.p99_us)
                ));
            }
        }
        Verdict::Healthy
    }

    /// Read the stats of `revision` (and `baseline`) over the last
    /// `window_ms` from the host and judge them.
    pub fn measure(
        &self,
        host: &mut impl Host,
        subject: &str,
        revision: &str,
        baseline: Option<&str>,
        window_ms: u64,
    ) -> Measurement {
        let stats = host.stats(revision, window_ms);
        let baseline = baseline.map(|b| host.stats(b, window_ms));
        let verdict = self.judge(subject, &stats, baseline.as_ref());
        Measurement {
            subject: stats,
            baseline,
            verdict,
        }
    }
}

impl Measurement {
    /// One line for the journal: the numbers and the verdict.
    pub fn summary(&self) -> String {
        let s = &self.subject;
        let rate = match s.requests {
            0 => 0.0,
            n => s.errors as f64 / n as f64,
        };
        let mut line = format!(
            "{}: {} requests, {} errors ({rate:.3}), p50 {}, p99 {}",
            s.revision,
            s.requests,
            s.errors,
            ms(s.p50_us),
            ms(s.p99_us)
        );
        if let Some(b) = &self.baseline {
            line.push_str(&format!(
                "; {}: {} requests, {} errors, p99 {}",
                b.revision,
                b.requests,
                b.errors,
                ms(b.p99_us)
            ));
        }
        let verdict = match &self.verdict {
            Verdict::Healthy => "healthy".to_string(),
            Verdict::Unhealthy(why) => format!("unhealthy: {why}"),
            Verdict::Unknown(why) => format!("unknown: {why}"),
        };
        format!("{line} => {verdict}")
    }
}

/// Microseconds as `12.5 ms`.
fn ms(us: u64) -> String {
    format!("{:.1} ms", us as f64 / 1_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RolloutInfo;

    fn stats(revision: &str, requests: u64, errors: u64, p99_ms: u64) -> RevisionStats {
        RevisionStats {
            revision: revision.into(),
            requests,
            errors,
            p50_us: p99_ms * 500,
            p99_us: p99_ms * 1_000,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> RolloutInfo {
        RolloutInfo {
            service: "web".into(),
            from_revision: None,
            to_revision: "v2".into(),
            replicas: 4,
            params: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn each_check_names_its_numbers() {
        let a = Analysis {
            max_p99_ratio: Some(1.5),
            ..Analysis::default()
        };
        let stable = stats("v1", 2_850, 0, 20);
        let judge = |s: RevisionStats| a.judge("canary", &s, Some(&stable));
        assert_eq!(judge(stats("v2", 150, 7, 20)), Verdict::Healthy);
        assert_eq!(
            judge(stats("v2", 150, 30, 20)),
            Verdict::Unhealthy("canary error rate 0.200 > 0.050 over 150 requests".into())
        );
        assert_eq!(
            judge(stats("v2", 150, 0, 100)),
            Verdict::Unhealthy("canary p99 100.0 ms / v1 p99 20.0 ms = 5.00 > 1.50".into())
        );
        assert_eq!(
            judge(stats("v2", 19, 19, 100)),
            Verdict::Unknown("not enough traffic: 19 canary request(s), min-requests 20".into())
        );
    }

    #[test]
    fn a_p99_within_the_slack_passes_whatever_the_ratio() {
        let a = Analysis {
            max_p99_ratio: Some(1.5),
            ..Analysis::default()
        };
        let us = |revision: &str, p99_us| RevisionStats {
            p99_us,
            ..stats(revision, 100, 0, 0)
        };
        let stable = us("v1", 300);
        assert!(
            a.judge("canary", &us("v2", 1_200), Some(&stable))
                .is_healthy()
        );
        assert!(
            !a.judge("canary", &us("v2", 5_400), Some(&stable))
                .is_healthy()
        );
    }

    #[test]
    fn latency_is_compared_only_with_a_baseline_that_served() {
        let a = Analysis {
            max_p99_ratio: Some(1.5),
            ..Analysis::default()
        };
        let slow = stats("v2", 100, 0, 500);
        assert!(a.judge("canary", &slow, None).is_healthy());
        let idle = stats("v1", 0, 0, 20);
        assert!(a.judge("canary", &slow, Some(&idle)).is_healthy());
        let no_p99 = stats("v1", 100, 0, 0);
        assert!(a.judge("canary", &slow, Some(&no_p99)).is_healthy());
        // Without a ratio, latency is not judged at all.
        let fast = stats("v1", 100, 0, 1);
        assert!(
            Analysis::default()
                .judge("x", &slow, Some(&fast))
                .is_healthy()
        );
    }

    #[test]
    fn zero_min_requests_still_needs_one_request() {
        let a = Analysis {
            min_requests: 0,
            ..Analysis::default()
        };
        assert!(matches!(
            a.judge("green", &stats("v2", 0, 0, 1), None),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn params_with_defaults_and_errors() {
        let info = params(&[]);
        let a = Analysis::from_params(&Params::of(&info)).unwrap();
        assert_eq!(a, Analysis::default());
        let a = a.with_p99_ratio(&Params::of(&info)).unwrap();
        assert_eq!(a.max_p99_ratio, Some(1.5));

        let info = params(&[("max-error-rate", "0.1"), ("min-requests", "5")]);
        let a = Analysis::from_params(&Params::of(&info)).unwrap();
        assert_eq!((a.max_error_rate, a.min_requests), (0.1, 5));

        for (key, value, says) in [
            ("max-error-rate", "2", "between 0 and 1"),
            ("max-error-rate", "lots", "param max-error-rate"),
            ("min-requests", "-1", "param min-requests"),
            ("max-p99-ratio", "0", "above 0"),
        ] {
            let info = params(&[(key, value)]);
            let p = Params::of(&info);
            let err = Analysis::from_params(&p)
                .and_then(|a| a.with_p99_ratio(&p))
                .unwrap_err();
            assert!(err.contains(says), "{key}={value}: {err}");
        }
    }

    #[test]
    fn summary_has_both_revisions_and_the_verdict() {
        let m = Measurement {
            subject: stats("v2", 150, 30, 20),
            baseline: Some(stats("v1", 2_850, 0, 20)),
            verdict: Verdict::Unhealthy("bad".into()),
        };
        assert_eq!(
            m.summary(),
            "v2: 150 requests, 30 errors (0.200), p50 10.0 ms, p99 20.0 ms; \
             v1: 2850 requests, 0 errors, p99 20.0 ms => unhealthy: bad"
        );
    }
}
