//! Durations in config files: `500ms`, `30s`, `5m`, `1h`, or a number of
//! milliseconds, parsed by the `rollout-duration` crate (which the policy
//! SDK shares). Used with `#[serde(with = "crate::duration")]`.

use serde::{Deserialize, Deserializer};

use rollout_duration::parse_ms;

/// Deserialize a duration in milliseconds from a string or an integer.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Ms(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Ms(ms) => Ok(ms),
        Raw::Text(s) => parse_ms(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected a duration like 500ms, 30s, 5m or 1h, got {s:?}"
            ))
        }),
    }
}

/// [`deserialize`] for optional fields.
pub mod option {
    use serde::Deserializer;

    /// Deserialize an optional duration in milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        super::deserialize(d).map(Some)
    }
}
