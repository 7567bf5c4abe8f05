//! What a rollout needs to survive the agent: the policy component it runs
//! (pinned by digest, with the WIT version and params), and the log of
//! every host call the policy made, in order, with a digest of the
//! arguments and the result. A restarted agent replays a fresh instance of
//! the same component against that log to bring it back to where it was.
//!
//! An effect's call is written before the effect, without a result (its
//! intent), and again with the result after it; a call without a result is
//! one the agent died during.

use rusqlite::{OptionalExtension, Transaction, params};

use super::{Result, Store};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS components (
    digest TEXT PRIMARY KEY,
    bytes BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_policies (
    rollout INTEGER PRIMARY KEY REFERENCES rollouts(id),
    name TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES components(digest),
    wit TEXT NOT NULL,
    params TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    rollout INTEGER NOT NULL REFERENCES rollouts(id),
    seq INTEGER NOT NULL,
    func TEXT NOT NULL,
    digest TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    result TEXT,
    PRIMARY KEY (rollout, seq)
);
CREATE TABLE IF NOT EXISTS operator_commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rollout INTEGER NOT NULL REFERENCES rollouts(id),
    action TEXT NOT NULL,
    issued_ms INTEGER NOT NULL
);
";

/// One host call of a rollout's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Position in the rollout's calls, from 0.
    pub seq: u64,
    /// `interface.function`, as in the WIT (`fleet.start`).
    pub func: String,
    /// Digest of the arguments.
    pub digest: String,
    /// Rollout time of the call, in ms.
    pub at_ms: u64,
    /// The result as JSON; `None` while the effect is in flight.
    pub result: Option<String>,
}

/// The policy a rollout runs, as pinned when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedPolicy {
    /// Name for messages (built-in name or path).
    pub name: String,
    /// SHA-256 of the component, in hex.
    pub digest: String,
    /// The `rollout:policy` version it was run with.
    pub wit: String,
    /// The params it was given.
    pub params: Vec<(String, String)>,
    /// The component.
    pub bytes: Vec<u8>,
}

/// Pin `policy` to `rollout` in `tx`: its component (stored once per
/// digest), WIT version and params.
pub(super) fn pin(tx: &Transaction, rollout: i64, policy: &PinnedPolicy) -> rusqlite::Result<()> {
    let params = serde_json::to_string(&policy.params).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT OR IGNORE INTO components (digest, bytes) VALUES (?1, ?2)",
        params![policy.digest, policy.bytes],
    )?;
    tx.execute(
        "INSERT INTO rollout_policies (rollout, name, digest, wit, params) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![rollout, policy.name, policy.digest, policy.wit, params],
    )?;
    Ok(())
}

impl Store {
    /// The policy pinned for `rollout`, if any.
    pub fn pinned_policy(&self, rollout: i64) -> Result<Option<PinnedPolicy>> {
        self.with(|c| {
            c.query_row(
                "SELECT p.name, p.digest, p.wit, p.params, c.bytes FROM rollout_policies p \
                 JOIN components c ON c.digest = p.digest WHERE p.rollout = ?1",
                [rollout],
                |r| {
                    let params: String = r.get(3)?;
                    Ok(PinnedPolicy {
                        name: r.get(0)?,
                        digest: r.get(1)?,
                        wit: r.get(2)?,
                        params: serde_json::from_str(&params).unwrap_or_default(),
                        bytes: r.get(4)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Write call records of `rollout` (a record with a result replaces its
    /// intent), in one transaction.
    pub fn write_calls(&self, rollout: i64, records: &[CallRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.with(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO calls (rollout, seq, func, digest, at_ms, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for r in records {
                    insert.execute(params![
                        rollout,
                        r.seq as i64,
                        r.func,
                        r.digest,
                        r.at_ms as i64,
                        r.result
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// Every call record of `rollout`, in order.
    pub fn calls(&self, rollout: i64) -> Result<Vec<CallRecord>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT seq, func, digest, at_ms, result FROM calls WHERE rollout = ?1 ORDER BY seq",
            )?;
            q.query_map([rollout], |r| {
                Ok(CallRecord {
                    seq: r.get::<_, i64>(0)? as u64,
                    func: r.get(1)?,
                    digest: r.get(2)?,
                    at_ms: r.get::<_, i64>(3)? as u64,
                    result: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    /// Record an operator command (`pause`, `resume`, `abort`) given to
    /// `rollout`, before it is sent to the policy, so a restarted agent
    /// still holds the rollout as the operator asked.
    pub fn add_command(&self, rollout: i64, action: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO operator_commands (rollout, action, issued_ms) VALUES (?1, ?2, ?3)",
                params![rollout, action, super::unix_ms() as i64],
            )
            .map(drop)
        })
    }

    /// The operator commands given to `rollout`, in the order given.
    pub fn commands(&self, rollout: i64) -> Result<Vec<String>> {
        self.with(|c| {
            let mut q =
                c.prepare("SELECT action FROM operator_commands WHERE rollout = ?1 ORDER BY id")?;
            q.query_map([rollout], |r| r.get(0))?.collect()
        })
    }

    /// Forget the calls of a rollout that ended: the journal keeps what
    /// happened; the calls were only for resuming it.
    pub fn forget_calls(&self, rollout: i64) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM calls WHERE rollout = ?1", [rollout])
                .map(drop)
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A policy to pin.
    pub(in crate::store) fn pinned() -> PinnedPolicy {
        PinnedPolicy {
            name: "rolling".into(),
            digest: "abc".into(),
            wit: "0.1.0".into(),
            params: vec![("batches".into(), "2".into())],
            bytes: b"\0asm".to_vec(),
        }
    }

    #[test]
    fn calls_and_the_pinned_policy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store.add_revision("web", "x", "first").unwrap();
        let id = store.start_rollout("web", None, 1, &pinned()).unwrap();
        assert_eq!(store.pinned_policy(id).unwrap(), Some(pinned()));
        // Components are stored once.
        let again = store.start_rollout("web", Some(1), 1, &pinned()).unwrap();
        assert_eq!(store.pinned_policy(again).unwrap(), Some(pinned()));
        let intent = CallRecord {
            seq: 1,
            func: "fleet.start".into(),
            digest: "d".into(),
            at_ms: 5,
            result: None,
        };
        let first = CallRecord {
            seq: 0,
            result: Some("[]".into()),
            func: "fleet.list".into(),
            ..intent.clone()
        };
        store
            .write_calls(id, &[first.clone(), intent.clone()])
            .unwrap();
        assert_eq!(
            store.calls(id).unwrap(),
            vec![first.clone(), intent.clone()]
        );
        let done = CallRecord {
            result: Some("{}".into()),
            ..intent
        };
        store.write_calls(id, std::slice::from_ref(&done)).unwrap();
        assert_eq!(store.calls(id).unwrap(), vec![first, done]);
        store.forget_calls(id).unwrap();
        assert!(store.calls(id).unwrap().is_empty());
    }

    #[test]
    fn operator_commands_are_kept_in_order_per_rollout() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        store.add_revision("web", "x", "first").unwrap();
        let id = store.start_rollout("web", None, 1, &pinned()).unwrap();
        let other = store.start_rollout("web", None, 1, &pinned()).unwrap();
        for action in ["pause", "resume", "pause"] {
            store.add_command(id, action).unwrap();
        }
        store.add_command(other, "abort").unwrap();
        assert_eq!(store.commands(id).unwrap(), ["pause", "resume", "pause"]);
        assert_eq!(store.commands(other).unwrap(), ["abort"]);
    }
}
