//! The `process` backend: instances are child processes of the agent.
//!
//! Each instance runs its revision's command in its own process group, with
//! stdout and stderr appended to its log file. Stopping sends SIGTERM to the
//! group, then SIGKILL after the grace period. The store keeps each
//! instance's pid and the process's start time, so a restarted agent
//! re-adopts exactly the processes it started (a reused pid has another
//! start time).

pub(crate) mod os;
mod preflight;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::BackendError;
use super::exit;
use super::runner::{Launch, Runner, Running, StartRequest};
use crate::model::InstanceId;
use crate::store::InstanceRow;

/// Runs instances as child processes of the agent.
pub struct ProcessRunner;

#[async_trait]
impl Runner for ProcessRunner {
    async fn check(&self, launch: &Launch) -> Result<(), BackendError> {
        preflight::check(launch)
    }

    async fn start(&self, request: StartRequest<'_>) -> Result<Arc<dyn Running>, BackendError> {
        let StartRequest {
            id,
            launch,
            env,
            log,
            ..
        } = request;
        let cannot = |e: std::io::Error| {
            BackendError::Failed(format!("cannot start {id} ({}): {e}", launch.command))
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(cannot)?;
        let err = out.try_clone().map_err(cannot)?;
        let mut command = tokio::process::Command::new(&launch.command);
        command
            .args(&launch.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own group: signals reach its children, and a Ctrl-C at
            // the agent's terminal does not reach it.
            .process_group(0)
            .kill_on_drop(false);
        if let Some(dir) = &launch.workdir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(cannot)?;
        let pid = child.id().map(i64::from).unwrap_or_default();
        Ok(Arc::new(Process {
            pid,
            start_ticks: os::start_ticks(pid).unwrap_or_default(),
            child: Mutex::new(Some(child)),
            gone: AtomicBool::new(false),
        }))
    }

    async fn adopt(
        &self,
        row: &InstanceRow,
        _log: &Path,
    ) -> Result<Option<Arc<dyn Running>>, BackendError> {
        Ok(os::alive(row.pid, row.start_ticks).then(|| {
            Arc::new(Process {
                pid: row.pid,
                start_ticks: row.start_ticks,
                child: Mutex::new(None),
                gone: AtomicBool::new(false),
            }) as Arc<dyn Running>
        }))
    }

    /// A process group is this fleet's if its leader's output goes to a log
    /// file in the fleet's directory: no one else's instance logs there.
    async fn sweep(&self, _service: &str, known: &[InstanceId], logs: &Path) -> Vec<InstanceId> {
        let mut swept = Vec::new();
        for (pid, id) in os::instances_logging_to(logs) {
            if !known.contains(&id) {
                os::signal_group(pid, libc::SIGKILL);
                swept.push(id);
            }
        }
        swept.sort();
        swept
    }
}

/// One instance: a process group led by `pid`.
struct Process {
    pid: i64,
    start_ticks: u64,
    /// Our child, if this agent started it (re-adopted ones have none).
    child: Mutex<Option<tokio::process::Child>>,
    /// Its exit was seen and its group killed: the group id may now be
    /// reused, so it is never signalled again.
    gone: AtomicBool,
}

impl Process {
    fn signal(&self, signal: i32) {
        if !self.gone.load(Ordering::SeqCst) {
            os::signal_group(self.pid, signal);
        }
    }
}

#[async_trait]
impl Running for Process {
    fn identity(&self) -> (i64, u64) {
        (self.pid, self.start_ticks)
    }

    fn exited(&self) -> Option<String> {
        let status = match self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            Some(child) => match child.try_wait() {
                Ok(Some(status)) => exit::describe(status.code(), status.signal()),
                Ok(None) => return None,
                Err(e) => format!("cannot be waited for: {e}"),
            },
            None if os::alive(self.pid, self.start_ticks) => return None,
            None => "status unknown: started by an earlier agent".to_string(),
        };
        // Whatever it left in its group goes now, while the group id cannot
        // belong to anyone else.
        self.signal(libc::SIGKILL);
        self.gone.store(true, Ordering::SeqCst);
        Some(status)
    }

    async fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    async fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    async fn remove(&self) {
        // Stragglers the instance forked into its group.
        self.signal(libc::SIGKILL);
    }
}
