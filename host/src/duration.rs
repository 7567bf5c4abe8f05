//! Durations in config files: `500ms`, `30s`, `5m`, `1h`, or a number of
//! milliseconds. Used with `#[serde(with = "crate::duration")]`.

use serde::{Deserialize, Deserializer};

/// Parse `500`, `500ms`, `30s`, `5m`, `1h` into milliseconds.
pub fn parse_ms(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

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

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn units() {
        assert_eq!(parse_ms("250"), Some(250));
        assert_eq!(parse_ms("30s"), Some(30_000));
        assert_eq!(parse_ms("2m"), Some(120_000));
        assert_eq!(parse_ms("1h"), Some(3_600_000));
        assert_eq!(parse_ms("3 weeks"), None);
        assert_eq!(parse_ms(""), None);
    }
}
