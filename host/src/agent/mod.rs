//! The agent: owns the services, their fleets and their rollouts.
//!
//! A rollout request is checked in full before anything changes
//! ([`admission`]: spec, policy compiled and version-checked, backend, front
//! door, no other rollout of the service running); only then is the
//! revision recorded and the policy started in its own task ([`rollout`]),
//! journaling every step to the store. The agent speaks in its own types;
//! the control API ([`crate::api`]) maps them to its wire format.

mod admission;
mod error;
mod events;
mod front_door;
mod heal;
mod healing;
mod history;
mod instances;
mod manage;
mod metrics;
mod operator;
mod registry;
mod resume;
mod rollout;
mod runners;
mod service;
mod status;
mod undo;
mod unknown;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::backend::docker;
use crate::door::Doors;
use crate::executor::DurableRuntime;
use crate::store::Store;
use service::Service;

pub use admission::{PolicyChoice, RunRequest, Started};
pub use error::{AgentError, Result};
pub use events::Events;
pub use healing::Healing;
pub use history::HistoryEntry;
pub use manage::{MAX_REPLICAS, Removed};
pub use operator::ControlAnswer;
pub use status::{RevisionTraffic, ServiceStatus};
pub use undo::UndoRequest;
pub use unknown::{Unknown, refusal};

/// The agent's state.
pub struct Agent {
    home: PathBuf,
    /// Where its services' front door processes come from.
    doors: Doors,
    store: Arc<Store>,
    runtime: Arc<DurableRuntime>,
    services: Mutex<HashMap<String, Arc<Service>>>,
    /// The Docker host, for services on the docker and swarm backends.
    docker: Arc<docker::Connection>,
    /// This agent, as its containers and Swarm services are labelled.
    owner: docker::Owner,
    /// Signalled whenever a journal entry is stored or a rollout ends.
    journal_changed: Arc<Notify>,
    /// True once the agent is stopping (SIGTERM): rollouts stop at their
    /// next host call and are left `interrupted`.
    stopping: tokio::sync::watch::Sender<bool>,
    /// How rollouts ended whose outcome the store could not record (disk
    /// full, say): answered from here, so a client following one is told.
    unrecorded: Mutex<HashMap<i64, (String, String)>>,
}

/// The revision id policies and instances see for revision `n`.
pub fn revision_id(n: u32) -> String {
    format!("r{n}")
}

impl Agent {
    /// Open the agent's state under `home` and re-adopt the instances an
    /// earlier agent left running. Returns the agent and what it found.
    pub async fn open(
        home: &Path,
        runtime: DurableRuntime,
    ) -> anyhow::Result<(Arc<Agent>, Vec<String>)> {
        std::fs::create_dir_all(home)?;
        let path = home.join("state.db");
        let store = Arc::new(Store::open(&path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the agent's state {}: {e}. Instances it started may still be running. \
                 Move the damaged file aside (`mv {0} {0}.damaged`, with its -wal and -shm files) \
                 and put a backup in its place, or start without it: the agent then refuses to \
                 start over the instances still running and names them",
                path.display()
            )
        })?);
        let mut notes = Vec::new();
        let agent = Arc::new(Agent {
            home: home.to_path_buf(),
            doors: Doors::of_home(home)
                .map_err(|e| anyhow::anyhow!("cannot tell which program runs the agent: {e}"))?,
            store,
            runtime: Arc::new(runtime),
            services: Mutex::new(HashMap::new()),
            docker: Arc::default(),
            owner: docker::Owner::of_home(home).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read or write the agent's id in {}: {e}",
                    home.join("agent.id").display()
                )
            })?,
            journal_changed: Arc::new(Notify::new()),
            stopping: tokio::sync::watch::Sender::new(false),
            unrecorded: Mutex::new(HashMap::new()),
        });
        for name in agent.store.services()? {
            let service = agent.service(&name)?;
            let found = service
                .fleet
                .adopt()
                .await
                .map_err(|e| anyhow::anyhow!("re-adopting {name}: {e}"))?;
            if !found.adopted.is_empty() || !found.gone.is_empty() || !found.swept.is_empty() {
                let mut note = format!(
                    "{name}: re-adopted {} running instance(s)",
                    found.adopted.len()
                );
                if !found.gone.is_empty() {
                    note.push_str(&format!(
                        ", {} had exited and were forgotten",
                        found.gone.len()
                    ));
                }
                if !found.swept.is_empty() {
                    note.push_str(&format!(
                        ", removed {} nobody had recorded ({})",
                        found.swept.len(),
                        found.swept.join(", ")
                    ));
                }
                notes.push(note);
            }
            // At once, before its fleet manager's next pass could take the
            // fleet of a rollout cut short for one to heal.
            notes.extend(agent.resume_rollouts(&name)?);
        }
        Ok((agent, notes))
    }

    /// Stop at a safe point (SIGTERM): every running rollout stops at its
    /// next host call, once the effect in flight has finished, and is left
    /// `interrupted`. Waits up to `within` for them; returns how many
    /// rollouts were still running when it gave up.
    pub async fn shutdown(&self, within: std::time::Duration) -> usize {
        self.stopping.send_replace(true);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let changed = self.journal_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let services: Vec<_> = (self.services.lock())
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .cloned()
                .collect();
            let running = services
                .iter()
                .filter(|s| s.active.lock().unwrap_or_else(|p| p.into_inner()).is_some())
                .count();
            if running == 0 {
                return 0;
            }
            let poll = tokio::time::Instant::now() + std::time::Duration::from_millis(100);
            if tokio::time::timeout_at(poll.min(deadline), changed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return running;
            }
        }
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }
}
