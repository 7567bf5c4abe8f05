//! The agent's state in SQLite: services, their numbered revisions (a full
//! spec snapshot and the cause of each change), rollouts, the append-only
//! journal of every rollout, the instances the agent started (so it can
//! re-adopt them after a restart), and what a running rollout needs to
//! resume after one (its [`PinnedPolicy`] and its [`CallRecord`]s).
//!
//! One connection behind a mutex: every call is a short statement, and the
//! agent is the only writer. WAL mode keeps readers (`rollout status` while a
//! rollout writes its journal) from waiting.

mod calls;
mod services;

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::journal::{Entry, Kind};

pub use calls::{CallRecord, PinnedPolicy};
pub use services::ServiceEvent;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A row refers to something that does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// Result of a store call.
pub type Result<T> = std::result::Result<T, StoreError>;

/// One numbered revision of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Revision {
    /// Service name.
    pub service: String,
    /// 1, 2, 3...
    pub number: u32,
    /// Canonical TOML of the spec.
    pub spec: String,
    /// Why it was made (`--cause`, or what the CLI says it did).
    pub cause: String,
    /// Unix milliseconds.
    pub created_ms: u64,
}

/// A rollout and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutRow {
    /// Rollout id.
    pub id: i64,
    /// Service name.
    pub service: String,
    /// Revision serving before, if any.
    pub from_revision: Option<u32>,
    /// Revision rolled out.
    pub to_revision: u32,
    /// Policy name or path.
    pub policy: String,
    /// `running`, `completed`, `rolled-back`, `failed`, or `interrupted`
    /// (the agent stopped on SIGTERM at a safe point, between two host
    /// calls: the fleet is as the policy left it, and a restarted agent may
    /// resume it or a new `rollout run` converges it).
    pub state: String,
    /// Why it ended so, if it did not complete.
    pub reason: String,
    /// Unix milliseconds.
    pub started_ms: u64,
    /// Unix milliseconds, once over.
    pub ended_ms: Option<u64>,
}

/// An instance the agent started, as needed to re-adopt it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRow {
    /// Instance id.
    pub id: String,
    /// Service name.
    pub service: String,
    /// Revision id (`r2`).
    pub revision: String,
    /// Process id (process backend) or 0.
    pub pid: i64,
    /// Start time of the process in clock ticks since boot, to tell a
    /// re-used pid from ours.
    pub start_ticks: u64,
    /// Port the instance listens on.
    pub port: u16,
    /// Unix milliseconds.
    pub started_ms: u64,
}

/// A journal entry with its rollout and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRow {
    /// Position in the rollout's journal, from 1.
    pub seq: i64,
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS services (
    name TEXT PRIMARY KEY,
    current_revision INTEGER,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS revisions (
    service TEXT NOT NULL REFERENCES services(name),
    number INTEGER NOT NULL,
    spec TEXT NOT NULL,
    cause TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (service, number)
);
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL REFERENCES services(name),
    from_revision INTEGER,
    to_revision INTEGER NOT NULL,
    policy TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER
);
CREATE TABLE IF NOT EXISTS journal (
    rollout INTEGER NOT NULL REFERENCES rollouts(id),
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (rollout, seq)
);
CREATE TRIGGER IF NOT EXISTS journal_append_only BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    revision TEXT NOT NULL,
    pid INTEGER NOT NULL,
    start_ticks INTEGER NOT NULL,
    port INTEGER NOT NULL,
    started_ms INTEGER NOT NULL
);
";

/// The agent's database.
pub struct Store {
    conn: Mutex<Connection>,
}

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Store {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // WAL with NORMAL sync: durable across agent crashes, one fsync per
        // checkpoint rather than per journal batch.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(calls::SCHEMA)?;
        conn.execute_batch(services::SCHEMA)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&mut conn)?)
    }

    /// Record a new revision of `service` (creating the service on its first
    /// revision); returns its number.
    pub fn add_revision(&self, service: &str, spec: &str, cause: &str) -> Result<u32> {
        self.with(|c| {
            let tx = c.transaction()?;
            let now = unix_ms() as i64;
            tx.execute(
                "INSERT OR IGNORE INTO services (name, current_revision, created_ms) VALUES (?1, NULL, ?2)",
                params![service, now],
            )?;
            let number: u32 = tx.query_row(
                "SELECT COALESCE(MAX(number), 0) + 1 FROM revisions WHERE service = ?1",
                [service],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO revisions (service, number, spec, cause, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![service, number, spec, cause, now],
            )?;
            tx.commit()?;
            Ok(number)
        })
    }

    /// One revision.
    pub fn revision(&self, service: &str, number: u32) -> Result<Revision> {
        self.with(|c| {
            c.query_row(
                "SELECT service, number, spec, cause, created_ms FROM revisions WHERE service = ?1 AND number = ?2",
                params![service, number],
                revision_row,
            )
            .optional()
        })?
        .ok_or_else(|| StoreError::NotFound(format!("{service} has no revision {number}")))
    }

    /// Every revision of `service`, oldest first.
    pub fn revisions(&self, service: &str) -> Result<Vec<Revision>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT service, number, spec, cause, created_ms FROM revisions WHERE service = ?1 ORDER BY number",
            )?;
            q.query_map([service], revision_row)?.collect()
        })
    }

    /// Names of every service, sorted (not those removed by `rollout rm`).
    pub fn services(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT name FROM services WHERE name NOT IN (SELECT service FROM removed) ORDER BY name",
            )?;
            q.query_map([], |r| r.get(0))?.collect()
        })
    }

    /// The revision serving `service` (the last one a rollout completed).
    pub fn current_revision(&self, service: &str) -> Result<Option<u32>> {
        self.with(|c| {
            c.query_row(
                "SELECT current_revision FROM services WHERE name = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
        })
    }

    /// Mark `number` as the revision serving `service`.
    pub fn set_current_revision(&self, service: &str, number: u32) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE services SET current_revision = ?2 WHERE name = ?1",
                params![service, number],
            )
            .map(drop)
        })
    }

    /// Open a rollout of `policy` (pinned with it, see [`PinnedPolicy`]);
    /// returns its id.
    pub fn start_rollout(
        &self,
        service: &str,
        from: Option<u32>,
        to: u32,
        policy: &PinnedPolicy,
    ) -> Result<i64> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO rollouts (service, from_revision, to_revision, policy, state, started_ms) VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
                params![service, from, to, policy.name, unix_ms() as i64],
            )?;
            let id = tx.last_insert_rowid();
            calls::pin(&tx, id, policy)?;
            tx.commit()?;
            Ok(id)
        })
    }

    /// Close a rollout with its outcome (`completed`, `rolled-back`, `failed`).
    pub fn end_rollout(&self, id: i64, state: &str, reason: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE rollouts SET state = ?2, reason = ?3, ended_ms = ?4 WHERE id = ?1",
                params![id, state, reason, unix_ms() as i64],
            )
            .map(drop)
        })
    }

    /// Mark an unfinished rollout `running` again: the agent resumes it.
    pub fn reopen_rollout(&self, id: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE rollouts SET state = 'running', reason = '', ended_ms = NULL WHERE id = ?1",
                [id],
            )
            .map(drop)
        })
    }

    /// Rollouts still `running` or `interrupted`, oldest first: after a
    /// restart, those the agent died or stopped during, to resume.
    pub fn unfinished_rollouts(&self) -> Result<Vec<RolloutRow>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT id, service, from_revision, to_revision, policy, state, reason, started_ms, ended_ms FROM rollouts WHERE state IN ('running', 'interrupted') ORDER BY id",
            )?;
            q.query_map([], rollout_row)?.collect()
        })
    }

    /// One rollout.
    pub fn rollout(&self, id: i64) -> Result<RolloutRow> {
        self.with(|c| {
            c.query_row(
                "SELECT id, service, from_revision, to_revision, policy, state, reason, started_ms, ended_ms FROM rollouts WHERE id = ?1",
                [id],
                rollout_row,
            )
            .optional()
        })?
        .ok_or_else(|| StoreError::NotFound(format!("no rollout {id}")))
    }

    /// Every rollout of `service`, oldest first.
    pub fn rollouts(&self, service: &str) -> Result<Vec<RolloutRow>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT id, service, from_revision, to_revision, policy, state, reason, started_ms, ended_ms FROM rollouts WHERE service = ?1 ORDER BY id",
            )?;
            q.query_map([service], rollout_row)?.collect()
        })
    }

    /// Append journal entries to a rollout, numbering them after the last.
    pub fn append_journal(&self, rollout: i64, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            let mut seq: i64 = tx.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM journal WHERE rollout = ?1",
                [rollout],
                |r| r.get(0),
            )?;
            {
                let mut insert = tx.prepare(
                    "INSERT INTO journal (rollout, seq, at_ms, kind, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in entries {
                    seq += 1;
                    insert.execute(params![rollout, seq, e.at_ms as i64, e.kind.label(), e.text])?;
                }
            }
            tx.commit()
        })
    }

    /// Journal entries of a rollout after position `after`.
    pub fn journal(&self, rollout: i64, after: i64) -> Result<Vec<JournalRow>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT seq, at_ms, kind, text FROM journal WHERE rollout = ?1 AND seq > ?2 ORDER BY seq",
            )?;
            q.query_map(params![rollout, after], |r| {
                let kind: String = r.get(2)?;
                Ok(JournalRow {
                    seq: r.get(0)?,
                    entry: Entry {
                        at_ms: r.get::<_, i64>(1)? as u64,
                        kind: crate::journal::Kind::from_label(&kind),
                        text: r.get(3)?,
                    },
                })
            })?
            .collect()
        })
    }

    /// The text of the last entry of `kind` in a rollout's journal.
    pub fn last_entry(&self, rollout: i64, kind: Kind) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row(
                "SELECT text FROM journal WHERE rollout = ?1 AND kind = ?2 ORDER BY seq DESC LIMIT 1",
                params![rollout, kind.label()],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Remember an instance the agent started.
    pub fn add_instance(&self, row: &InstanceRow) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO instances (id, service, revision, pid, start_ticks, port, started_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.id,
                    row.service,
                    row.revision,
                    row.pid,
                    row.start_ticks as i64,
                    row.port,
                    row.started_ms as i64
                ],
            )
            .map(drop)
        })
    }

    /// Forget an instance (stopped, or gone).
    pub fn remove_instance(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM instances WHERE id = ?1", [id])
                .map(drop)
        })
    }

    /// The instances of `service` the agent started, oldest first.
    pub fn instances(&self, service: &str) -> Result<Vec<InstanceRow>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT id, service, revision, pid, start_ticks, port, started_ms FROM instances WHERE service = ?1 ORDER BY started_ms, id",
            )?;
            q.query_map([service], |r| {
                Ok(InstanceRow {
                    id: r.get(0)?,
                    service: r.get(1)?,
                    revision: r.get(2)?,
                    pid: r.get(3)?,
                    start_ticks: r.get::<_, i64>(4)? as u64,
                    port: r.get(5)?,
                    started_ms: r.get::<_, i64>(6)? as u64,
                })
            })?
            .collect()
        })
    }
}

fn revision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Revision> {
    Ok(Revision {
        service: r.get(0)?,
        number: r.get(1)?,
        spec: r.get(2)?,
        cause: r.get(3)?,
        created_ms: r.get::<_, i64>(4)? as u64,
    })
}

fn rollout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RolloutRow> {
    Ok(RolloutRow {
        id: r.get(0)?,
        service: r.get(1)?,
        from_revision: r.get(2)?,
        to_revision: r.get(3)?,
        policy: r.get(4)?,
        state: r.get(5)?,
        reason: r.get(6)?,
        started_ms: r.get::<_, i64>(7)? as u64,
        ended_ms: r.get::<_, Option<i64>>(8)?.map(|v| v as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn revisions_are_numbered_per_service() {
        let (_dir, s) = store();
        assert_eq!(s.add_revision("web", "a", "first").unwrap(), 1);
        assert_eq!(s.add_revision("web", "b", "second").unwrap(), 2);
        assert_eq!(s.add_revision("api", "c", "first").unwrap(), 1);
        assert_eq!(s.revision("web", 2).unwrap().spec, "b");
        assert_eq!(s.services().unwrap(), ["api", "web"]);
        assert_eq!(s.current_revision("web").unwrap(), None);
        s.set_current_revision("web", 2).unwrap();
        assert_eq!(s.current_revision("web").unwrap(), Some(2));
        assert!(matches!(s.revision("web", 9), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn journal_is_numbered_and_append_only() {
        let (_dir, s) = store();
        s.add_revision("web", "a", "first").unwrap();
        let id = s
            .start_rollout("web", None, 1, &calls::tests::pinned())
            .unwrap();
        let entry = |t: &str| Entry {
            at_ms: 5,
            kind: Kind::Effect,
            text: t.into(),
        };
        s.append_journal(id, &[entry("one"), entry("two")]).unwrap();
        s.append_journal(id, &[entry("three")]).unwrap();
        assert_eq!(
            s.last_entry(id, Kind::Effect).unwrap().as_deref(),
            Some("three")
        );
        let rows = s.journal(id, 1).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].seq, rows[0].entry.text.as_str()), (2, "two"));
        assert_eq!(rows[1].entry.kind, Kind::Effect);
        let err = s.with(|c| c.execute("UPDATE journal SET text = 'x'", []));
        assert!(err.is_err());
        s.end_rollout(id, "completed", "").unwrap();
        assert_eq!(s.rollout(id).unwrap().state, "completed");
    }

    #[test]
    fn instances_are_remembered_until_removed() {
        let (_dir, s) = store();
        let row = InstanceRow {
            id: "web-r1-1".into(),
            service: "web".into(),
            revision: "r1".into(),
            pid: 42,
            start_ticks: 7,
            port: 4000,
            started_ms: 1,
        };
        s.add_instance(&row).unwrap();
        assert_eq!(s.instances("web").unwrap(), vec![row]);
        s.remove_instance("web-r1-1").unwrap();
        assert!(s.instances("web").unwrap().is_empty());
    }
}
