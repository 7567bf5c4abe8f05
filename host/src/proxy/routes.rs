//! The routing a client connection follows: the current [`Table`]
//! snapshot and its version, shared by the proxy and its connections.
//!
//! The proxy swaps in a new table when the fleet or the weights change and
//! bumps the version. A connection keeps the table it last used and takes
//! the new one only when the version moved: a request reads one shared
//! word, no lock, no reference count. A connection holds the routes, not
//! the proxy: an idle connection does not keep a closed service's proxy
//! alive, it sees it gone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::table::Table;

/// The current table, its version, and whether the proxy is gone.
#[derive(Default)]
pub(super) struct Routes {
    table: RwLock<Arc<Table>>,
    /// Bumped after each new table.
    version: AtomicU64,
    /// The proxy was dropped.
    gone: AtomicBool,
}

impl Routes {
    /// The current table: `cached` (as of its version) if it still is,
    /// else the new one. Costs one load of a word written only when the
    /// table changes.
    pub(super) fn current(&self, cached: Option<(u64, Arc<Table>)>) -> (u64, Arc<Table>) {
        let version = self.version.load(Ordering::Acquire);
        match cached {
            Some((seen, table)) if seen == version => (seen, table),
            _ => {
                let table = self.table.read().unwrap_or_else(|p| p.into_inner());
                (version, table.clone())
            }
        }
    }

    /// Make `table` the current one.
    pub(super) fn publish(&self, table: Table) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Whether the proxy is gone.
    pub(super) fn gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// The proxy is gone: its connections answer no more requests.
    pub(super) fn leave(&self) {
        self.gone.store(true, Ordering::Relaxed);
    }
}
