//! [`EffectError`]: why the host refused or failed an effect, with a
//! `Display` that reads as a sentence (the generated bindings would print
//! the Rust debug form).

use std::fmt;

/// Why the host refused or failed an effect (the WIT `effect-error`). The
/// policy may react (roll back, retry smaller); the refusal is journaled
/// either way.
///
/// Its `Display` is [`EffectError::reason`]:
///
/// ```
/// use rollout_policy::EffectError;
/// let e = EffectError::Backend("cannot start web-r2-1: no such file".into());
/// assert_eq!(e.to_string(), "backend: cannot start web-r2-1: no such file");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EffectError {
    /// A host guardrail (max surge, min available, deadline) forbids it.
    Guardrail(String),
    /// The operator aborted the rollout: no new-revision effects allowed.
    Aborted(String),
    /// The request names something that does not exist or is malformed.
    Invalid(String),
    /// The backend failed to carry it out.
    Backend(String),
}

impl EffectError {
    /// Why the effect was refused, as plain text for messages. Guardrail
    /// and abort reasons are the host's own words, e.g. `max-surge:
    /// starting 4 with 4 running would exceed 5 instances`; the others are
    /// prefixed with their kind.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for EffectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EffectError::Guardrail(why) | EffectError::Aborted(why) => f.write_str(why),
            EffectError::Invalid(why) => write!(f, "invalid: {why}"),
            EffectError::Backend(why) => write!(f, "backend: {why}"),
        }
    }
}

impl std::error::Error for EffectError {}

#[cfg(test)]
mod tests {
    use super::EffectError;

    #[test]
    fn display_is_a_sentence_not_the_debug_form() {
        let cases = [
            (
                EffectError::Guardrail("max-surge: 5".into()),
                "max-surge: 5",
            ),
            (
                EffectError::Aborted("by the operator".into()),
                "by the operator",
            ),
            (
                EffectError::Invalid("no instance x".into()),
                "invalid: no instance x",
            ),
            (
                EffectError::Backend("cannot start a".into()),
                "backend: cannot start a",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
            assert_eq!(error.reason(), text);
            assert_eq!(format!("starting: {error}"), format!("starting: {text}"));
        }
    }
}
