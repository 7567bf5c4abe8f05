//! Stopping instances: drain each through the front door, ask it to stop,
//! force it after the grace period, then forget it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use super::logs::{KEPT_LOGS, prune_logs};
use super::{Fleet, failed};
use crate::backend::{BackendError, Running};
use crate::model::{InstanceId, InstanceState};

/// How often a stop checks whether its instances are gone.
const STOP_POLL: Duration = Duration::from_millis(1);
/// How often an instance stopped before it was ever ready is sent SIGTERM
/// again while it runs. A process may not handle SIGTERM yet so early,
/// and a container's init then never sees it (the kernel drops a signal
/// sent to a PID namespace's init that has no handler for it), which
/// would hold the stop for the whole grace period; an instance that never
/// served loses nothing to a second signal.
const RESIGNAL_UNREADY: Duration = Duration::from_millis(250);
/// How long a stop waits after SIGKILL before giving up on an instance.
const KILL_WAIT: Duration = Duration::from_secs(2);

impl Fleet {
    /// Drain each instance through the front door, ask it to stop, force it
    /// after the grace period, and forget it once gone.
    pub async fn stop(&self, ids: &[InstanceId]) -> Result<(), BackendError> {
        let mut grace = Duration::ZERO;
        let mut live = Vec::new();
        let mut unready = Vec::new();
        let mut all = Vec::new();
        {
            let mut inner = self.lock();
            for id in ids {
                inner.get(id)?;
            }
            for id in ids {
                let p = inner.get(id)?;
                grace = grace.max(Duration::from_millis(p.launch.stop_grace_ms));
                all.push(p.run.clone());
                if p.state != InstanceState::Failed {
                    p.state = InstanceState::Draining;
                    live.push(p.run.clone());
                    if !p.was_ready {
                        unready.push(p.run.clone());
                    }
                }
            }
        }
        // No new requests, and those in flight finish, before the signal;
        // the grace period after it is the instance's own.
        for door in self.doors() {
            door.drain(ids, grace).await;
        }
        let give_up =
            grace + KILL_WAIT + all.iter().map(|r| r.stop_delay()).max().unwrap_or_default();
        let started = Instant::now();
        join_all(live.iter().map(|r| r.terminate())).await;
        let mut killed = false;
        let mut signalled = started;
        loop {
            let running: Vec<&Arc<dyn Running>> =
                all.iter().filter(|r| r.exited().is_none()).collect();
            if running.is_empty() {
                break;
            }
            let waited = started.elapsed();
            if !killed && waited >= grace {
                join_all(running.iter().map(|r| r.kill())).await;
                killed = true;
            } else if !killed && signalled.elapsed() >= RESIGNAL_UNREADY {
                signalled = Instant::now();
                let unready = unready.iter().filter(|r| r.exited().is_none());
                join_all(unready.map(|r| r.terminate())).await;
            } else if waited >= give_up {
                return Err(BackendError::Failed(format!(
                    "{} instance(s) still running after a forced stop",
                    running.len()
                )));
            }
            tokio::time::sleep(STOP_POLL).await;
        }
        join_all(all.iter().map(|r| r.remove())).await;
        let running: Vec<PathBuf> = {
            let mut inner = self.lock();
            for id in ids {
                inner.instances.remove(id);
                self.store.remove_instance(id).map_err(failed)?;
            }
            inner.instances.keys().map(|id| self.log_path(id)).collect()
        };
        prune_logs(&self.logs, &running, KEPT_LOGS);
        Ok(())
    }
}
