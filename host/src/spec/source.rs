//! Finding keys in the spec's text: key path <-> span, line and column,
//! and error snippets in the TOML parser's style.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// One key of the text: its path, the span of the key and of its value.
struct Entry {
    path: Vec<String>,
    key: Range<usize>,
    value: Range<usize>,
}

fn entries(text: &str) -> Vec<Entry> {
    fn walk(table: &DeTable<'_>, prefix: &[String], out: &mut Vec<Entry>) {
        for (key, value) in table.iter() {
            let mut path = prefix.to_vec();
            path.push(key.get_ref().to_string());
            if let DeValue::Table(inner) = value.get_ref() {
                walk(inner, &path, out);
            }
            out.push(Entry {
                path,
                key: key.span(),
                value: value.span(),
            });
        }
    }
    let mut out = Vec::new();
    if let Ok(doc) = DeTable::parse(text) {
        walk(doc.get_ref(), &[], &mut out);
    }
    out
}

/// Where in a key-value pair an error points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// The key (unknown fields).
    Key,
    /// The value (wrong type or value).
    Value,
}

/// The key whose name or value is exactly at `span` (where the parser
/// points for unknown fields and values of the wrong type), and which.
pub(super) fn path_at(text: &str, span: Range<usize>) -> Option<(Vec<String>, Part)> {
    entries(text)
        .into_iter()
        .filter(|e| e.key == span || e.value == span)
        .max_by_key(|e| e.path.len())
        .map(|e| {
            let part = if e.key == span {
                Part::Key
            } else {
                Part::Value
            };
            (e.path, part)
        })
}

/// The span of the key (or its value) at `path`, if the text has it.
pub(super) fn span_of(text: &str, path: &[String], part: Part) -> Option<Range<usize>> {
    entries(text)
        .into_iter()
        .find(|e| e.path == path)
        .map(|e| match part {
            Part::Key => e.key,
            Part::Value => e.value,
        })
}

/// 1-based line and column (in characters) of byte `offset`.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// A parser error as the user reads it: toml's own message (line, column,
/// snippet, what is wrong), plus the field when one is at the error.
pub(super) fn describe(text: &str, e: &toml::de::Error) -> String {
    let mut message = e.to_string().trim_end().to_string();
    if let Some((path, _)) = e.span().and_then(|span| path_at(text, span)) {
        message.push_str(&format!("\nin `{}`", dotted(&path)));
    }
    message
}

/// An error at `span` of `text` about the field at `path`, rendered like
/// the TOML parser's own errors.
pub(super) fn render(text: &str, span: Range<usize>, message: &str, path: &[String]) -> String {
    let (line, column) = line_col(text, span.start);
    let content = text.lines().nth(line - 1).unwrap_or("");
    let gutter = " ".repeat(line.to_string().len());
    let width = text
        .get(span.clone())
        .map_or(1, |s| s.lines().next().unwrap_or("").chars().count().max(1));
    format!(
        "TOML parse error at line {line}, column {column}\n{gutter} |\n{line} | {content}\n\
         {gutter} | {}{}\n{message}\nin `{}`",
        " ".repeat(column - 1),
        "^".repeat(width),
        dotted(path)
    )
}

/// A key path as written in TOML: bare segments joined by dots, others quoted.
pub(super) fn dotted(path: &[String]) -> String {
    path.iter()
        .map(|s| {
            let bare = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if bare { s.clone() } else { format!("{s:?}") }
        })
        .collect::<Vec<_>>()
        .join(".")
}
