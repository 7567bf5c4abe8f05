//! What is wrong with a spec, said with its file, line and field: the
//! error users see, and how a validation problem or a parser error is
//! located in the original text or blamed on a `--set`.

use super::{overrides, source};

/// Why a spec was rejected. Display is a complete message for the user.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read: `web.toml: No such file or directory (os error 2)`.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or unknown. The message
    /// comes from the TOML parser: line, column, the offending snippet, what
    /// was expected, and `in `field``.
    #[error("{origin}: {message}")]
    Parse {
        /// The file (or other source) of the text.
        origin: String,
        /// What is wrong, and where.
        message: String,
    },
    /// Well-formed but not acceptable: `web.toml: replicas: must be at
    /// least 1, got 0 (line 2)`.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// The file (or other source) of the text.
        origin: String,
        /// Dotted key path of the field, e.g. `revision.command`.
        field: String,
        /// What is wrong, ending with `(line N)` when the field is in the text.
        message: String,
    },
    /// A `--set` override that cannot be applied or makes the spec invalid:
    /// `--set replicas=x: invalid type: string "x", expected u32`.
    #[error("--set {key}: {message}")]
    Set {
        /// The override as given, `key=value`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A validation failure: the key path it is about, other keys that can
/// cause it (for blaming a `--set`), and what is wrong.
pub(super) struct Problem {
    pub(super) path: Vec<String>,
    pub(super) also: Option<&'static str>,
    pub(super) message: String,
}

impl Problem {
    pub(super) fn new(path: &[&str], message: String) -> Self {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            also: None,
            message,
        }
    }
}

/// Where the text came from and what was applied to it, for error messages.
pub(super) struct Context<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
    pub(super) sets: &'a [(String, String)],
}

/// Longest line of a spec (or of a `--set`) an error quotes: a spec with
/// a 50 MB line must not be answered with it.
const QUOTED_CHARS: usize = 200;

/// `text` with every line longer than [`QUOTED_CHARS`] cut short.
fn clipped(text: &str) -> String {
    let clip = |line: &str| match line.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => {
            let more = line[end..].chars().count();
            format!("{}… ({more} more characters)", &line[..end])
        }
        None => line.to_string(),
    };
    text.split('\n').map(clip).collect::<Vec<_>>().join("\n")
}

impl Context<'_> {
    pub(super) fn parse_error(&self, message: String) -> SpecError {
        SpecError::Parse {
            origin: self.origin.to_string(),
            message: clipped(&message),
        }
    }

    pub(super) fn set_error(&self, index: usize, message: String) -> SpecError {
        let (key, value) = &self.sets[index];
        SpecError::Set {
            key: clipped(&format!("{key}={value}")),
            message: clipped(&message),
        }
    }

    /// A type error found in the table with overrides applied (re-serialized
    /// as `generated`): blame the last `--set` touching the field, else the
    /// file, located in the original text.
    pub(super) fn merged_error(&self, generated: &str, e: &toml::de::Error) -> SpecError {
        let found = e
            .span()
            .and_then(|span| source::path_at(generated, span.clone()));
        let Some((path, part)) = found else {
            return self.parse_error(e.message().to_string());
        };
        if let Some(i) = overrides::culprit(self.sets, &path) {
            let mut message = e.message().to_string();
            if overrides::segments(&self.sets[i].0) != path {
                message.push_str(&format!(" (in `{}`)", source::dotted(&path)));
            }
            return self.set_error(i, message);
        }
        let message = match source::span_of(self.text, &path, part) {
            Some(span) => source::render(self.text, span, e.message(), &path),
            None => format!("{}\nin `{}`", e.message(), source::dotted(&path)),
        };
        self.parse_error(message)
    }

    pub(super) fn invalid(&self, problem: Problem) -> SpecError {
        let field = source::dotted(&problem.path);
        let blamed = overrides::culprit(self.sets, &problem.path).or_else(|| {
            let also: Vec<String> = problem.also?.split('.').map(str::to_string).collect();
            overrides::culprit(self.sets, &also)
        });
        if let Some(i) = blamed {
            return self.set_error(i, format!("{field}: {}", problem.message));
        }
        let mut message = problem.message;
        if let Some(span) = source::span_of(self.text, &problem.path, source::Part::Key) {
            let (line, _) = source::line_col(self.text, span.start);
            message.push_str(&format!(" (line {line})"));
        }
        SpecError::Invalid {
            origin: self.origin.to_string(),
            field: clipped(&field),
            message: clipped(&message),
        }
    }
}
