//! The fleet manager: the live instances of one service on real machines,
//! started and stopped by a [`Runner`] (child processes, Docker containers
//! or Swarm tasks), and everything the runners share above them.
//!
//! Each instance gets `$PORT` (a free loopback port), `$ROLLOUT_SERVICE`,
//! `$ROLLOUT_REVISION` and `$ROLLOUT_INSTANCE` (`start`); its output lands
//! in a per-instance log file, capped by rotation (`logs`). A monitor task
//! probes instances and notices exits (`watch`); every state change is an
//! observation the session journals (`table`), and wakes any `wait-ready`.
//! Stopping drains the instance through the front door (`doors`), asks it
//! to stop, and forces it after the grace period (`stop`).
//!
//! Instances outlive the agent: each is recorded in the store, and a
//! restarted agent asks the runner to re-adopt those that still run and to
//! sweep those nobody recorded (`adopt`), so nothing is started twice or
//! left behind. A rollout sees the fleet as a [`Backend`](crate::backend::Backend)
//! through [`LiveBackend`].

mod adopt;
mod backend;
mod doors;
mod logs;
mod probe;
mod start;
mod stop;
mod table;
mod watch;

pub use adopt::Adoption;
pub use backend::LiveBackend;
pub use start::free_port;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use self::table::Table;
use crate::backend::{BackendError, Launch, Runner};
use crate::door::FrontDoor;
use crate::model::Instance;
use crate::store::{Store, unix_ms};

/// The instances of one service, shared by the agent and every rollout.
pub struct Fleet {
    service: String,
    logs: PathBuf,
    store: Arc<Store>,
    runner: Arc<dyn Runner>,
    inner: Mutex<Table>,
    changed: Arc<Notify>,
    front_door: Mutex<Option<Arc<FrontDoor>>>,
    preview: Mutex<Option<Arc<FrontDoor>>>,
    /// [`Fleet::adopt`] has run: the instances an earlier agent left are known.
    adopted: std::sync::atomic::AtomicBool,
}

impl Fleet {
    /// The fleet of `service`, run by `runner`, logging under `dir`,
    /// remembering instances in `store`; its monitor runs until the fleet is
    /// dropped.
    pub fn new(
        service: &str,
        runner: Arc<dyn Runner>,
        dir: PathBuf,
        store: Arc<Store>,
    ) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(&dir)?;
        let none_recorded = store.instances(service).is_ok_and(|rows| rows.is_empty());
        let fleet = Arc::new(Fleet {
            service: service.to_string(),
            logs: dir,
            store,
            runner,
            inner: Mutex::new(Table::default()),
            changed: Arc::new(Notify::new()),
            front_door: Mutex::new(None),
            preview: Mutex::new(None),
            adopted: none_recorded.into(),
        });
        tokio::spawn(watch::monitor(Arc::downgrade(&fleet)));
        Ok(fleet)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Know how to run `launch.revision` (replacing an earlier definition).
    pub fn register(&self, launch: Launch) {
        let mut inner = self.lock();
        inner
            .launches
            .insert(launch.revision.clone(), Arc::new(launch));
    }

    /// Every instance not stopped.
    pub fn list(&self) -> Vec<Instance> {
        let now = unix_ms();
        let inner = self.lock();
        inner.instances.values().map(|p| p.instance(now)).collect()
    }

    /// Why instance `id` is not healthy, when it is not and the fleet knows.
    pub fn reason(&self, id: &str) -> Option<String> {
        self.lock().instances.get(id).and_then(|p| p.reason.clone())
    }

    /// Whether the fleet knows every instance it has: [`Fleet::adopt`] ran,
    /// or the store recorded none to adopt when the fleet was made.
    pub fn settled(&self) -> bool {
        self.adopted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait until every instance adopted from an earlier agent has had
    /// its first probe, or `limit` has passed: a rollout resumed after a
    /// restart then sees the instances that were ready as ready, not as
    /// starting again. False if the limit passed first.
    pub async fn probed(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.lock().probed_all() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// Where instance `id` writes its output.
    fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// The fleet changed on its own: tell the front door, wake waiters.
    fn on_change(&self) {
        self.publish();
        self.changed.notify_one();
    }
}

/// A failure of the store or the log files, as the policy sees it.
fn failed(e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(e.to_string())
}

#[cfg(test)]
mod tests;
