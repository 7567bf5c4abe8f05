//! Typed access to a policy's string parameters (`--param k=v`).
//!
//! Every getter takes a default and fails with a message naming the parameter
//! and what it expected, which a policy returns as `Outcome::Failed`.

use crate::RolloutInfo;

/// A policy's parameters.
#[derive(Debug, Clone, Default)]
pub struct Params<'a> {
    pairs: &'a [(String, String)],
}

impl<'a> Params<'a> {
    /// The parameters of a rollout.
    pub fn of(info: &'a RolloutInfo) -> Self {
        Params {
            pairs: &info.params,
        }
    }

    /// The raw value of `key`, if set (the last one wins).
    pub fn raw(&self, key: &str) -> Option<&'a str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A string parameter.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or(default).to_string()
    }

    /// A non-negative integer.
    pub fn u64(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("param {key}: expected a non-negative integer, got {v:?}")),
        }
    }

    /// A finite, non-negative number: `0.05`, `1.5`, `20`.
    pub fn f64(&self, key: &str, default: f64) -> Result<f64, String> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    format!("param {key}: expected a non-negative number like 0.05, got {v:?}")
                }),
        }
    }

    /// A flag: `true` or `false`.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.raw(key).map(str::trim) {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("param {key}: expected true or false, got {v:?}")),
        }
    }

    /// A duration in milliseconds: `500`, `500ms`, `30s`, `5m`, `1h`.
    pub fn millis(&self, key: &str, default: u64) -> Result<u64, String> {
        match self.raw(key) {
            None => Ok(default),
            Some(v) => parse_millis(v).ok_or_else(|| {
                format!("param {key}: expected a duration like 500ms, 30s or 5m, got {v:?}")
            }),
        }
    }

    /// An instance count, absolute (`2`) or a percentage of `total` (`25%`,
    /// rounded up).
    pub fn count(&self, key: &str, total: u32, default: &str) -> Result<u32, String> {
        let v = self.raw(key).unwrap_or(default);
        parse_count(v, total)
            .ok_or_else(|| format!("param {key}: expected a count like 2 or 25%, got {v:?}"))
    }
}

/// Parse `500`, `500ms`, `30s`, `5m`, `1h` into milliseconds (the host's
/// own parser, so a param reads as a spec field would).
pub use rollout_duration::parse_ms as parse_millis;

/// Parse `2` or `25%` (of `total`, rounded up) into a count.
pub fn parse_count(text: &str, total: u32) -> Option<u32> {
    let t = text.trim();
    match t.strip_suffix('%') {
        Some(pct) => {
            let p: u64 = pct.trim().parse().ok()?;
            (p <= 100).then(|| (u64::from(total) * p).div_ceil(100) as u32)
        }
        None => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(params: &[(&str, &str)]) -> RolloutInfo {
        RolloutInfo {
            service: "web".into(),
            from_revision: None,
            to_revision: "2".into(),
            replicas: 4,
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn durations_and_counts() {
        let i = info(&[("a", "30s"), ("b", "25%"), ("c", "3"), ("d", "x")]);
        let p = Params::of(&i);
        assert_eq!(p.millis("a", 0), Ok(30_000));
        assert_eq!(p.millis("missing", 7), Ok(7));
        assert_eq!(p.count("b", 4, "1"), Ok(1));
        assert_eq!(p.count("b", 5, "1"), Ok(2));
        assert_eq!(p.count("c", 4, "1"), Ok(3));
        assert!(p.count("d", 4, "1").unwrap_err().contains("param d"));
        assert!(p.u64("d", 1).unwrap_err().contains("\"x\""));
        assert_eq!(parse_count("101%", 4), None);
        assert_eq!(parse_millis("5m"), Some(300_000));
        assert_eq!(parse_millis("5 days"), None);
    }

    #[test]
    fn numbers_and_flags() {
        let i = info(&[
            ("r", "0.05"),
            ("n", "-1"),
            ("x", "NaN"),
            ("t", "true"),
            ("b", "yes"),
        ]);
        let p = Params::of(&i);
        assert_eq!(p.f64("r", 1.0), Ok(0.05));
        assert_eq!(p.f64("missing", 1.5), Ok(1.5));
        assert!(p.f64("n", 0.0).unwrap_err().contains("param n"));
        assert!(p.f64("x", 0.0).is_err());
        assert_eq!(p.bool("t", false), Ok(true));
        assert_eq!(p.bool("missing", false), Ok(false));
        assert!(p.bool("b", false).unwrap_err().contains("true or false"));
    }

    #[test]
    fn last_value_wins() {
        let i = info(&[("k", "1"), ("k", "2")]);
        assert_eq!(Params::of(&i).string("k", "0"), "2");
    }
}
