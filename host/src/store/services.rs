//! What the store keeps of a service outside its rollouts: the replicas an
//! operator scaled it to (`rollout scale`), the events of its fleet manager
//! (instances replaced, scaled, the service removed), and its removal
//! (`rollout rm` keeps the history; `--purge` drops every row).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::{Result, Store, unix_ms};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scale (
    service TEXT PRIMARY KEY,
    replicas INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS service_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    instance TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS service_events_append_only BEFORE UPDATE ON service_events
BEGIN SELECT RAISE(ABORT, 'service events are append-only'); END;
CREATE TABLE IF NOT EXISTS removed (
    service TEXT PRIMARY KEY,
    removed_ms INTEGER NOT NULL
);
";

/// One event of a service's fleet manager, outside rollouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// `replace`, `backoff`, `scale`, `remove`.
    pub kind: String,
    /// The instance it is about, if one.
    pub instance: String,
    /// What happened, in words.
    pub text: String,
}

impl Store {
    /// The replicas `service` was scaled to since its last revision, if it was.
    pub fn scale(&self, service: &str) -> Result<Option<u32>> {
        self.with(|c| {
            c.query_row(
                "SELECT replicas FROM scale WHERE service = ?1",
                [service],
                |r| r.get(0),
            )
            .optional()
        })
    }

    /// Scale `service` to `replicas` (`None`: back to its spec's).
    pub fn set_scale(&self, service: &str, replicas: Option<u32>) -> Result<()> {
        self.with(|c| {
            match replicas {
                Some(n) => c.execute(
                    "INSERT OR REPLACE INTO scale (service, replicas) VALUES (?1, ?2)",
                    params![service, n],
                ),
                None => c.execute("DELETE FROM scale WHERE service = ?1", [service]),
            }
            .map(drop)
        })
    }

    /// Record an event of `service`'s fleet manager.
    pub fn add_service_event(
        &self,
        service: &str,
        kind: &str,
        instance: &str,
        text: &str,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO service_events (service, at_ms, kind, instance, text) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![service, unix_ms() as i64, kind, instance, text],
            )
            .map(drop)
        })
    }

    /// The events of `service`'s fleet manager, oldest first.
    pub fn service_events(&self, service: &str) -> Result<Vec<ServiceEvent>> {
        self.with(|c| {
            let mut q = c.prepare(
                "SELECT at_ms, kind, instance, text FROM service_events WHERE service = ?1 ORDER BY id",
            )?;
            q.query_map([service], |r| {
                Ok(ServiceEvent {
                    at_ms: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    instance: r.get(2)?,
                    text: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    /// How many events of `kind` `service` has.
    pub fn count_service_events(&self, service: &str, kind: &str) -> Result<u64> {
        self.with(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM service_events WHERE service = ?1 AND kind = ?2",
                params![service, kind],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
        })
    }

    /// Whether `service` was removed (`rollout rm`) and not deployed since.
    pub fn removed(&self, service: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM removed WHERE service = ?1",
                [service],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// `rollout rm`: `service` no longer serves any revision nor is listed;
    /// its revisions, rollouts and events stay for `rollout history`.
    pub fn remove_service(&self, service: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE services SET current_revision = NULL WHERE name = ?1",
                [service],
            )?;
            tx.execute("DELETE FROM scale WHERE service = ?1", [service])?;
            tx.execute(
                "INSERT OR REPLACE INTO removed (service, removed_ms) VALUES (?1, ?2)",
                params![service, unix_ms() as i64],
            )?;
            tx.commit()
        })
    }

    /// A removed service is deployed again: it is listed again.
    pub fn unremove_service(&self, service: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM removed WHERE service = ?1", [service])
                .map(drop)
        })
    }

    /// `rollout rm --purge`: every row of `service`, history included.
    pub fn purge_service(&self, service: &str) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for of_rollouts in ["journal", "calls", "rollout_policies"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {of_rollouts} WHERE rollout IN (SELECT id FROM rollouts WHERE service = ?1)"
                    ),
                    [service],
                )?;
            }
            for table in [
                "DELETE FROM rollouts WHERE service = ?1",
                "DELETE FROM revisions WHERE service = ?1",
                "DELETE FROM instances WHERE service = ?1",
                "DELETE FROM scale WHERE service = ?1",
                "DELETE FROM service_events WHERE service = ?1",
                "DELETE FROM removed WHERE service = ?1",
                "DELETE FROM services WHERE name = ?1",
            ] {
                tx.execute(table, [service])?;
            }
            // Components no rollout pins any more.
            tx.execute(
                "DELETE FROM components WHERE digest NOT IN (SELECT digest FROM rollout_policies)",
                [],
            )?;
            tx.commit()
        })
    }

    /// Names of every service ever deployed and not purged, removed ones
    /// included (their history stays), sorted.
    pub fn known_services(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut q = c.prepare("SELECT name FROM services ORDER BY name")?;
            q.query_map([], |r| r.get(0))?.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;

    #[test]
    fn a_removed_service_is_not_listed_until_deployed_again_and_a_purge_forgets_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.db")).unwrap();
        s.add_revision("web", "a", "first").unwrap();
        s.set_current_revision("web", 1).unwrap();
        s.set_scale("web", Some(2)).unwrap();
        s.add_service_event("web", "replace", "web-r1-1", "exited")
            .unwrap();
        assert_eq!(s.scale("web").unwrap(), Some(2));
        s.remove_service("web").unwrap();
        assert!(s.services().unwrap().is_empty());
        assert_eq!(s.known_services().unwrap(), ["web"]);
        assert_eq!(s.current_revision("web").unwrap(), None);
        assert_eq!(s.scale("web").unwrap(), None);
        assert_eq!(s.count_service_events("web", "replace").unwrap(), 1);
        s.unremove_service("web").unwrap();
        assert_eq!(s.services().unwrap(), ["web"]);
        let id = s
            .start_rollout("web", None, 1, &crate::store::calls::tests::pinned())
            .unwrap();
        s.end_rollout(id, "completed", "").unwrap();
        s.purge_service("web").unwrap();
        assert!(s.known_services().unwrap().is_empty());
        assert!(s.service_events("web").unwrap().is_empty());
        assert!(s.revisions("web").unwrap().is_empty());
    }
}
