//! The journal: every effect, its result, and what the fleet did, in order.
//!
//! `rollout test` prints it as the timeline; the agent will persist it in
//! SQLite so a rollout can be audited and resumed.

use serde::{Deserialize, Serialize};

/// Who or what an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// An effect the policy asked for, and its result.
    Effect,
    /// An effect a guardrail or the operator refused.
    Refused,
    /// A state change of an instance, observed by the host.
    Fleet,
    /// The operator (pause, resume, abort, promote) or a checkpoint.
    Operator,
    /// Progress reported by the policy.
    Progress,
    /// A line the policy logged.
    Log,
    /// The host acting on its own: limits, restore, outcome.
    Host,
}

impl Kind {
    /// Every kind.
    const ALL: [Kind; 7] = [
        Kind::Effect,
        Kind::Refused,
        Kind::Fleet,
        Kind::Operator,
        Kind::Progress,
        Kind::Log,
        Kind::Host,
    ];

    /// The label printed in the timeline (and stored).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Effect => "effect",
            Kind::Refused => "REFUSED",
            Kind::Fleet => "fleet",
            Kind::Operator => "operator",
            Kind::Progress => "progress",
            Kind::Log => "policy",
            Kind::Host => "host",
        }
    }

    /// The kind printed as `label` (an unknown label reads as `Host`).
    pub fn from_label(label: &str) -> Kind {
        Kind::ALL
            .into_iter()
            .find(|k| k.label() == label)
            .unwrap_or(Kind::Host)
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Milliseconds since the rollout started.
    pub at_ms: u64,
    /// What kind of entry.
    pub kind: Kind,
    /// What happened.
    pub text: String,
}

impl std::fmt::Display for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.at_ms;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:03}  {:<8}  {}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1_000 % 60,
            ms % 1_000,
            self.kind.label(),
            self.text
        )
    }
}

/// An append-only list of entries, optionally copied to a sink as they
/// are written (the agent persists and streams them from there).
#[derive(Debug, Clone, Default)]
pub struct Journal {
    entries: Vec<Entry>,
    sink: Option<tokio::sync::mpsc::UnboundedSender<Entry>>,
}

impl Journal {
    /// A journal that also sends every entry to `sink`.
    pub fn with_sink(sink: tokio::sync::mpsc::UnboundedSender<Entry>) -> Self {
        Journal {
            entries: Vec::new(),
            sink: Some(sink),
        }
    }

    /// Append an entry.
    pub fn push(&mut self, at_ms: u64, kind: Kind, text: impl Into<String>) {
        let entry = Entry {
            at_ms,
            kind,
            text: text.into(),
        };
        if let Some(sink) = &self.sink {
            // A closed sink means nobody listens any more; the entry stays here.
            let _ = sink.send(entry.clone());
        }
        self.entries.push(entry);
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_print_as_a_timeline() {
        let mut j = Journal::default();
        j.push(3_723_004, Kind::Refused, "stop web-1");
        assert_eq!(
            j.entries()[0].to_string(),
            "01:02:03.004  REFUSED   stop web-1"
        );
    }
}
