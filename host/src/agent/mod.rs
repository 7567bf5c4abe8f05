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
mod history;
mod instances;
mod manage;
mod metrics;
mod operator;
mod rollout;
mod runners;
mod service;
mod status;
mod undo;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::backend::docker;
use crate::executor::PolicyRuntime;
use crate::store::Store;
use service::Service;

pub use admission::{PolicyChoice, RunRequest, Started};
pub use error::{AgentError, Result};
pub use events::Events;
pub use heal::Healing;
pub use history::HistoryEntry;
pub use manage::{MAX_REPLICAS, Removed};
pub use operator::ControlAnswer;
pub use status::{RevisionTraffic, ServiceStatus};
pub use undo::UndoRequest;

/// The agent's state.
pub struct Agent {
    home: PathBuf,
    store: Arc<Store>,
    runtime: Arc<PolicyRuntime>,
    services: Mutex<HashMap<String, Arc<Service>>>,
    /// The Docker host, for services on the docker and swarm backends.
    docker: Arc<docker::Connection>,
    /// This agent, as its containers and Swarm services are labelled.
    owner: docker::Owner,
    /// Signalled whenever a journal entry is stored or a rollout ends.
    journal_changed: Arc<Notify>,
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
        runtime: PolicyRuntime,
    ) -> anyhow::Result<(Arc<Agent>, Vec<String>)> {
        std::fs::create_dir_all(home)?;
        let store = Arc::new(Store::open(&home.join("state.db"))?);
        let mut notes = Vec::new();
        let interrupted = store.fail_interrupted("the agent stopped during the rollout; the fleet was left as it was: check `rollout status` and `rollout undo` if needed")?;
        if interrupted > 0 {
            notes.push(format!(
                "{interrupted} rollout(s) were interrupted by the agent stopping; marked failed"
            ));
        }
        let agent = Arc::new(Agent {
            home: home.to_path_buf(),
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
        }
        Ok((agent, notes))
    }

    /// The state directory.
    pub fn home(&self) -> &Path {
        &self.home
    }
}
