//! Assertions of a scenario, checked against what the run observed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What must hold at the end of a scenario. Every field is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Expect {
    /// `completed`, `rolled-back` or `failed`.
    pub outcome: Option<String>,
    /// Text the outcome's reason must contain.
    pub reason_contains: Option<String>,
    /// The last step the policy reported when it rolled back.
    pub rolled_back_at_step: Option<u32>,
    /// Most instances ever running at once (at most).
    pub max_instances: Option<u32>,
    /// Fewest ready instances ever (at least).
    pub min_ready: Option<u32>,
    /// Ready instances per revision at the end.
    #[serde(default, rename = "final")]
    pub final_counts: BTreeMap<String, u32>,
    /// Virtual duration at most.
    #[serde(default, with = "crate::duration::option")]
    pub max_duration: Option<u64>,
    /// Virtual duration at least.
    #[serde(default, with = "crate::duration::option")]
    pub min_duration: Option<u64>,
    /// Text some journal line must contain (e.g. a refused effect).
    #[serde(default)]
    pub journal_contains: Vec<String>,
}

/// What a run produced, for the assertions.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Outcome kind.
    pub outcome: String,
    /// Outcome reason (empty when completed).
    pub reason: String,
    /// Last reported step.
    pub step: Option<u32>,
    /// Most instances at once.
    pub max_instances: u32,
    /// Fewest ready at once.
    pub min_ready: u32,
    /// Ready per revision at the end.
    pub final_counts: BTreeMap<String, u32>,
    /// Virtual milliseconds the rollout took.
    pub duration_ms: u64,
    /// Every journal line.
    pub journal: Vec<String>,
}

/// One checked assertion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which assertion, e.g. `min-ready`.
    pub name: String,
    /// What was expected.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// Whether it held.
    pub passed: bool,
}

impl Check {
    fn new(name: impl Into<String>, expected: String, actual: String, passed: bool) -> Self {
        Check {
            name: name.into(),
            expected,
            actual,
            passed,
        }
    }
}

impl Expect {
    /// Check every assertion against `seen`.
    pub fn check(&self, seen: &Observed) -> Vec<Check> {
        let mut checks = Vec::new();
        if let Some(outcome) = &self.outcome {
            checks.push(Check::new(
                "outcome",
                outcome.clone(),
                seen.outcome.clone(),
                *outcome == seen.outcome,
            ));
        }
        if let Some(text) = &self.reason_contains {
            checks.push(Check::new(
                "reason-contains",
                format!("{text:?}"),
                format!("{:?}", seen.reason),
                seen.reason.contains(text.as_str()),
            ));
        }
        if let Some(step) = self.rolled_back_at_step {
            let actual = seen.step.map_or("no step".into(), |s| s.to_string());
            let passed = seen.outcome == "rolled-back" && seen.step == Some(step);
            checks.push(Check::new(
                "rolled-back-at-step",
                format!("rolled back at step {step}"),
                format!("{} at step {actual}", seen.outcome),
                passed,
            ));
        }
        if let Some(max) = self.max_instances {
            checks.push(Check::new(
                "max-instances",
                format!("<= {max}"),
                seen.max_instances.to_string(),
                seen.max_instances <= max,
            ));
        }
        if let Some(min) = self.min_ready {
            checks.push(Check::new(
                "min-ready",
                format!(">= {min}"),
                seen.min_ready.to_string(),
                seen.min_ready >= min,
            ));
        }
        for (revision, want) in &self.final_counts {
            let got = seen.final_counts.get(revision).copied().unwrap_or(0);
            checks.push(Check::new(
                format!("final.{revision}"),
                want.to_string(),
                got.to_string(),
                got == *want,
            ));
        }
        let secs = |ms: u64| format!("{:.1}s", ms as f64 / 1_000.0);
        if let Some(max) = self.max_duration {
            checks.push(Check::new(
                "max-duration",
                format!("<= {}", secs(max)),
                secs(seen.duration_ms),
                seen.duration_ms <= max,
            ));
        }
        if let Some(min) = self.min_duration {
            checks.push(Check::new(
                "min-duration",
                format!(">= {}", secs(min)),
                secs(seen.duration_ms),
                seen.duration_ms >= min,
            ));
        }
        for text in &self.journal_contains {
            let found = seen.journal.iter().any(|line| line.contains(text.as_str()));
            checks.push(Check::new(
                "journal-contains",
                format!("{text:?}"),
                if found { "found" } else { "not found" }.into(),
                found,
            ));
        }
        checks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failing_assertions_say_what_and_why() {
        let expect = Expect {
            outcome: Some("completed".into()),
            min_ready: Some(3),
            final_counts: BTreeMap::from([("v2".into(), 3)]),
            ..Expect::default()
        };
        let seen = Observed {
            outcome: "completed".into(),
            reason: String::new(),
            step: Some(3),
            max_instances: 4,
            min_ready: 2,
            final_counts: BTreeMap::from([("v2".into(), 3)]),
            duration_ms: 1_000,
            journal: vec![],
        };
        let checks = expect.check(&seen);
        let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(
            (failed[0].name.as_str(), failed[0].actual.as_str()),
            ("min-ready", "2")
        );
    }
}
