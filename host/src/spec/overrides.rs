//! `--set key=value` overrides: dotted paths into the spec's TOML table.

use serde::Deserialize;
use toml::{Table, Value};

/// The segments of a dotted key.
pub(super) fn segments(key: &str) -> Vec<String> {
    key.split('.').map(|s| s.trim().to_string()).collect()
}

/// Set `key` (dotted) to `value` in `table`, creating tables on the way.
pub(super) fn apply(table: &mut Table, key: &str, value: &str) -> Result<(), String> {
    let path = segments(key);
    if path.iter().any(String::is_empty) {
        return Err(
            "expected key=value with a dotted key, like replicas=5 or revision.env.VERSION=v2"
                .to_string(),
        );
    }
    let (last, parents) = path
        .split_last()
        .expect("split yields one segment at least");
    let mut current = table;
    for (i, segment) in parents.iter().enumerate() {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        current = match entry {
            Value::Table(t) => t,
            other => {
                return Err(format!(
                    "`{}` is {} {}, not a table",
                    path[..=i].join("."),
                    super::article(other.type_str()),
                    other.type_str()
                ));
            }
        };
    }
    let replaces_string = matches!(current.get(last), Some(Value::String(_)));
    let is_env = path.len() == 3 && path[0] == "revision" && path[1] == "env";
    current.insert(last.clone(), parse_value(value, replaces_string || is_env));
    Ok(())
}

/// Put `value` at `path`, creating tables; used for values known to fit.
pub(super) fn put(table: &mut Table, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        current = entry.as_table_mut().expect("made a table above");
    }
    current.insert(last.to_string(), value);
}

/// A TOML value if `text` is one (numbers, booleans, arrays, inline tables,
/// quoted strings), else `text` as a string. Dates stay strings, and so do
/// scalars when `prefer_string` (the key holds a string).
fn parse_value(text: &str, prefer_string: bool) -> Value {
    let parsed = toml::de::ValueDeserializer::parse(text)
        .ok()
        .and_then(|d| Value::deserialize(d).ok());
    match parsed {
        None | Some(Value::Datetime(_)) => Value::String(text.to_string()),
        Some(Value::Integer(_) | Value::Float(_) | Value::Boolean(_)) if prefer_string => {
            Value::String(text.to_string())
        }
        Some(value) => value,
    }
}

/// The last override that touches `path`: sets it, a table holding it, or
/// a key inside it.
pub(super) fn culprit(sets: &[(String, String)], path: &[String]) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    sets.iter().rposition(|(key, _)| {
        let key = segments(key);
        key.starts_with(path) || path.starts_with(&key)
    })
}
