//! Commands over the instances of every service: their logs, and stopping
//! them all (the end of `rollout demo` and of benchmarks).

use super::{Agent, AgentError, Result};
use crate::backend::BackendError;

impl Agent {
    /// Stop every instance of every service; how many were stopped.
    pub async fn stop_all(&self) -> Result<usize> {
        let mut stopped = 0;
        for name in self.store.services()? {
            let service = self.service(&name)?;
            // Its fleet manager replaces nothing from now on.
            service.mark_removed();
            let _busy = service.busy.lock().await;
            let ids: Vec<_> = service.fleet.list().into_iter().map(|i| i.id).collect();
            service.fleet.stop(&ids).await.map_err(AgentError::Fleet)?;
            stopped += ids.len();
        }
        Ok(stopped)
    }

    /// Lines an instance logged (running or stopped).
    pub fn logs(&self, instance: &str, lines: u32) -> Result<Vec<String>> {
        for name in self.store.services()? {
            match self.service(&name)?.fleet.logs(instance, lines) {
                Err(BackendError::UnknownInstance(_)) => continue,
                other => return other.map_err(AgentError::Fleet),
            }
        }
        Err(AgentError::NotFound(format!(
            "no instance {instance} (see `rollout ls`)"
        )))
    }
}
