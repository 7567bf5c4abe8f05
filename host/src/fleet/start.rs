//! Launching instances: a loopback port and the environment each is told,
//! the runner's start, and the record in the store that lets a restarted
//! agent find it again.

use std::sync::Arc;

use futures_util::future::join_all;

use super::table::Tracked;
use super::{Fleet, failed};
use crate::backend::{BackendError, Launch, StartRequest};
use crate::model::Instance;
use crate::store::{InstanceRow, unix_ms};

/// A loopback port free right now (the instance binds it moments later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What instance `id` of `service` is told on top of its launch's `env`:
/// `PORT`, `ROLLOUT_SERVICE`, `ROLLOUT_REVISION`, `ROLLOUT_INSTANCE`.
pub(super) fn instance_env(
    service: &str,
    launch: &Launch,
    id: &str,
    port: u16,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = launch
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("PORT".into(), port.to_string()));
    env.push(("ROLLOUT_SERVICE".into(), service.to_string()));
    env.push(("ROLLOUT_REVISION".into(), launch.revision.clone()));
    env.push(("ROLLOUT_INSTANCE".into(), id.to_string()));
    env
}

impl Fleet {
    /// Start `count` instances of `revision`, side by side. Those that
    /// started stay (recorded) even when another failed to.
    pub async fn start(&self, revision: &str, count: u32) -> Result<Vec<Instance>, BackendError> {
        let (launch, first) = {
            let mut inner = self.lock();
            let launch = inner
                .launches
                .get(revision)
                .cloned()
                .ok_or_else(|| BackendError::UnknownRevision(revision.to_string()))?;
            let first = inner.next_index + 1;
            inner.next_index += u64::from(count);
            (launch, first)
        };
        let starts = (first..first + u64::from(count))
            .map(|n| self.start_one(&launch, format!("{}-{revision}-{n}", self.service)));
        let mut started = Vec::new();
        let mut error = None;
        for result in join_all(starts).await {
            match result {
                Ok(instance) => started.push(instance),
                Err(e) => error = Some(e),
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    /// Start instance `id` of `launch` and record it.
    async fn start_one(&self, launch: &Arc<Launch>, id: String) -> Result<Instance, BackendError> {
        let cannot = |e: std::io::Error| BackendError::Failed(format!("cannot start {id}: {e}"));
        let port = free_port().map_err(cannot)?;
        let log = self.log_path(&id);
        let env = instance_env(&self.service, launch, &id, port);
        // The intent first (no process yet: pid 0): an agent killed
        // between the spawn and its record leaves a row naming the
        // instance, which a restarted agent forgets, and a process that
        // carries the fleet's marks but no recorded identity, which its
        // sweep stops. Without the row nothing is started.
        let intent = InstanceRow {
            id: id.clone(),
            service: self.service.clone(),
            revision: launch.revision.clone(),
            pid: 0,
            start_ticks: 0,
            port,
            started_ms: unix_ms(),
        };
        self.store
            .add_instance(&intent)
            .map_err(|e| failed(format!("{id} not started: cannot record it: {e}")))?;
        let started = self
            .runner
            .start(StartRequest {
                service: &self.service,
                id: &id,
                launch,
                env: &env,
                log: &log,
            })
            .await;
        let run = match started {
            Ok(run) => run,
            Err(e) => {
                let _ = self.store.remove_instance(&id);
                return Err(e);
            }
        };
        let (pid, start_ticks) = run.identity();
        let row = InstanceRow {
            pid,
            start_ticks,
            ..intent
        };
        // An instance nobody remembers would outlive the agent untracked.
        if let Err(e) = self.store.add_instance(&row) {
            run.kill().await;
            run.remove().await;
            return Err(failed(format!("{id} stopped: cannot record it: {e}")));
        }
        let tracked = Tracked::new(row, env, launch.clone(), run, log);
        let instance = tracked.instance(unix_ms());
        self.lock().instances.insert(id, tracked);
        Ok(instance)
    }
}
