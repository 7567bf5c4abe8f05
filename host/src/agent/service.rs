//! A service the agent holds in memory: its backend, its fleet (knowing
//! every recorded revision), the rollout in progress if any, and what its
//! fleet manager did. [`super::registry`] loads them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::healing::Healing;
use super::{AgentError, Result};
use crate::executor::operator::Inbox;
use crate::fleet::Fleet;
use crate::spec::{BackendKind, ServiceSpec};

/// A rollout in progress.
pub(super) struct Active {
    /// Its id in the store.
    pub id: i64,
    /// Where operator commands go.
    pub inbox: Inbox,
    /// Whether the last command was a pause.
    pub paused: bool,
}

/// One service the agent runs.
pub(super) struct Service {
    /// What runs its instances; fixed when it is first deployed.
    pub backend: BackendKind,
    /// Its instances.
    pub fleet: Arc<Fleet>,
    /// Its rollout in progress.
    pub active: Mutex<Option<Active>>,
    /// What its fleet manager did and holds back ([`heal`]).
    pub healing: Mutex<Healing>,
    /// Set by `rollout rm` (and the demo's cleanup, which stops every
    /// instance): its fleet manager stops for good.
    pub(super) removed: AtomicBool,
    /// Held by whoever changes the fleet on the service's behalf: its
    /// fleet manager for one pass, a rollout from its first step to its
    /// end, `rollout rm`. A rollout admitted while the fleet manager starts
    /// a replacement begins once it is started, and sees it.
    pub busy: tokio::sync::Mutex<()>,
}

impl Service {
    /// Whether `rollout rm` removed it.
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// Mark it removed: its fleet manager stops at its next pass.
    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::SeqCst);
    }
}

/// A spec the agent stored itself.
pub(super) fn parse_stored(text: &str) -> Result<ServiceSpec> {
    ServiceSpec::parse(text, "stored revision", Path::new("/")).map_err(AgentError::StoredSpec)
}
