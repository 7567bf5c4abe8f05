//! Durations as people write them in specs, scenarios and policy params:
//! `500ms`, `30s`, `5m`, `1h`, or a bare number of milliseconds.
//!
//! The one parser of them, dependency-free, so the host (native) and the
//! policy SDK (built for `wasm32-wasip2`) read a duration the same way.
//!
//! ```
//! assert_eq!(rollout_duration::parse_ms("30s"), Some(30_000));
//! assert_eq!(rollout_duration::parse_ms("3 weeks"), None);
//! ```

#![deny(missing_docs)]

/// Parse `500`, `500ms`, `30s`, `5m`, `1h` (spaces around the number and
/// before the unit allowed) into milliseconds; `None` for anything else or
/// a value that does not fit in a `u64`.
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

#[cfg(test)]
mod tests {
    use super::parse_ms;

    #[test]
    fn units() {
        assert_eq!(parse_ms("250"), Some(250));
        assert_eq!(parse_ms("250ms"), Some(250));
        assert_eq!(parse_ms(" 30 s "), Some(30_000));
        assert_eq!(parse_ms("2m"), Some(120_000));
        assert_eq!(parse_ms("1h"), Some(3_600_000));
        assert_eq!(parse_ms("5m"), Some(300_000));
    }

    #[test]
    fn anything_else_is_none() {
        assert_eq!(parse_ms("3 weeks"), None);
        assert_eq!(parse_ms("5 days"), None);
        assert_eq!(parse_ms(""), None);
        assert_eq!(parse_ms("ms"), None);
        assert_eq!(parse_ms("-1s"), None);
        assert_eq!(parse_ms("1.5s"), None);
        assert_eq!(parse_ms("18446744073709551615h"), None);
    }
}
