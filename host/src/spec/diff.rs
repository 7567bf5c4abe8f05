//! Key-by-key differences between two spec tables.

use std::collections::{BTreeMap, BTreeSet};

use toml::{Table, Value};

use super::source::dotted;

/// One line per changed key path, sorted: `path: old -> new`,
/// `+ path = new`, `- path = old`.
pub(super) fn diff(old: &Table, new: &Table) -> Vec<String> {
    let (old, new) = (flatten(old), flatten(new));
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter_map(|key| match (old.get(key), new.get(key)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(a), Some(b)) => Some(format!("{key}: {a} -> {b}")),
            (None, Some(b)) => Some(format!("+ {key} = {b}")),
            (Some(a), None) => Some(format!("- {key} = {a}")),
            (None, None) => None,
        })
        .collect()
}

/// Leaf values (everything but tables) by dotted key path.
fn flatten(table: &Table) -> BTreeMap<String, Value> {
    fn walk(table: &Table, prefix: &mut Vec<String>, out: &mut BTreeMap<String, Value>) {
        for (key, value) in table {
            prefix.push(key.clone());
            match value {
                Value::Table(inner) => walk(inner, prefix, out),
                leaf => {
                    out.insert(dotted(prefix), leaf.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = BTreeMap::new();
    walk(table, &mut Vec::new(), &mut out);
    out
}
