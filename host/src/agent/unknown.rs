//! Instances of this home that the state does not know: what runs when
//! `state.db` was lost, emptied or replaced (a lost WAL, a restore from an
//! old backup) while the instances of the old state kept running. Starting
//! as new over them would run a deploy next to them, twice the replicas.
//!
//! The process backend's marks are found from the outside: an instance's
//! standard output is a log file under `HOME/services/NAME/logs`. Instances
//! of services the state knows are adopted or swept by their fleet
//! ([`crate::fleet::Fleet::adopt`]); this finds those of services it does
//! not know.

use super::Agent;
use crate::backend::process::os;

/// A running instance of this home that the state does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The service its log directory names.
    pub service: String,
    /// Its instance id (its log file's name).
    pub id: String,
    /// The process group it leads.
    pub pid: i64,
}

impl Agent {
    /// Running instances under this home of services the state does not know.
    pub fn unknown_instances(&self) -> Vec<Unknown> {
        let known = self.store.services().unwrap_or_default();
        let Ok(dirs) = std::fs::read_dir(self.home.join("services")) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for dir in dirs.filter_map(Result::ok) {
            let service = dir.file_name().to_string_lossy().into_owned();
            if known.contains(&service) {
                continue;
            }
            for (pid, id) in os::instances_logging_to(&dir.path().join("logs")) {
                found.push(Unknown {
                    service: service.clone(),
                    id,
                    pid,
                });
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Stop `unknown` instances (their process groups, at once).
    pub fn stop_unknown(&self, unknown: &[Unknown]) {
        for u in unknown {
            os::signal_group(u.pid, libc::SIGKILL);
        }
    }
}

/// Why an agent refuses to start over `unknown` instances, and what to do.
pub fn refusal(home: &std::path::Path, unknown: &[Unknown]) -> String {
    let named: Vec<String> = unknown
        .iter()
        .take(10)
        .map(|u| format!("{} (service {}, pid {})", u.id, u.service, u.pid))
        .collect();
    let more = match unknown.len() {
        n if n > 10 => format!(" and {} more", n - 10),
        _ => String::new(),
    };
    format!(
        "{} instance(s) of this home still run that the state at {} does not know: {}{more}. \
         The state was lost or replaced (an empty or missing state.db, a lost WAL) while they ran; \
         starting as new would deploy next to them. Put the old state.db back if you have it, \
         or stop them: `rollout serve --stop-unknown` stops them and starts with the state as it is",
        unknown.len(),
        home.join("state.db").display(),
        named.join(", ")
    )
}
