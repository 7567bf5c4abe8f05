//! Guardrails: limits no policy can break.
//!
//! Checked by the host on every effect, whatever the policy asks. A refused
//! effect returns an error value to the policy and is journaled.

use serde::Deserialize;

/// An instance count: absolute (`2`) or a share of the replicas (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// This many instances.
    Absolute(u32),
    /// This percentage of the replicas, rounded up.
    Percent(u32),
}

impl Count {
    /// Resolve against a replica count.
    pub fn of(self, replicas: u32) -> u32 {
        match self {
            Count::Absolute(n) => n,
            Count::Percent(p) => (u64::from(replicas) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl std::str::FromStr for Count {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("expected a count like 2 or a percentage like 25%, got {s:?}");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse() {
                Ok(p) if p <= 100 => Ok(Count::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse().map(Count::Absolute).map_err(|_| bad()),
        }
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Count::Absolute(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Guardrails as configured (spec or scenario), before resolving counts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct GuardrailSpec {
    /// Instances allowed above `replicas`.
    pub max_surge: Count,
    /// Ready instances that must remain.
    pub min_available: Count,
    /// Longest time without progress (a new instance becoming ready, or a
    /// new step) before the host aborts the rollout.
    #[serde(with = "crate::duration")]
    pub progress_deadline: u64,
    /// Longest time the whole rollout may take; past it the policy is stopped.
    #[serde(with = "crate::duration")]
    pub deadline: u64,
}

impl Default for GuardrailSpec {
    fn default() -> Self {
        GuardrailSpec {
            max_surge: Count::Percent(25),
            min_available: Count::Percent(75),
            progress_deadline: 10 * 60 * 1000,
            deadline: 60 * 60 * 1000,
        }
    }
}

/// Guardrails resolved for one rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guardrails {
    /// Most instances occupying capacity (see `InstanceState::counts`:
    /// not stopped, not failed) at any time.
    pub max_instances: u32,
    /// Fewest ready instances a stop may leave.
    pub min_ready: u32,
    /// Progress deadline in ms.
    pub progress_deadline_ms: u64,
    /// Rollout deadline in ms.
    pub deadline_ms: u64,
}

impl Guardrails {
    /// Resolve `spec` for `replicas`. A surge below 1 would forbid every
    /// rollout without downtime, so it is at least 1 unless the spec says 0.
    pub fn resolve(spec: &GuardrailSpec, replicas: u32) -> Self {
        let surge = match spec.max_surge {
            Count::Percent(p) if p > 0 => spec.max_surge.of(replicas).max(1),
            c => c.of(replicas),
        };
        Guardrails {
            max_instances: replicas + surge,
            min_ready: spec.min_available.of(replicas).min(replicas),
            progress_deadline_ms: spec.progress_deadline,
            deadline_ms: spec.deadline,
        }
    }

    /// May `count` more instances start when `running` occupy capacity?
    pub fn check_start(&self, running: u32, count: u32) -> Result<(), String> {
        if running + count > self.max_instances {
            return Err(format!(
                "max-surge: starting {count} with {running} running would exceed {} instances",
                self.max_instances
            ));
        }
        Ok(())
    }

    /// May a stop leave `ready_after` ready instances, from `ready_before`?
    /// Stops that do not lower the ready count are always allowed.
    pub fn check_stop(&self, ready_before: u32, ready_after: u32) -> Result<(), String> {
        if ready_after < ready_before && ready_after < self.min_ready {
            return Err(format!(
                "min-available: stopping would leave {ready_after} ready instance(s), below {}",
                self.min_ready
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse_and_resolve() {
        assert_eq!("25%".parse::<Count>(), Ok(Count::Percent(25)));
        assert_eq!(" 2 ".parse::<Count>(), Ok(Count::Absolute(2)));
        assert!("150%".parse::<Count>().is_err());
        assert!("two".parse::<Count>().unwrap_err().contains("\"two\""));
        assert_eq!(Count::Percent(25).of(3), 1);
        assert_eq!(Count::Percent(75).of(3), 3);
    }

    #[test]
    fn defaults_allow_one_at_a_time_and_refuse_dropping_capacity() {
        let g = Guardrails::resolve(&GuardrailSpec::default(), 3);
        assert_eq!((g.max_instances, g.min_ready), (4, 3));
        assert!(g.check_start(3, 1).is_ok());
        assert!(g.check_start(4, 1).unwrap_err().contains("max-surge"));
        assert!(g.check_stop(4, 3).is_ok());
        assert!(g.check_stop(3, 2).unwrap_err().contains("min-available"));
        // Stopping instances that are not ready never lowers capacity.
        assert!(g.check_stop(1, 1).is_ok());
    }
}
