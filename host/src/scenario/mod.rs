//! Scenarios for `rollout test`: a simulated fleet, scripted behaviour and
//! operator commands on virtual time, and what must hold at the end.
//!
//! ```toml
//! replicas = 3
//! from = "v1"
//! to = "v2"
//!
//! [params]                       # policy params (--param overrides)
//! min-ready-ms = "10s"
//!
//! [revisions.v2]                 # sim behaviour per revision
//! ready-after = "5s"
//! logs = [{ after = "20s", line = "[ERROR] db unreachable" }]
//!
//! [[commands]]                   # operator commands at virtual times
//! at = "30s"
//! action = "abort"
//!
//! [expect]                       # assertions
//! outcome = "rolled-back"
//! final = { v1 = 3, v2 = 0 }
//! ```

mod expect;
mod run;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use expect::{Check, Expect, Observed};
pub use run::{Report, simulate};

use crate::backend::sim::Behaviour;
use crate::executor::guardrails::GuardrailSpec;
use crate::executor::operator::Action;
use crate::model::RolloutInfo;

/// A parsed scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Scenario {
    /// What the scenario shows.
    #[serde(default)]
    pub description: String,
    /// Service name.
    #[serde(default = "default_service")]
    pub service: String,
    /// Instances the service runs.
    pub replicas: u32,
    /// Revision serving at the start (`replicas` ready instances), if any.
    pub from: Option<String>,
    /// Revision to roll out.
    pub to: String,
    /// Seed of the flaky-start generator.
    #[serde(default)]
    pub seed: u64,
    /// Simulated client traffic, spread over ready instances by weight.
    #[serde(default = "default_rps")]
    pub requests_per_second: u64,
    /// Policy params.
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// Host guardrails.
    #[serde(default)]
    pub guardrails: GuardrailSpec,
    /// Behaviour per revision (both `from` and `to` default to ready after 1 s).
    #[serde(default)]
    pub revisions: BTreeMap<String, Behaviour>,
    /// Operator commands.
    #[serde(default)]
    pub commands: Vec<ScheduledCommand>,
    /// What must hold at the end.
    #[serde(default)]
    pub expect: Expect,
}

/// An operator command at a virtual time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduledCommand {
    /// When.
    #[serde(with = "crate::duration")]
    pub at: u64,
    /// What.
    pub action: Action,
}

fn default_service() -> String {
    "web".to_string()
}

fn default_rps() -> u64 {
    100
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Unreadable.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong shape (the message has the
    /// line, column and field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// Well-formed but inconsistent.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Scenario {
    /// Read and check a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ScenarioError::Parse { message, .. } => ScenarioError::Parse {
                path: shown.clone(),
                message,
            },
            ScenarioError::Invalid { message, .. } => ScenarioError::Invalid {
                path: shown.clone(),
                message,
            },
            other => other,
        })
    }

    /// Parse and check scenario text.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Parse {
            path: String::new(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |message: String| ScenarioError::Invalid {
            path: String::new(),
            message,
        };
        for revision in s.from.iter().chain([&s.to]) {
            s.revisions.entry(revision.clone()).or_default();
        }
        if s.from.as_ref() == Some(&s.to) {
            return Err(invalid(format!("from and to are both {:?}", s.to)));
        }
        for (name, b) in &s.revisions {
            for (field, p) in [("flaky", b.flaky), ("error-rate", b.error_rate)] {
                if !(0.0..=1.0).contains(&p) {
                    return Err(invalid(format!(
                        "revisions.{name}.{field}: expected a probability between 0 and 1, got {p}"
                    )));
                }
            }
        }
        if let Some(unknown) = s
            .expect
            .final_counts
            .keys()
            .find(|r| !s.revisions.contains_key(*r))
        {
            return Err(invalid(format!(
                "expect.final: revision {unknown:?} is neither `from`, `to` nor under [revisions]"
            )));
        }
        Ok(s)
    }

    /// Params as strings, with `overrides` (from `--param`) last so they win.
    pub fn params(&self, overrides: &[(String, String)]) -> Vec<(String, String)> {
        let text = |v: &toml::Value| match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .chain(overrides.iter().cloned())
            .collect()
    }

    /// What the policy is asked to do.
    pub fn info(&self, overrides: &[(String, String)]) -> RolloutInfo {
        RolloutInfo {
            service: self.service.clone(),
            from_revision: self.from.clone(),
            to_revision: self.to.clone(),
            replicas: self.replicas,
            params: self.params(overrides),
        }
    }

    /// Operator commands as (time, action).
    pub fn commands(&self) -> Vec<(u64, Action)> {
        self.commands.iter().map(|c| (c.at, c.action)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_scenario_fills_in_revisions() {
        let s =
            Scenario::parse("replicas = 3\nfrom = \"v1\"\nto = \"v2\"\n[params]\nmax-surge = 1\n")
                .unwrap();
        assert_eq!(s.revisions.len(), 2);
        assert_eq!(
            s.params(&[]),
            vec![("max-surge".to_string(), "1".to_string())]
        );
        let over = s.params(&[("max-surge".into(), "2".into())]);
        assert_eq!(over.last().unwrap().1, "2");
    }

    #[test]
    fn a_revision_table_becomes_the_fleet_behaviour() {
        let text = "replicas = 3\nto = \"v2\"\n[revisions.v2]\nnever-ready = true\n\
                    unhealthy-after = \"30s\"\ncrash-first = 2\n\
                    logs = [{ after = \"1s\", line = \"up\" }]\n";
        let s = Scenario::parse(text).unwrap();
        let b = rollout_fleet_sim::Behaviour::from(&s.revisions["v2"]);
        let expected = rollout_fleet_sim::Behaviour::never_ready()
            .unhealthy_after(30_000)
            .crashing_first(2)
            .logging(1_000, "up");
        assert_eq!(b, expected);
    }

    #[test]
    fn errors_name_line_and_field() {
        let err =
            Scenario::parse("replicas = 3\nto = \"v2\"\n[revisions.v2]\nready-after = \"soon\"\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("expected a duration"), "{err}");
        let err = Scenario::parse("replicas = 3\nto = \"v2\"\nreplika = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3") && err.contains("replika"), "{err}");
        let err = Scenario::parse("replicas = 3\nto = \"v2\"\n[revisions.v2]\nflaky = 2.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("revisions.v2.flaky"), "{err}");
    }
}
