//! After an agent restart: take back the recorded instances that still
//! run, forget those that do not, and sweep the ones nobody recorded.

use super::start::instance_env;
use super::table::Tracked;
use super::{Fleet, failed};
use crate::backend::BackendError;
use crate::model::InstanceId;

/// What [`Fleet::adopt`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    /// Recorded instances still running, taken back.
    pub adopted: Vec<InstanceId>,
    /// Recorded instances no longer running, forgotten.
    pub gone: Vec<InstanceId>,
    /// Running instances nobody recorded (an agent died between starting
    /// and recording them), removed.
    pub swept: Vec<InstanceId>,
}

impl Fleet {
    /// Take back the instances an earlier agent started, and remove those
    /// the runner finds that nobody recorded. Revisions must be registered
    /// first: a recorded instance of an unknown revision is forgotten.
    pub async fn adopt(&self) -> Result<Adoption, BackendError> {
        let rows = self.store.instances(&self.service).map_err(failed)?;
        let (mut adopted, mut gone) = (Vec::new(), Vec::new());
        for row in rows {
            let index = row.id.rsplit('-').next().and_then(|n| n.parse().ok());
            let launch = {
                let mut inner = self.lock();
                inner.next_index = inner.next_index.max(index.unwrap_or(0));
                inner.launches.get(&row.revision).cloned()
            };
            let log = self.log_path(&row.id);
            let run = match &launch {
                Some(_) => self.runner.adopt(&row, &log).await?,
                None => None,
            };
            let (Some(launch), Some(run)) = (launch, run) else {
                self.store.remove_instance(&row.id).map_err(failed)?;
                gone.push(row.id);
                continue;
            };
            adopted.push(row.id.clone());
            let env = instance_env(&self.service, &launch, &row.id, row.port);
            let mut tracked = Tracked::new(row, env, launch, run, log);
            tracked.unprobed = true;
            self.lock()
                .instances
                .insert(tracked.row.id.clone(), tracked);
        }
        let swept = self.runner.sweep(&self.service, &adopted, &self.logs).await;
        self.adopted
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // The front door drops what is gone (the rest once probed).
        self.publish();
        Ok(Adoption {
            adopted,
            gone,
            swept,
        })
    }
}
